// The floor under the stats-under-load figures: what 50 looping `fetch` readers of a 100 KB answer cost this
// machine when the server does nothing but send a fixed body (no Floodgate, no database). Prints answers per
// second, mean latency, and CPU per answer of the server process and of the readers' process.
//   node --import tsx bench/http-floor.ts [--bytes 100000] [--concurrency 50] [--seconds 8]
import { loadavg } from 'node:os';
import { parseArgs } from 'node:util';
import { processCpuMicros } from './cpu.js';
import { startFloorServer } from './floor-server.js';

const { values: args } = parseArgs({
  options: {
    bytes: { type: 'string', default: '100000' },
    concurrency: { type: 'string', default: '50' },
    seconds: { type: 'string', default: '8' },
  },
});

const floor = await startFloorServer(Number(args.bytes));
try {
  const { url } = floor;
  const serverCpu = processCpuMicros(floor.pid) ?? 0;
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
  const server = ((processCpuMicros(floor.pid) ?? 0) - serverCpu) / 1000 / answers;
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
  floor.stop();
}
