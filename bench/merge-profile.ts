// Where the merge statement's time goes: EXPLAIN (ANALYZE, BUFFERS, WAL) of each statement (no rollups, the minute
// upsert it had before rollup_pending, the pending append it has now) over the same batches of one scenario,
// statements taking turns batch by batch on a private database each; the time of each step, averaged per batch.
//   node --import tsx bench/merge-profile.ts [--tenants 20] [--spread-minutes 10] [--batches 12]
import { parseArgs } from 'node:util';
import pg from 'pg';
import { loadConfig } from '../lib/config.js';
import { createPool, type Pool } from '../lib/db.js';
import { migrate } from '../lib/migrate.js';
import { ensurePartitions } from '../lib/partitions.js';
import { CREATE_STAGING, MERGE_STAGING, ROLLUP_SHARED_LOCK, copyIntoStaging } from '../lib/pg-batch-write.js';
import { MINUTE_UPSERT_MERGE, PLAIN_MERGE, batchesFor, minuteGroups, median } from './rollup-variants.js';

const { values: args } = parseArgs({
  options: {
    'admin-url': { type: 'string', default: 'postgres://postgres@127.0.0.1:5432/postgres' },
    tenants: { type: 'string', default: '20' },
    'spread-minutes': { type: 'string', default: '10' },
    batches: { type: 'string', default: '12' },
  },
});

const STATEMENTS = [
  { name: 'no rollups', merge: PLAIN_MERGE },
  { name: 'minute upsert (before)', merge: MINUTE_UPSERT_MERGE },
  { name: 'pending append (now)', merge: MERGE_STAGING },
];

interface PlanNode {
  'Node Type': string;
  'CTE Name'?: string;
  'Subplan Name'?: string;
  'Relation Name'?: string;
  'Actual Total Time': number;
  'Actual Loops': number;
  'WAL Bytes'?: number;
  Plans?: PlanNode[];
}

const isCte = (n: PlanNode) => n['Subplan Name']?.startsWith('CTE ') ?? false;
const total = (n: PlanNode) => n['Actual Total Time'] * n['Actual Loops'];

/**
 * The time of each CTE of a plan (its nodes' own time) and of the final select. A CTE runs when a CTE Scan first
 * pulls from it, inside that scan's time: its time is taken off the scan reading it that took longest; a
 * data-modifying CTE nobody reads runs after the main plan, in none of its nodes' time.
 */
function steps(root: PlanNode): Map<string, { ms: number; walBytes: number }> {
  const nodes: PlanNode[] = [];
  const collect = (n: PlanNode) => {
    nodes.push(n);
    for (const c of n.Plans ?? []) collect(c);
  };
  collect(root);
  const charged = new Map<PlanNode, number>();
  for (const cte of nodes.filter(isCte)) {
    const name = cte['Subplan Name']!.slice(4);
    const scans = nodes.filter((n) => n['Node Type'] === 'CTE Scan' && n['CTE Name'] === name);
    const first = scans.sort((x, y) => total(y) - total(x))[0];
    if (first) charged.set(first, (charged.get(first) ?? 0) + total(cte));
  }
  const out = new Map<string, { ms: number; walBytes: number }>();
  const visit = (node: PlanNode, owner: string) => {
    const name = isCte(node) ? node['Subplan Name']!.slice(4) : owner;
    const entry = out.get(name) ?? { ms: 0, walBytes: 0 };
    const below = (node.Plans ?? []).filter((c) => !isCte(c)).reduce((sum, c) => sum + total(c), 0);
    entry.ms += Math.max(0, total(node) - below - (charged.get(node) ?? 0));
    if (node['Node Type'] === 'ModifyTable') entry.walBytes += node['WAL Bytes'] ?? 0;
    out.set(name, entry);
    for (const c of node.Plans ?? []) visit(c, name);
  };
  visit(root, 'final select');
  return out;
}

