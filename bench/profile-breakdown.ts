// Turns a V8 .cpuprofile (`node --cpu-prof`) into CPU time by area of the API: each sample's time goes to the
// innermost frame whose file belongs to an area; frames that belong to none (Node's streams, events, timers,
// builtins without a file) pass their time up to their caller, so `JSON.parse` called by the body reader counts
// as JSON and a stream `push` called by the HTTP parser counts as node:http. Idle time is left out.
//   node --import tsx bench/profile-breakdown.ts FILE.cpuprofile…
import { readdir, readFile, stat } from 'node:fs/promises';
import { join } from 'node:path';

interface CallFrame {
  readonly functionName: string;
  readonly url: string;
}
interface ProfileNode {
  readonly id: number;
  readonly callFrame: CallFrame;
  readonly children?: readonly number[];
}
interface CpuProfile {
  readonly startTime: number;
  readonly nodes: readonly ProfileNode[];
  readonly samples: readonly number[];
  readonly timeDeltas: readonly number[];
}

/** Areas in the order they are tested: the first pattern that matches a frame's file (or name) wins. */
const AREAS: ReadonlyArray<readonly [string, RegExp]> = [
  ['GC', /^\(garbage collector\)$/],
  ['V8/native (program)', /^\(program\)$/],
  // JSON.parse and JSON.stringify run inside the function that calls them (builtins get no frame of their own).
  // Finding each event's `data` text (lib/data-text.ts) is what replaced serialising `data` again: same area.
  [
    'JSON parse/encode',
    /^JSON\.(parse|stringify)$|^(parse|stringify)$|\/app\/body\.[jt]s#parseJson$|\/lib\/event-schema\.[jt]s#stringifyBounded$|\/lib\/(data-text|event-body)\./,
  ],
  ['validation (event schema, ajv)', /node_modules\/ajv|\/lib\/event-schema\.|^ajv:/],
  ['auth', /\/app\/middleware\/auth\.|\/app\/key-resolver\.|\/app\/auth-failures\.|\/lib\/api-keys\./],
  ['body reading/gzip', /\/app\/body\.|node_modules\/(raw-body|co-body|inflation|iconv-lite)|node:zlib|node:internal\/zlib/],
  [
    'Redis (ioredis, enqueue)',
    /node_modules\/(ioredis|redis-parser|denque|cluster-key-slot|standard-as-callback)|\/app\/(enqueue|sharded-enqueue|guarded-write|redis-breaker|write-coalescer)\.|\/lib\/(redis|stream-entry|shards|queue)\./,
  ],
  [
    'metrics',
    /node_modules\/(prom-client|tdigest|bintrees)|\/lib\/(fast-metrics|metrics|latency-window)\.|\/app\/(metrics|middleware\/metrics)\./,
  ],
  ['shedding', /\/app\/shedding\/|\/app\/(early-shed|priority|retry-after)\./],
  ['logging', /node_modules\/(pino|sonic-boom|thread-stream|fast-redact|quick-format-unescaped)|\/lib\/logger\./],
  ['rate limits/quotas', /\/app\/limits\/|\/app\/middleware\/(rate-limit|key-limits)\.|\/lib\/tenant-quotas\./],
  [
    'framework (koa, router)',
    /node_modules\/(koa|@koa|koa-compose|on-finished|statuses|http-errors|content-type|type-is|mime-types|accepts|negotiator|depd|vary|delegates|cookies|only|encodeurl|escape-html|destroy|fresh|path-to-regexp|ee-first|media-typer)\//,
  ],
  ['node:http', /^node:(_http_|http$|internal\/http)/],
  ['app (other: routes, errors, ids)', /\/app\/|\/lib\/|\/cli\//],
];

/** Frames with no area of their own: their time goes to the caller. */
const NEUTRAL = /^(node:|$)/;
/** Socket reads and writes: charged to their caller (HTTP or Redis); what libuv calls straight from the loop stays here. */
const SOCKET = /^node:(net$|internal\/stream_base_commons|internal\/net)/;

/** The area a frame belongs to, or null when it passes its time up. */
function areaOf(frame: CallFrame): string | null {
  if (frame.functionName === '(idle)') return 'idle';
  for (const [area, pattern] of AREAS) {
    if (
      pattern.test(frame.url) ||
      pattern.test(`${frame.url}#${frame.functionName}`) ||
      (frame.url === '' && pattern.test(frame.functionName))
    )
      return area;
  }
  if (NEUTRAL.test(frame.url)) return null;
  const pkg = /node_modules\/((?:@[^/]+\/)?[^/]+)/.exec(frame.url);
  return pkg ? `other: ${pkg[1]}` : 'other';
}

/** A span of the monotonic clock, in µs (the profiler's time base, and process.hrtime's). */
export interface Window {
  readonly from: number;
  readonly to: number;
}

/** CPU µs by area in `profile` (idle excluded) within `window` (all of it without one), and the total. */
export function breakdown(profile: CpuProfile, window?: Window): { total: number; areas: Map<string, number> } {
  const byId = new Map(profile.nodes.map((n) => [n.id, n]));
  const parent = new Map<number, number>();
  for (const n of profile.nodes) for (const c of n.children ?? []) parent.set(c, n.id);
  const memo = new Map<number, string | null>();
  // The area of the innermost frame at or above `id` that has one; null when only Node's own frames are there.
  const resolve = (id: number): string | null => {
    if (memo.has(id)) return memo.get(id)!;
    const node = byId.get(id)!;
    const up = parent.get(id);
    const area = areaOf(node.callFrame) ?? (up === undefined || byId.get(up)!.callFrame.functionName === '(root)' ? null : resolve(up));
    memo.set(id, area);
    return area;
  };
  // Node-only stacks: socket I/O when a socket frame is on them, Node's streams, timers and events otherwise.
  const nodeOnly = (id: number): string => {
    for (let at: number | undefined = id; at !== undefined; at = parent.get(at)) {
      if (SOCKET.test(byId.get(at)!.callFrame.url)) return 'socket I/O from the loop (net)';
    }
    return 'node core (streams, timers, events)';
  };
  const areas = new Map<string, number>();
  let total = 0;
  // timeDeltas[i + 1] is the time from sample i to the next one: the time sample i's frame held the CPU.
  let at = profile.startTime;
  for (let i = 0; i < profile.samples.length; i++) {
    at += profile.timeDeltas[i] ?? 0;
    if (window && (at < window.from || at > window.to)) continue;
    const micros = profile.timeDeltas[i + 1] ?? 0;
    const area = resolve(profile.samples[i]!) ?? nodeOnly(profile.samples[i]!);
    if (area === 'idle') continue;
    areas.set(area, (areas.get(area) ?? 0) + micros);
    total += micros;
  }
  return { total, areas };
}

/** The breakdown of the .cpuprofile at `path`. */
export async function breakdownOfFile(path: string, window?: Window): Promise<{ total: number; areas: Map<string, number> }> {
  return breakdown(JSON.parse(await readFile(path, 'utf8')) as CpuProfile, window);
}

/** A Markdown table of areas, largest first, as shares of the non-idle CPU. */
export function formatBreakdown({ total, areas }: { total: number; areas: Map<string, number> }): string {
  const rows = [...areas].sort(([, a], [, b]) => b - a).map(([area, micros]) => `| ${area} | ${((micros / total) * 100).toFixed(1)} % |`);
  return ['| Area | Share of busy CPU |', '| --- | --- |', ...rows, `| (busy total) | ${(total / 1e6).toFixed(2)} s |`].join('\n');
}

/** What `bench/api-profile.ts` records of each target and phase in results.json. */
interface RunResult {
  readonly name: string;
  /** `floodgate` is this build's API, `baseline` another build's (api-profile.ts --baseline-bin). */
  readonly target: 'bare' | 'floodgate' | 'baseline';
  readonly requests: number;
  readonly status: Record<string, number>;
  /** CPU time (µs) or, with --instructions, instructions. */
  readonly unit: 'µs' | 'instructions';
  readonly cost: number;
  readonly perRequest: number;
  readonly perEvent: number;
  /** Per request, each measured window in turn (window r of every target is from the same round). */
  readonly perWindow: number[];
  readonly window: Window;
}

function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  const mid = sorted.length >> 1;
  return sorted.length % 2 ? sorted[mid]! : (sorted[mid - 1]! + sorted[mid]!) / 2;
}

