import { mergeCells, type Cell, type StatsPart } from './stats-cells.js';
import { answerGroups, type StatsPlan, type StatsRequest } from './stats-query.js';

/**
 * The two encodings of a stats answer. `json`: one object per point, `{"t":"…","count":…}` (the default).
 * `columns`: one array per aggregate and series, bucket i starting at `from + i × step` (about a tenth of the
 * bytes; asked for with `Accept: application/vnd.floodgate.columns+json`).
 */
export type StatsFormat = 'json' | 'columns';

/** The media type of the `columns` encoding. */
export const COLUMNS_TYPE = 'application/vnd.floodgate.columns+json';

/** What renderStats writes besides the numbers. */
export interface StatsHeader {
  readonly window: string;
  readonly step: string;
  /** Start (epoch ms) of the newest minute holding a committed event of the tenant; null if none. */
  readonly newestMinute: number | null;
}

/** A JSON number as JSON.stringify writes it (a non-finite one is null). */
const num = (x: number): string => (Number.isFinite(x) ? String(x) : 'null');
const nullable = (x: number | null): string => (x === null ? 'null' : num(x));

/**
 * The base part of answers (the rolled-up past of one tenant's question over one range), with its series
 * rendered once in each encoding asked for: every answer built on it renders only the buckets its live part
 * touches. Bound to the request and plan it was read for.
 */
export interface StatsBaseView {
  readonly part: StatsPart;
  /** The points of group `g`, one text per bucket, in `format` (columns: one array of texts per aggregate). */
  series(g: string, format: 'json'): string[];
  series(g: string, format: 'columns'): string[][];
  /** One bucket's point (json) or values (columns), of `cell` or of an empty bucket. */
  jsonPoint(i: number, cell: Cell | undefined): string;
  columnValues(cell: Cell | undefined): string[];
}

/** See StatsBaseView. */
export function createBaseView(request: StatsRequest, plan: StatsPlan, part: StatsPart): StatsBaseView {
  const { aggregates } = request;
  const prefixes = Array.from({ length: plan.buckets }, (_, i) => `{"t":"${new Date(plan.from + i * request.stepMs).toISOString()}"`);
  let emptyTail = '';
  for (const agg of aggregates) emptyTail += agg === 'count' || agg === 'sum' ? `,"${agg}":0` : `,"${agg}":null`;
  emptyTail += '}';
  const emptyValues = aggregates.map((agg) => (agg === 'count' || agg === 'sum' ? '0' : 'null'));
  const values = (c: Cell): string[] =>
    aggregates.map((agg) => {
      if (agg === 'count') return String(c.count);
      if (agg === 'sum') return num(c.sum);
      if (agg === 'avg') return c.valueCount > 0 ? num(c.sum / c.valueCount) : 'null';
      return nullable(agg === 'min' ? c.min : c.max);
    });
  const jsonPoint = (i: number, cell: Cell | undefined): string => {
    if (!cell) return prefixes[i]! + emptyTail;
    const v = values(cell);
    let out = prefixes[i]!;
    for (let a = 0; a < aggregates.length; a++) out += `,"${aggregates[a]}":${v[a]}`;
    return out + '}';
  };
  const columnValues = (cell: Cell | undefined): string[] => (cell ? values(cell) : emptyValues);
  const json = new Map<string, string[]>();
  const columns = new Map<string, string[][]>();
  function series(g: string, format: 'json'): string[];
  function series(g: string, format: 'columns'): string[][];
  function series(g: string, format: StatsFormat): string[] | string[][] {
    const cells = part.groups.get(g);
    if (format === 'json') {
      let points = json.get(g);
      if (!points) {
        points = Array.from({ length: plan.buckets }, (_, i) => jsonPoint(i, cells?.get(i)));
        json.set(g, points);
      }
      return points;
    }
    let arrays = columns.get(g);
    if (!arrays) {
      arrays = aggregates.map(() => new Array<string>(plan.buckets));
      for (let i = 0; i < plan.buckets; i++) {
        const v = columnValues(cells?.get(i));
        for (let a = 0; a < v.length; a++) arrays[a]![i] = v[a]!;
      }
      columns.set(g, arrays);
    }
    return arrays;
  }
  return { part, series, jsonPoint, columnValues };
}

/**
 * The answer: the base's series with the buckets of the live part merged in, written directly as JSON. Points
 * hold the requested aggregates only, in the order asked; a bucket without events has count 0, sum 0 and null
 * avg, min and max. Series come in byte order of their group.
 */
export function renderStats(
  request: StatsRequest,
  plan: StatsPlan,
  base: StatsBaseView,
  live: StatsPart,
  header: StatsHeader,
  format: StatsFormat,
): string {
  const series: string[] = [];
  const label = (g: string) => (request.groupBy ? `${JSON.stringify(request.groupBy)}:${JSON.stringify(g)},` : '');
  for (const g of answerGroups(request, base.part, live)) {
    const baseCells = base.part.groups.get(g);
    const liveCells = live.groups.get(g);
    const merged = (i: number, cell: Cell) => {
      const stored = baseCells?.get(i);
      return stored ? mergeCells(stored, cell) : cell;
    };
    if (format === 'json') {
      const points = liveCells ? base.series(g, 'json').slice() : base.series(g, 'json');
      if (liveCells) for (const [i, cell] of liveCells) points[i] = base.jsonPoint(i, merged(i, cell));
      series.push(`{${label(g)}"points":[${points.join(',')}]}`);
    } else {
      const arrays = base.series(g, 'columns').map((a) => (liveCells ? a.slice() : a));
      if (liveCells) {
        for (const [i, cell] of liveCells) {
          const v = base.columnValues(merged(i, cell));
          for (let a = 0; a < v.length; a++) arrays[a]![i] = v[a]!;
        }
      }
      const columns = request.aggregates.map((agg, a) => `"${agg}":[${arrays[a]!.join(',')}]`).join(',');
      series.push(`{${label(g)}${columns}}`);
    }
  }
  return (
    `{"window":${JSON.stringify(header.window)},"step":${JSON.stringify(header.step)},"resolution":"${plan.resolution}",` +
    `"from":"${new Date(plan.from).toISOString()}","to":"${new Date(plan.to).toISOString()}",` +
    `"newest_minute":${header.newestMinute === null ? 'null' : `"${new Date(header.newestMinute).toISOString()}"`},` +
    `"group_by":${JSON.stringify(request.groupBy)},"aggregates":${JSON.stringify(request.aggregates)},"series":[${series.join(',')}]}`
  );
}