const runId = Date.now().toString(36);
const admin = new pg.Client({ connectionString: args['admin-url'] });
await admin.connect();
const pools: Pool[] = [];
try {
  for (let i = 0; i < STATEMENTS.length; i++) {
    const name = `floodgate_bench_profile_${runId}_${i}`;
    await admin.query(`CREATE DATABASE ${name}`);
    const pool = createPool(Object.assign(new URL(args['admin-url']), { pathname: `/${name}` }).href, {
      max: 1,
      applicationName: 'floodgate-bench',
    });
    pools.push(pool);
    await migrate(pool);
    await ensurePartitions(pool, loadConfig({}));
  }
  const scenario = { name: 'profile', tenants: Number(args.tenants), spreadMinutes: Number(args['spread-minutes']), writers: 1 };
  const batches = batchesFor(scenario, Number(args.batches) * 5000, 7);
  const sums = STATEMENTS.map(() => new Map<string, { ms: number; walBytes: number }>());
  const execution = STATEMENTS.map(() => [] as number[]);
  const commit = STATEMENTS.map(() => [] as number[]);
  let measured = 0;
  for (const [b, batch] of batches.entries()) {
    for (let k = 0; k < STATEMENTS.length; k++) {
      const v = (b + k) % STATEMENTS.length;
      const client = await pools[v]!.connect();
      try {
        await client.query('BEGIN');
        await client.query(CREATE_STAGING);
        await copyIntoStaging(client, batch);
        await client.query(ROLLUP_SHARED_LOCK);
        const { rows } = await client.query<{ 'QUERY PLAN': [{ Plan: PlanNode; 'Execution Time': number }] }>(
          `EXPLAIN (ANALYZE, BUFFERS, WAL, FORMAT JSON) ${STATEMENTS[v]!.merge}`,
        );
        const started = performance.now();
        await client.query('COMMIT');
        if (b < 2) continue; // warm-up: the first batches create the rows the next ones update
        commit[v]!.push(performance.now() - started);
        const plan = rows[0]!['QUERY PLAN'][0];
        execution[v]!.push(plan['Execution Time']);
        for (const [name, s] of steps(plan.Plan)) {
          const sum = sums[v]!.get(name) ?? { ms: 0, walBytes: 0 };
          sums[v]!.set(name, { ms: sum.ms + s.ms, walBytes: sum.walBytes + s.walBytes });
        }
      } finally {
        client.release();
      }
    }
    if (b >= 2) measured++;
  }
  console.log(
    `\n${scenario.tenants} tenants, events of the last ${scenario.spreadMinutes} minutes: ${median(batches.map(minuteGroups))} minute rows per batch, ${measured} batches; ms per batch (mean), WAL KiB in brackets\n`,
  );
  const names = [...new Set(sums.flatMap((m) => [...m.keys()]))];
  console.log(`| Step | ${STATEMENTS.map((s) => s.name).join(' | ')} |`);
  console.log(`| --- |${STATEMENTS.map(() => ' ---: |').join('')}`);
  for (const name of names) {
    const cells = sums.map((m) => {
      const s = m.get(name);
      return s ? `${(s.ms / measured).toFixed(1)}${s.walBytes ? ` (${Math.round(s.walBytes / measured / 1024)})` : ''}` : '';
    });
    console.log(`| ${name} | ${cells.join(' | ')} |`);
  }
  const mean = (xs: number[]) => (xs.reduce((a, b) => a + b, 0) / xs.length).toFixed(1);
  console.log(`| execution (median) | ${execution.map((xs) => median(xs).toFixed(1)).join(' | ')} |`);
  console.log(`| commit | ${commit.map(mean).join(' | ')} |`);
} finally {
  for (const pool of pools) await pool.end();
  for (let i = 0; i < STATEMENTS.length; i++)
    await admin.query(`DROP DATABASE IF EXISTS floodgate_bench_profile_${runId}_${i} WITH (FORCE)`);
  await admin.end();
}
