// How a `clients` run reads: a table per phase (offered, tracked, delivered, critical within 10 s, delivery
// p99 per class, drops, answers), the findings against C and the integrity check, as text and Markdown.
import { markdownTable, textTable } from './report.js';
import type { ClientsReport } from './run-clients.js';

const HEADER = [
  'phase',
  'offered ev/s',
  'tracked/s',
  'delivered/s',
  '× 0.9C',
  'critical ≤ 10 s',
  'p99 crit/norm/low ms',
  'dropped crit/norm/low',
  'requests',
  '503',
  '429',
  'no answer',
  'held back',
];

function rows(r: ClientsReport): string[][] {
  const c = r.overload?.capacity ?? r.capacity?.capacity ?? null;
  return r.phases.map((p) => {
    const f = p.fate;
    const crit = f.critical.tracked === 0 ? '-' : `${Math.floor((10000 * f.critical.within10s) / f.critical.tracked) / 100} %`;
    return [
      p.label,
      String(p.offeredPerSec),
      String(p.trackedPerSec),
      String(p.deliveredPerSec),
      c ? (p.deliveredPerSec / (0.9 * c)).toFixed(2) : '-',
      crit,
      [f.critical, f.normal, f.low].map((x) => Math.round(x.latency.p99)).join('/'),
      [f.critical, f.normal, f.low].map((x) => x.dropped).join('/'),
      String(p.requests),
      String(p.shed),
      String(p.rateLimited),
      String(p.errors),
      String(p.throttled),
    ];
  });
}

function findings(r: ClientsReport): string[] {
  const out: string[] = [];
  if (r.capacity) {
    out.push(
      r.capacity.capacity === null
        ? `capacity: not found (no step down to the lowest the search tries kept delivery p99 ≤ ${r.capacity.deliverySloMs} ms with nothing dropped and no growing backlog)`
        : `capacity C ≈ ${r.capacity.capacity} events/s for this client mix (highest ramp step that kept up: delivery p99 ≤ ${r.capacity.deliverySloMs} ms, nothing dropped, the clients' and the worker's backlogs not growing; ${r.capacity.brokeAt === null ? 'no step failed twice' : `failed twice at ${r.capacity.brokeAt}/s`})`,
    );
  }
  if (r.overload) {
    const o = r.overload;
    out.push(
      `overload at C = ${o.capacity} events/s: critical events tracked at 2×C and 4×C delivered within 10 s: ${o.criticalWithin10sPct} % (aim ≥ 99.9 %)`,
    );
    for (const l of o.levels.filter((x) => x.level === '2×C' || x.level === '4×C')) {
      out.push(
        `  ${l.level}: delivered ${l.deliveredPerSec} events/s = ${l.deliveredOver09C} × 0.9C (aim ≥ 1), dropped ${l.dropped.critical}/${l.dropped.normal}/${l.dropped.low} (crit/norm/low), ${l.shedRequests} requests shed, ${l.throttled} attempts held back by the clients`,
      );
    }
    const within = (v: number | null) => (v === null ? 'not within the recovery phase' : `${v} s after the overload ended`);
    out.push(
      `back to normal (no 503/429, nothing dropped, critical p99 ≤ ${String(r.options.deliverySloMs)} ms) ${within(o.recoverySeconds)} (aim ≤ 5 s); the clients' backlog delivered ${within(o.backlogSeconds)}`,
    );
  }
  const t = r.totals;
  out.push(
    `events: ${t.tracked} tracked, ${t.delivered} delivered, ${t.dropped.critical + t.dropped.normal + t.dropped.low} dropped by full client queues (${t.dropped.critical}/${t.dropped.normal}/${t.dropped.low}), ${t.failed} given up, ${t.undeliveredAtClose} undelivered when the clients closed; ${t.requests} requests`,
  );
  if ('skipped' in r.integrity) out.push(`integrity check skipped: ${r.integrity.skipped}`);
  else {
    const i = r.integrity;
    out.push(
      `integrity: ${i.ok ? 'OK' : 'FAILED'} — ${i.acknowledged} delivered events, ${i.storedRows} rows stored, ${i.missing} missing, ${i.duplicated} duplicated, ${i.unacknowledgedStored} stored whose answer never reached the client`,
    );
  }
  return out;
}

/** The end-of-run summary for the terminal. */
export function renderClientsText(r: ClientsReport): string {
  const parts = [
    `floodgate loadtest clients → ${r.target} (run ${r.runId}, ${r.seconds} s)`,
    '',
    textTable(HEADER, rows(r)),
    '',
    ...findings(r),
  ];
  if (r.problems.length > 0) parts.push('', 'PROBLEMS:', ...r.problems.map((p) => `  - ${p}`));
  return parts.join('\n');
}

/** The Markdown report. */
export function renderClientsMarkdown(r: ClientsReport): string {
  const parts = [
    '# floodgate loadtest clients',
    '',
    `Target ${r.target}, run \`${r.runId}\`, ${r.startedAt} → ${r.finishedAt} (${r.seconds} s), on ${r.machine.cpus} × ${r.machine.model}, ${r.machine.memGiB} GiB, node ${r.machine.node}.`,
    '',
    `Options: \`${JSON.stringify(r.options)}\``,
    '',
    markdownTable(HEADER, rows(r)),
    '',
    '## Findings',
    '',
    ...findings(r).map((f) => (f.startsWith('  ') ? `  - ${f.trim()}` : `- ${f}`)),
  ];
  if (r.problems.length > 0) parts.push('', '## Problems', '', ...r.problems.map((p) => `- ${p}`));
  return `${parts.join('\n')}\n`;
}
