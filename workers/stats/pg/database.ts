import { num } from '../stats-scrape.js';
import type { PgSectionContext } from './section.js';

/** pg_stat_database for this database: transactions, tuples, cache hits, deadlocks, temporary files, size. */
export function databaseSection({ scrape, timed }: PgSectionContext): void {
  // pg_stat_database, for this database. Postgres keeps these cumulatively: counters set to its value.
  const transactions = scrape.counter({
    name: 'floodgate_pg_transactions_total',
    help: 'Transactions in this database since the stats reset, by outcome (commit, rollback).',
    labelNames: ['outcome'],
  });
  const tuples = scrape.counter({
    name: 'floodgate_pg_tuples_total',
    help: 'Rows inserted, updated, deleted and fetched in this database (pg_stat_database tup_*), by operation.',
    labelNames: ['operation'],
  });
  const blocksHit = scrape.counter({
    name: 'floodgate_pg_blocks_hit_total',
    help: 'Block reads served from shared buffers (pg_stat_database blks_hit).',
  });
  const blocksRead = scrape.counter({
    name: 'floodgate_pg_blocks_read_total',
    help: 'Block reads that went to the OS (pg_stat_database blks_read).',
  });
  const cacheHitRatio = scrape.gauge({
    name: 'floodgate_pg_cache_hit_ratio',
    help: 'blks_hit / (blks_hit + blks_read) since the stats reset; absent while both are 0.',
  });
  const deadlocks = scrape.counter({ name: 'floodgate_pg_deadlocks_total', help: 'Deadlocks detected in this database.' });
  const tempBytes = scrape.counter({
    name: 'floodgate_pg_temp_bytes_total',
    help: 'Bytes written to temporary files by queries in this database.',
  });
  const tempFiles = scrape.counter({ name: 'floodgate_pg_temp_files_total', help: 'Temporary files created by queries in this database.' });
  const conflicts = scrape.counter({
    name: 'floodgate_pg_conflicts_total',
    help: 'Queries cancelled by recovery conflicts (standbys only).',
  });
  const databaseSize = scrape.gauge({ name: 'floodgate_pg_database_size_bytes', help: 'Size of this database on disk.' });
  scrape.section(
    'database',
    [transactions, tuples, blocksHit, blocksRead, cacheHitRatio, deadlocks, tempBytes, tempFiles, conflicts, databaseSize],
    () =>
      timed(async (client) => {
        const { rows } = await client.query(
          `SELECT xact_commit, xact_rollback, tup_inserted, tup_updated, tup_deleted, tup_fetched, blks_hit, blks_read,
                deadlocks, temp_bytes, temp_files, conflicts, pg_database_size(datid) AS size_bytes
           FROM pg_stat_database WHERE datname = current_database()`,
        );
        const r = rows[0] as Record<string, unknown> | undefined;
        if (!r) throw new Error('pg_stat_database has no row for the current database');
        return () => {
          transactions.inc({ outcome: 'commit' }, num(r.xact_commit));
          transactions.inc({ outcome: 'rollback' }, num(r.xact_rollback));
          for (const operation of ['inserted', 'updated', 'deleted', 'fetched']) tuples.inc({ operation }, num(r[`tup_${operation}`]));
          const hit = num(r.blks_hit);
          const read = num(r.blks_read);
          blocksHit.inc(hit);
          blocksRead.inc(read);
          if (hit + read > 0) cacheHitRatio.set(hit / (hit + read));
          deadlocks.inc(num(r.deadlocks));
          tempBytes.inc(num(r.temp_bytes));
          tempFiles.inc(num(r.temp_files));
          conflicts.inc(num(r.conflicts));
          databaseSize.set(num(r.size_bytes));
        };
      }),
  );
}
