// Reports of a load test run: the JSON document (every per-second sample and the summary), its Markdown
// rendering, the terminal tables and the progress line.
import { mkdir, writeFile } from 'node:fs/promises';
import { cpus, totalmem } from 'node:os';
import { join } from 'node:path';
import { PRIORITIES, type Priority } from '../lib/event-schema.js';
import { renderChart } from './chart.js';
import type { IntegrityResult } from './integrity.js';
import type { Sample, SegmentResult, TallySummary } from './runner.js';
import type { capacityOf, driftOf, OverloadFigures, tenantFigures } from './scenarios.js';

/** The machine a report was measured on. */
export interface Machine {
  cpus: number;
  model: string;
  memGiB: number;
  node: string;
}

/** The JSON report: `floodgate loadtest compare` reads two of these. */
export interface Report {
  tool: 'floodgate-loadtest';
  version: 1;
  scenario: string;
  runId: string;
  target: string;
  options: Record<string, unknown>;
  machine: Machine;
  startedAt: string;
  finishedAt: string;
  seconds: number;
  stoppedEarly: string | null;
  summary: { total: TallySummary; classes: Partial<Record<Priority, TallySummary>> };
  segments: SegmentResult[];
  samples: Sample[];
  /** Ids returned in 2xx answers, and requests that were retries of an earlier body. */
  acknowledgedIds: number;
  retries: number;
  capacity?: ReturnType<typeof capacityOf> & { sloP99Ms: number };
  overload?: {
    capacity: number;
    unloadedP99Ms: number;
    levels: OverloadFigures[];
    /** Seconds after the overload until every second has ≥ 99 % 2xx and p99 within the SLO. */
    recoverySeconds: number | null;
    /** Seconds after the overload until every second has ≥ 99 % 2xx (shedding has stopped), whatever its latency. */
    servingAgainSeconds: number | null;
  };
  spike?: { recoverySeconds: number | null; baselineP99Ms: number };
  drift?: ReturnType<typeof driftOf>;
  /** Multi-tenant scenarios: each tenant's success and p99 in the segment the scenario is about. */
  tenants?: ReturnType<typeof tenantFigures>;
  integrity: IntegrityResult | { skipped: string };
  /** What an operator must look at; the command exits 1 when this is not empty. */
  problems: string[];
}

/** This machine, as reports name it. */
export function machine(): Machine {
  return {
    cpus: cpus().length,
    model: cpus()[0]?.model.trim() ?? 'unknown',
    memGiB: Math.round(totalmem() / 2 ** 30),
    node: process.version,
  };
}

const ms = (v: number) => (v >= 100 ? v.toFixed(0) : v.toFixed(1));
const codes = (status: Record<string, number>) =>
  Object.entries(status)
    .sort(([a], [b]) => a.localeCompare(b))
    .map(([code, n]) => `${code}×${n}`)
    .join(' ') || '-';

/** One line per second on stderr while a run goes. */
export function progressLine(s: Sample): string {
  const t = s.total;
  const offered = s.offeredRate === null ? 'max' : `${s.offeredRate}/s`;
  return `${String(s.t).padStart(4)}s  ${s.segment.padEnd(14)} offered ${offered.padStart(7)}  achieved ${String(t.requestsPerSec).padStart(7)}/s  p99 ${ms(t.latency.p99).padStart(6)} ms  ${codes(t.status)}  shed ${t.shedPct.toFixed(1)}%  errors ${t.errors}  timeouts ${t.timeouts}`;
}

const TABLE_HEADER = [
  'class',
  'req/s',
  'events/s',
  'p50 ms',
  'p90 ms',
  'p99 ms',
  'p99.9 ms',
  'status codes',
  'shed %',
  'errors',
  'timeouts',
];

function tableRows(total: TallySummary, classes: Partial<Record<Priority, TallySummary>>): string[][] {
  const row = (name: string, t: TallySummary) => [
    name,
    String(t.requestsPerSec),
    String(t.eventsPerSec),
    ms(t.latency.p50),
    ms(t.latency.p90),
    ms(t.latency.p99),
    ms(t.latency.p999),
    codes(t.status),
    t.shedPct.toFixed(1),
    String(t.errors),
    String(t.timeouts),
  ];
  return [...PRIORITIES.flatMap((p) => (classes[p] ? [row(p, classes[p])] : [])), row('all', total)];
}

