import type { StatsAggregate } from './stats-query.js';

/** The aggregates of one bucket of one group, as the rollup columns hold them (min and max null without values). */
export interface Cell {
  count: number;
  valueCount: number;
  sum: number;
  min: number | null;
  max: number | null;
}

/** The fields a read returns per cell, in order, for the aggregates asked: bucket index and count always, the rest as needed. */
export type CellField = 'i' | 'count' | 'value_count' | 'sum' | 'min' | 'max';

/** See CellField. */
export function cellFields(aggregates: readonly StatsAggregate[]): CellField[] {
  const has = (agg: StatsAggregate) => aggregates.includes(agg);
  const fields: CellField[] = ['i', 'count'];
  if (has('avg')) fields.push('value_count');
  if (has('sum') || has('avg')) fields.push('sum');
  if (has('min')) fields.push('min');
  if (has('max')) fields.push('max');
  return fields;
}

/** One part of an answer (the rolled-up past, or what lies past it): group → bucket index → cell. */
export interface StatsPart {
  readonly groups: ReadonlyMap<string, ReadonlyMap<number, Cell>>;
  /** Cells in all groups. */
  readonly cells: number;
}

/** An empty part. */
export const EMPTY_PART: StatsPart = { groups: new Map(), cells: 0 };

/**
 * Decodes the cells of each group as a read returns them: one text per group of `,`-separated cells of
 * ` `-separated fields (float8 as Postgres writes it, the shortest text that reads back as the same double; `n`
 * for a missing minimum or maximum).
 */
export function parsePart(rows: Iterable<[group: string, cells: string]>, fields: readonly CellField[]): StatsPart {
  const at = (f: CellField) => fields.indexOf(f);
  const [count, valueCount, sum, min, max] = [at('count'), at('value_count'), at('sum'), at('min'), at('max')];
  const value = (f: string[], k: number): number | null => (k < 0 || f[k] === 'n' ? null : Number(f[k]));
  const groups = new Map<string, Map<number, Cell>>();
  let cells = 0;
  for (const [group, text] of rows) {
    const byBucket = new Map<number, Cell>();
    for (const cell of text.split(',')) {
      const f = cell.split(' ');
      byBucket.set(Number(f[0]), {
        count: Number(f[count]),
        valueCount: valueCount < 0 ? 0 : Number(f[valueCount]),
        sum: sum < 0 ? 0 : Number(f[sum]),
        min: value(f, min),
        max: value(f, max),
      });
    }
    cells += byBucket.size;
    groups.set(group, byBucket);
  }
  return { groups, cells };
}

const least = (a: number | null, b: number | null) => (a === null ? b : b === null ? a : Math.min(a, b));
const greatest = (a: number | null, b: number | null) => (a === null ? b : b === null ? a : Math.max(a, b));

/** Two disjoint sets of rows of one bucket, together. */
export function mergeCells(a: Cell, b: Cell): Cell {
  return {
    count: a.count + b.count,
    valueCount: a.valueCount + b.valueCount,
    sum: a.sum + b.sum,
    min: least(a.min, b.min),
    max: greatest(a.max, b.max),
  };
}

/** Byte order of the UTF-8 encodings (what ORDER BY … COLLATE "C" gives), whatever the strings hold. */
export const byteOrder = (a: string, b: string): number => Buffer.compare(Buffer.from(a), Buffer.from(b));
