// A hand-rendered SVG of a run over time: throughput (offered, achieved, 2xx), latency percentiles and shed
// rate, one panel each, sharing the time axis. No dependencies: polylines on a grid.
import type { Sample } from './runner.js';

const WIDTH = 900;
const PANEL = 180;
const GAP = 40;
const LEFT = 70;
const RIGHT = 150;

interface Series {
  name: string;
  color: string;
  values: Array<number | null>;
}

const escape = (s: string) => s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');

/** A rounded-up axis maximum (1, 2, 5 × 10^n). */
function niceMax(v: number): number {
  if (v <= 0) return 1;
  const p = 10 ** Math.floor(Math.log10(v));
  return ([1, 2, 5, 10].find((m) => m * p >= v) ?? 10) * p;
}

function panel(top: number, title: string, unit: string, times: number[], series: Series[]): string {
  const tMax = Math.max(1, ...times);
  const yMax = niceMax(Math.max(0, ...series.flatMap((s) => s.values.filter((v): v is number => v !== null))));
  const plotWidth = WIDTH - LEFT - RIGHT;
  const x = (t: number) => LEFT + (t / tMax) * plotWidth;
  const y = (v: number) => top + PANEL - (Math.min(v, yMax) / yMax) * PANEL;
  const out = [`<text x="${LEFT}" y="${top - 8}" font-weight="bold">${escape(title)}</text>`];
  for (let i = 0; i <= 4; i++) {
    const v = (yMax * i) / 4;
    out.push(`<line x1="${LEFT}" x2="${WIDTH - RIGHT}" y1="${y(v)}" y2="${y(v)}" stroke="#ddd"/>`);
    out.push(`<text x="${LEFT - 6}" y="${y(v) + 4}" text-anchor="end">${Number(v.toPrecision(3))}</text>`);
  }
  out.push(
    `<text x="${LEFT - 50}" y="${top + PANEL / 2}" transform="rotate(-90 ${LEFT - 50} ${top + PANEL / 2})" text-anchor="middle">${escape(unit)}</text>`,
  );
  series.forEach((s, i) => {
    const points = s.values.flatMap((v, j) => (v === null ? [] : [`${x(times[j]!).toFixed(1)},${y(v).toFixed(1)}`]));
    if (points.length > 0) out.push(`<polyline fill="none" stroke="${s.color}" stroke-width="1.5" points="${points.join(' ')}"/>`);
    out.push(
      `<line x1="${WIDTH - RIGHT + 10}" x2="${WIDTH - RIGHT + 30}" y1="${top + 10 + i * 16}" y2="${top + 10 + i * 16}" stroke="${s.color}" stroke-width="2"/>`,
    );
    out.push(`<text x="${WIDTH - RIGHT + 36}" y="${top + 14 + i * 16}">${escape(s.name)}</text>`);
  });
  out.push(`<rect x="${LEFT}" y="${top}" width="${plotWidth}" height="${PANEL}" fill="none" stroke="#999"/>`);
  return out.join('\n');
}

/** Segment boundaries as labelled vertical lines across all panels. */
function segmentMarks(samples: readonly Sample[], times: number[], height: number): string {
  const tMax = Math.max(1, ...times);
  const out: string[] = [];
  let last = '';
  samples.forEach((s, i) => {
    if (s.segment === last) return;
    last = s.segment;
    const x = LEFT + (Math.max(0, times[i]! - 1) / tMax) * (WIDTH - LEFT - RIGHT);
    out.push(`<line x1="${x}" x2="${x}" y1="${GAP - 20}" y2="${height - 30}" stroke="#bbb" stroke-dasharray="4 3"/>`);
    out.push(`<text x="${x + 3}" y="${GAP - 24}" fill="#666">${escape(s.segment)}</text>`);
  });
  return out.join('\n');
}

/** The chart of a report's samples as an SVG document. */
export function renderChart(report: { scenario: string; runId: string; samples: readonly Sample[] }): string {
  const { samples } = report;
  const times = samples.map((s) => s.t);
  const top = (i: number) => GAP + 10 + i * (PANEL + GAP + 10);
  const height = top(3) + 20;
  const body = [
    panel(top(0), 'Throughput', 'requests/s', times, [
      { name: 'offered', color: '#999', values: samples.map((s) => s.offeredRate) },
      { name: 'answered', color: '#1f77b4', values: samples.map((s) => s.total.requestsPerSec) },
      { name: '2xx', color: '#2ca02c', values: samples.map((s) => s.total.okPerSec) },
    ]),
    panel(top(1), 'Latency (all answers)', 'ms', times, [
      { name: 'p50', color: '#2ca02c', values: samples.map((s) => (s.total.latency.count ? s.total.latency.p50 : null)) },
      { name: 'p90', color: '#ff7f0e', values: samples.map((s) => (s.total.latency.count ? s.total.latency.p90 : null)) },
      { name: 'p99', color: '#d62728', values: samples.map((s) => (s.total.latency.count ? s.total.latency.p99 : null)) },
      { name: 'p99 of 2xx', color: '#9467bd', values: samples.map((s) => (s.total.okLatency.count ? s.total.okLatency.p99 : null)) },
    ]),
    panel(top(2), 'Shed and failed', '% of requests', times, [
      { name: 'shed (503)', color: '#d62728', values: samples.map((s) => s.total.shedPct) },
      {
        name: 'errors+timeouts',
        color: '#8c564b',
        values: samples.map((s) =>
          s.total.requests ? Math.round((10000 * (s.total.errors + s.total.timeouts)) / s.total.requests) / 100 : 0,
        ),
      },
    ]),
    segmentMarks(samples, times, height),
    `<text x="${WIDTH / 2}" y="${height - 8}" text-anchor="middle">seconds since start — ${escape(report.scenario)} ${escape(report.runId)}</text>`,
  ];
  return `<svg xmlns="http://www.w3.org/2000/svg" width="${WIDTH}" height="${height}" viewBox="0 0 ${WIDTH} ${height}" font-family="sans-serif" font-size="11">
<rect width="100%" height="100%" fill="white"/>
${body.join('\n')}
</svg>
`;
}