const TENANT_HEADER = ['tenant', 'req/s', 'success %', 'p50 ms', 'p99 ms', '2xx p99 ms', 'status codes', 'shed %', 'timeouts'];

function tenantRows(tenants: Record<string, TallySummary>): string[][] {
  return Object.entries(tenants).map(([name, t]) => [
    name,
    String(t.requestsPerSec),
    t.requests > 0 ? ((100 * t.ok) / t.requests).toFixed(2) : '-',
    ms(t.latency.p50),
    ms(t.latency.p99),
    ms(t.okLatency.p99),
    codes(t.status),
    t.shedPct.toFixed(1),
    String(t.timeouts),
  ]);
}

/** A Markdown table. */
export function markdownTable(header: string[], rows: string[][]): string {
  return [`| ${header.join(' | ')} |`, `| ${header.map(() => '---').join(' | ')} |`, ...rows.map((r) => `| ${r.join(' | ')} |`)].join('\n');
}

/** A plain-text table, the first column left-aligned and the others right-aligned. */
export function textTable(header: string[], rows: string[][]): string {
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i]!.length)));
  return [header, ...rows].map((r) => r.map((c, i) => (i === 0 ? c.padEnd(widths[i]!) : c.padStart(widths[i]!))).join('  ')).join('\n');
}

function integrityLines(r: Report): string[] {
  if ('skipped' in r.integrity) return [`integrity check skipped: ${r.integrity.skipped}`];
  const i = r.integrity;
  return [
    `integrity: ${i.ok ? 'OK' : 'FAILED'} — ${i.acknowledged} events acknowledged, ${i.storedRows} rows stored for run ${r.runId}, ` +
      `${i.missing} missing, ${i.duplicated} duplicated, ${i.unacknowledgedStored} stored without an acknowledgement (answer lost or cut off: not an error); ` +
      `waited ${i.drainSeconds} s for the worker`,
    ...(i.missing > 0 ? [`  missing seq (first 10): ${i.missingSample.join(', ')}`] : []),
    ...(i.duplicated > 0 ? [`  duplicated seq (first 10): ${i.duplicatedSample.join(', ')}`] : []),
  ];
}

function findingLines(r: Report): string[] {
  const out: string[] = [];
  if (r.capacity) {
    out.push(
      r.capacity.capacity === null
        ? `capacity: not found — the first step (${r.capacity.steps[0]?.offered}/s) already broke the SLO (p99 ≤ ${r.capacity.sloP99Ms} ms, < 1 % failures)`
        : `capacity C ≈ ${r.capacity.capacity} req/s (last step within p99 ≤ ${r.capacity.sloP99Ms} ms and < 1 % failures; ${r.capacity.brokeAt === null ? 'no step broke it: C is at least this' : `broke at ${r.capacity.brokeAt}/s`})`,
    );
  }
  if (r.overload) {
    out.push(
      `overload at C = ${r.overload.capacity} req/s; unloaded p99 ${ms(r.overload.unloadedP99Ms)} ms; back to normal ${r.overload.recoverySeconds === null ? 'not within the recovery segment' : `${r.overload.recoverySeconds} s after the overload ended`} (shedding stopped ${r.overload.servingAgainSeconds === null ? 'not within it' : `after ${r.overload.servingAgainSeconds} s`})`,
    );
    for (const l of r.overload.levels) {
      out.push(
        `  ${l.level}: sent ${l.sentPerSec}/s of ${l.offered}/s offered, goodput ${l.goodputPerSec}/s = ${l.goodputOverC}×C, critical success ${l.criticalSuccessPct} %, accepted p99 ${ms(l.acceptedP99Ms)} ms, shed ${l.shedPct} % (${l.shedFromLowestPct ?? '-'} % of them low), timeouts ${l.timeouts}`,
      );
    }
  }
  if (r.spike)
    out.push(
      `spike: back to normal ${r.spike.recoverySeconds === null ? 'not within the run' : `${r.spike.recoverySeconds} s after the spike`} (baseline p99 ${ms(r.spike.baselineP99Ms)} ms)`,
    );
  if (r.tenants) {
    out.push(
      `per tenant during ${r.tenants.segment}: ${r.tenants.steadyMet ? 'steady tenants kept ≥ 99 % success and p99 within the SLO' : 'steady tenants did NOT all keep ≥ 99 % success and p99 within the SLO'}`,
    );
    for (const t of r.tenants.tenants)
      out.push(
        `  ${t.tenant}: ${t.requestsPerSec}/s, success ${t.successPct} %, p99 ${ms(t.p99Ms)} ms (2xx ${ms(t.okP99Ms)} ms), shed ${t.shedPct} %, timeouts ${t.timeouts}`,
      );
  }
  if (r.drift)
    out.push(
      `drift: p99 ${ms(r.drift.firstP99Ms)} ms in the first tenth, ${ms(r.drift.lastP99Ms)} ms in the last; failures ${r.drift.firstFailures} → ${r.drift.lastFailures}`,
    );
  if (r.retries > 0) out.push(`retries: ${r.retries} requests resent an earlier body with the same idempotency keys`);
  if (r.stoppedEarly) out.push(`stopped early: ${r.stoppedEarly}`);
  return out;
}