/** Ratio of each of `api`'s windows to the bare server's window of the same round: median and range. */
function roundRatios(api: RunResult, bare: RunResult): string {
  const ratios = api.perWindow.map((v, r) => v / bare.perWindow[r]!).filter(Number.isFinite);
  if (ratios.length < 2) return '';
  return `; per round: median ${median(ratios).toFixed(2)}, ${Math.min(...ratios).toFixed(2)}–${Math.max(...ratios).toFixed(2)} over ${ratios.length}`;
}

const SLUGS: Record<string, string> = { 'single event': 'single', 'batch of 100': 'batch', 'refusal (503)': 'refusal' };

/**
 * The report of a `bench/api-profile.ts` run directory: CPU per request, the ratio to bare, and each breakdown
 * (left out of a run without the profiler).
 */
export async function reportRun(dir: string, profiled = true): Promise<string> {
  const { results } = JSON.parse(await readFile(join(dir, 'results.json'), 'utf8')) as { results: RunResult[] };
  const report: string[] = [];
  for (const api of results.filter((r) => r.target !== 'bare')) {
    const single = results.find((r) => r.target === api.target && SLUGS[r.name] === 'single');
    const bare = results.find((r) => r.target === 'bare' && r.name === api.name)!;
    const label = api.target === 'floodgate' ? '' : ` (${api.target})`;
    report.push(
      `\n## ${api.name}${label}: ${api.perRequest} ${api.unit}/req (${api.perEvent} ${api.unit}/event), bare ${bare.perRequest} ${api.unit}/req (${bare.perEvent}/event), ratio ${(api.perRequest / bare.perRequest).toFixed(2)}${roundRatios(api, bare)}; ${JSON.stringify(api.status)}`,
    );
    const refused = api.status['503'] ?? 0;
    if (refused > 0 && single) {
      // What the refusals cost once the admitted requests among them are charged at the single-event cost.
      const perRefusal = (api.cost - (api.requests - refused) * single.perRequest) / refused;
      report.push(
        `refused ${refused} of ${api.requests} (${((refused / api.requests) * 100).toFixed(2)} %); per refusal, admitted ones charged at ${single.perRequest} ${api.unit}: ${perRefusal.toFixed(1)} ${api.unit} (${(perRefusal / bare.perRequest).toFixed(2)}× bare)`,
      );
    }
    for (const [target, measured] of profiled
      ? ([
          [api.target === 'floodgate' ? 'api' : api.target, api],
          ['bare', bare],
        ] as const)
      : []) {
      const sub = join(dir, `${target}-${SLUGS[api.name]}`);
      // Every thread writes a profile (tsx's loader thread too): the main thread's is the one numbered .0.
      for (const file of (await readdir(sub)).filter((f) => /\.0\.\d+\.cpuprofile$/.test(f))) {
        const areas = await breakdownOfFile(join(sub, file), measured.window);
        const seen = ((areas.total / measured.cost) * 100).toFixed(0);
        report.push(
          `\n${target}: profile busy ${(areas.total / 1e6).toFixed(2)} s = ${seen} % of the /proc CPU\n${formatBreakdown(areas)}`,
        );
      }
    }
  }
  return report.join('\n');
}

if (import.meta.url === `file://${process.argv[1]}`) {
  for (const path of process.argv.slice(2)) {
    if ((await stat(path)).isDirectory()) console.log(await reportRun(path));
    else console.log(`\n${path}\n${formatBreakdown(await breakdownOfFile(path))}`);
  }
}
