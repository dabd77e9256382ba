// A closed-loop flood of one class, in its own process so that the benchmark's probe is not delayed by the
// flood's own event loop: `node --import tsx bench/class-flood.ts <url> <key> <class> <connections> <seconds>`.
// Prints `ready` once loaded, floods once a line arrives on stdin, then prints autocannon's totals as one JSON line.
import autocannon from 'autocannon';

const [url, key, priority, connections, seconds] = process.argv.slice(2);
if (!url || !key || !priority || !connections || !seconds)
  throw new Error('usage: class-flood <url> <key> <class> <connections> <seconds>');
const body = JSON.stringify({ type: 'flood', source: 'bench', data: { class: priority } });
// Loaded: say so, and flood once told to (a line on stdin), so that loading is not part of the flood's onset.
process.stdout.write('ready\n');
await new Promise<void>((resolve) => process.stdin.once('data', () => resolve()));
process.stdin.pause();
const result = await autocannon({
  url: `${url}/v1/events`,
  method: 'POST',
  connections: Number(connections),
  duration: Number(seconds),
  timeout: 10,
  headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json', 'x-priority': priority },
  body,
});
const statuses = Object.fromEntries(
  Object.entries(result.statusCodeStats ?? {}).map(([status, s]) => [status, (s as { count: number }).count]),
);
process.stdout.write(
  `${JSON.stringify({ requests: result.requests.total, perSec: result.requests.average, statuses, errors: result.errors, timeouts: result.timeouts })}\n`,
);