/** The end-of-run summary for the terminal. */
export function renderText(r: Report): string {
  const parts = [
    `floodgate loadtest ${r.scenario} → ${r.target} (run ${r.runId}, ${r.seconds} s)`,
    '',
    textTable(TABLE_HEADER, tableRows(r.summary.total, r.summary.classes)),
  ];
  if (r.segments.length > 1) {
    for (const s of r.segments) {
      parts.push(
        '',
        `segment ${s.label} (offered ${s.offeredRate ?? 'max'}/s, ${s.seconds} s)`,
        textTable(TABLE_HEADER, tableRows(s.total, s.classes)),
      );
      if (s.tenants) parts.push('', textTable(TENANT_HEADER, tenantRows(s.tenants)));
    }
  }
  parts.push('', ...findingLines(r), ...integrityLines(r));
  if (r.problems.length > 0) parts.push('', 'PROBLEMS:', ...r.problems.map((p) => `  - ${p}`));
  return parts.join('\n');
}

/** The Markdown report. */
export function renderMarkdown(r: Report, chartFile?: string): string {
  const parts = [
    `# floodgate loadtest ${r.scenario}`,
    '',
    `Target ${r.target}, run \`${r.runId}\`, ${r.startedAt} → ${r.finishedAt} (${r.seconds} s), on ${r.machine.cpus} × ${r.machine.model}, ${r.machine.memGiB} GiB, node ${r.machine.node}.`,
    '',
    `Options: \`${JSON.stringify(r.options)}\``,
    '',
    '## Per class',
    '',
    markdownTable(TABLE_HEADER, tableRows(r.summary.total, r.summary.classes)),
  ];
  if (r.segments.length > 1) {
    parts.push('', '## Per segment');
    for (const s of r.segments) {
      parts.push(
        '',
        `### ${s.label} — offered ${s.offeredRate ?? 'max'}/s for ${s.seconds} s`,
        '',
        markdownTable(TABLE_HEADER, tableRows(s.total, s.classes)),
      );
      if (s.tenants) parts.push('', markdownTable(TENANT_HEADER, tenantRows(s.tenants)));
    }
  }
  const findings = findingLines(r);
  if (findings.length > 0) parts.push('', '## Findings', '', ...findings.map((f) => (f.startsWith('  ') ? `  - ${f.trim()}` : `- ${f}`)));
  parts.push('', '## Integrity', '', ...integrityLines(r));
  if (r.problems.length > 0) parts.push('', '## Problems', '', ...r.problems.map((p) => `- ${p}`));
  if (chartFile) parts.push('', `![throughput, latency and shed rate over time](${chartFile})`);
  return `${parts.join('\n')}\n`;
}

/** Writes `<out>/<scenario>-<runId>.{json,md,svg}`; returns the paths. */
export async function writeReports(out: string, r: Report): Promise<{ json: string; markdown: string; chart: string }> {
  await mkdir(out, { recursive: true });
  const base = join(out, `${r.scenario}-${r.runId}`);
  const paths = { json: `${base}.json`, markdown: `${base}.md`, chart: `${base}.svg` };
  await writeFile(paths.json, `${JSON.stringify(r, null, 2)}\n`);
  await writeFile(paths.chart, renderChart(r));
  await writeFile(paths.markdown, renderMarkdown(r, `${r.scenario}-${r.runId}.svg`));
  return paths;
}
