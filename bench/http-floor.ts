// The floor under the stats-under-load figures: what 50 looping `fetch` readers of a 100 KB answer cost this
// machine when the server does nothing but send a fixed body (no Floodgate, no database). Prints answers per
// second, mean latency, and CPU per answer of the server process and of the readers' process.
//   node --import tsx bench/http-floor.ts [--bytes 100000] [--concurrency 50] [--seconds 8]
import { spawn } from 'node:child_process';
import { loadavg } from 'node:os';
import { parseArgs } from 'node:util';
import { processCpuMicros } from './cpu.js';

const { values: args } = parseArgs({
  options: {
    bytes: { type: 'string', default: '100000' },
    concurrency: { type: 'string', default: '50' },
    seconds: { type: 'string', default: '8' },
  },
});

const SERVER = `
const body = Buffer.alloc(Number(process.argv[1]), 'x');
const server = require('node:http').createServer((req, res) => {
  res.writeHead(200, { 'content-type': 'application/json', 'content-length': body.length });
  res.end(body);
});
server.listen(0, '127.0.0.1', () => process.stdout.write(server.address().port + '\\n'));
process.on('SIGTERM', () => server.close(() => process.exit(0)));`;

const child = spawn(process.execPath, ['-e', SERVER, args.bytes], { stdio: ['ignore', 'pipe', 'inherit'] });
try {
  const port = await new Promise<number>((resolve) => child.stdout.once('data', (d: Buffer) => resolve(Number(String(d).trim()))));
  const url = `http://127.0.0.1:${port}/`;
  const serverCpu = processCpuMicros(child.pid!) ?? 0;
  const ownCpu = process.cpuUsage();
  const started = performance.now();
  const end = started + Number(args.seconds) * 1000;
  let answers = 0;
  await Promise.all(
    Array.from({ length: Number(args.concurrency) }, async () => {
      while (performance.now() < end) {
        await (await fetch(url)).arrayBuffer();
        answers++;
      }
    }),
  );
  const seconds = (performance.now() - started) / 1000;
  const server = ((processCpuMicros(child.pid!) ?? 0) - serverCpu) / 1000 / answers;
  const own = process.cpuUsage(ownCpu);
  const readers = (own.user + own.system) / 1000 / answers;
  console.log(
    `${answers} answers of ${args.bytes} bytes to ${args.concurrency} readers in ${seconds.toFixed(1)} s: ${(answers / seconds).toFixed(0)}/s, ` +
      `mean ${((Number(args.concurrency) / answers) * seconds * 1000).toFixed(1)} ms; CPU per answer: server ${server.toFixed(2)} ms, ` +
      `readers ${readers.toFixed(2)} ms; load average ${loadavg()
        .map((x) => x.toFixed(1))
        .join(' ')}`,
  );
} finally {
  child.kill('SIGTERM');
}
