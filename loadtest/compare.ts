// `floodgate loadtest compare A.json B.json`: B against A, figure by figure; a figure that got worse by more
// than the threshold is a regression (the command then exits 1).
import { readFile } from 'node:fs/promises';
import { PRIORITIES } from '../lib/event-schema.js';
import type { Report } from './report.js';
import type { TallySummary } from './runner.js';

/** One compared figure. */
export interface Difference {
  figure: string;
  a: number;
  b: number;
  /** (b − a) / a in %, signed; null when a is 0. */
  changePct: number | null;
  regression: boolean;
}

/** Latency changes smaller than this many ms are noise, whatever their relative size. */
const LATENCY_FLOOR_MS = 1;
/** Failure-share changes smaller than this many percentage points are noise. */
const SHARE_FLOOR_PCT = 0.5;

type Direction = 'higher' | 'lower';

function figuresOf(name: string, t: TallySummary): Array<[string, number, Direction, number]> {
  const failuresPct = t.requests ? (100 * (t.errors + t.timeouts)) / t.requests : 0;
  return [
    [`${name} req/s`, t.requestsPerSec, 'higher', 0],
    [`${name} 2xx/s`, t.okPerSec, 'higher', 0],
    [`${name} events/s`, t.eventsPerSec, 'higher', 0],
    [`${name} p50 ms`, t.latency.p50, 'lower', LATENCY_FLOOR_MS],
    [`${name} p99 ms`, t.latency.p99, 'lower', LATENCY_FLOOR_MS],
    [`${name} p99.9 ms`, t.latency.p999, 'lower', LATENCY_FLOOR_MS],
    [`${name} shed %`, t.shedPct, 'lower', SHARE_FLOOR_PCT],
    [`${name} errors+timeouts %`, Math.round(failuresPct * 100) / 100, 'lower', SHARE_FLOOR_PCT],
  ];
}

/** Compares two reports; `thresholdPct` is how much worse a figure may get before it counts as a regression. */
export function compareReports(a: Report, b: Report, thresholdPct: number): Difference[] {
  const pairs: Array<[string, TallySummary, TallySummary]> = [['all', a.summary.total, b.summary.total]];
  for (const p of PRIORITIES) {
    const ca = a.summary.classes[p];
    const cb = b.summary.classes[p];
    if (ca && cb) pairs.push([p, ca, cb]);
  }
  const out: Difference[] = [];
  for (const [name, ta, tb] of pairs) {
    const fb = figuresOf(name, tb);
    figuresOf(name, ta).forEach(([figure, va, direction, floor], i) => {
      const vb = fb[i]![1];
      const changePct = va === 0 ? null : Math.round(((vb - va) / va) * 10000) / 100;
      const worse = direction === 'higher' ? va - vb : vb - va;
      const regression = worse > floor && (va === 0 ? true : (100 * worse) / Math.abs(va) > thresholdPct);
      out.push({ figure, a: va, b: vb, changePct, regression });
    });
  }
  const capA = a.capacity?.capacity;
  const capB = b.capacity?.capacity;
  if (capA && capB) {
    const changePct = Math.round(((capB - capA) / capA) * 10000) / 100;
    out.push({ figure: 'capacity C req/s', a: capA, b: capB, changePct, regression: -changePct > thresholdPct });
  }
  const intA = 'ok' in a.integrity ? a.integrity : null;
  const intB = 'ok' in b.integrity ? b.integrity : null;
  if (intA && intB) {
    const lostB = intB.missing + intB.duplicated;
    out.push({
      figure: 'missing+duplicated events',
      a: intA.missing + intA.duplicated,
      b: lostB,
      changePct: null,
      regression: lostB > intA.missing + intA.duplicated,
    });
  }
  return out;
}

/** Reads a JSON report, checking it is one. */
export async function readReport(path: string): Promise<Report> {
  const parsed = JSON.parse(await readFile(path, 'utf8')) as Partial<Report>;
  if (parsed.tool !== 'floodgate-loadtest' || parsed.version !== 1 || !parsed.summary)
    throw new Error(`${path} is not a floodgate loadtest JSON report`);
  return parsed as Report;
}

/** The comparison as a text table, regressions marked. */
export function renderComparison(a: string, b: string, diffs: readonly Difference[], thresholdPct: number): string {
  const rows = diffs.map((d) => [
    d.figure,
    String(d.a),
    String(d.b),
    d.changePct === null ? '-' : `${d.changePct > 0 ? '+' : ''}${d.changePct}%`,
    d.regression ? 'REGRESSION' : '',
  ]);
  const header = ['figure', 'A', 'B', 'change', ''];
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i]!.length)));
  const lines = [header, ...rows].map((r) =>
    r
      .map((c, i) => (i === 0 ? c.padEnd(widths[i]!) : c.padStart(widths[i]!)))
      .join('  ')
      .trimEnd(),
  );
  const regressions = diffs.filter((d) => d.regression).length;
  return [
    `A: ${a}`,
    `B: ${b}`,
    '',
    ...lines,
    '',
    regressions ? `${regressions} regression(s) beyond ${thresholdPct}%` : `no regression beyond ${thresholdPct}%`,
  ].join('\n');
}
