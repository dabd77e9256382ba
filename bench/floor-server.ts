// A bare node:http server in its own process sending one fixed body to every request: the floor under any HTTP
// reader benchmark on this machine (no Floodgate, no database, no work per answer).
import { spawn } from 'node:child_process';

const SERVER = `
const body = Buffer.alloc(Number(process.argv[1]), 'x');
const server = require('node:http').createServer((req, res) => {
  res.writeHead(200, { 'content-type': 'application/json', 'content-length': body.length });
  res.end(body);
});
server.listen(0, '127.0.0.1', () => process.stdout.write(server.address().port + '\\n'));
process.on('SIGTERM', () => server.close(() => process.exit(0)));`;

/** A running floor server. */
export interface FloorServer {
  readonly url: string;
  readonly pid: number;
  stop(): void;
}

/** Starts a floor server answering `bytes` bytes to every request. */
export async function startFloorServer(bytes: number): Promise<FloorServer> {
  const child = spawn(process.execPath, ['-e', SERVER, String(bytes)], { stdio: ['ignore', 'pipe', 'inherit'] });
  const port = await new Promise<number>((resolve, reject) => {
    child.once('error', reject);
    child.stdout.once('data', (d: Buffer) => resolve(Number(String(d).trim())));
  });
  return { url: `http://127.0.0.1:${port}/`, pid: child.pid!, stop: () => child.kill('SIGTERM') };
}
