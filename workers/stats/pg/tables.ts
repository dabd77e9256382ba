import { PARTITION_PREFIX } from '../../../lib/partitions.js';
import { num } from '../stats-scrape.js';
import { type PgSectionContext, ageOrNever } from './section.js';

/** Tables outside the partitioned `events` table whose vacuum health matters (pruned by DELETE). */
const WATCHED_TABLES = ['idempotency_keys'];

/** pg_stat_user_tables: row counts and vacuum ages of the events partitions and the other watched tables. */
export function tablesSection({ scrape, timed }: PgSectionContext): void {
  // pg_stat_user_tables: the events partitions (label `partition`) and the other watched tables (label `table`).
  const partitionInserts = scrape.counter({
    name: 'floodgate_pg_partition_inserts_total',
    help: 'Rows inserted into each events partition (pg_stat_user_tables n_tup_ins).',
    labelNames: ['partition'],
  });
  const partitionLive = scrape.gauge({
    name: 'floodgate_pg_partition_live_tuples',
    help: 'Estimated live rows per events partition.',
    labelNames: ['partition'],
  });
  const partitionDead = scrape.gauge({
    name: 'floodgate_pg_partition_dead_tuples',
    help: 'Estimated dead rows per events partition.',
    labelNames: ['partition'],
  });
  const partitionVacuumAge = scrape.gauge({
    name: 'floodgate_pg_partition_last_autovacuum_age_seconds',
    help: 'Seconds since autovacuum last processed each events partition; -1 if never.',
    labelNames: ['partition'],
  });
  const partitionAnalyzeAge = scrape.gauge({
    name: 'floodgate_pg_partition_last_autoanalyze_age_seconds',
    help: 'Seconds since autoanalyze last processed each events partition; -1 if never.',
    labelNames: ['partition'],
  });
  const tableInserts = scrape.counter({
    name: 'floodgate_pg_table_inserts_total',
    help: 'Rows inserted into each watched table (idempotency_keys).',
    labelNames: ['table'],
  });
  const tableLive = scrape.gauge({
    name: 'floodgate_pg_table_live_tuples',
    help: 'Estimated live rows per watched table.',
    labelNames: ['table'],
  });
  const tableDead = scrape.gauge({
    name: 'floodgate_pg_table_dead_tuples',
    help: 'Estimated dead rows per watched table.',
    labelNames: ['table'],
  });
  const tableVacuumAge = scrape.gauge({
    name: 'floodgate_pg_table_last_autovacuum_age_seconds',
    help: 'Seconds since autovacuum last processed each watched table; -1 if never.',
    labelNames: ['table'],
  });
  const tableAnalyzeAge = scrape.gauge({
    name: 'floodgate_pg_table_last_autoanalyze_age_seconds',
    help: 'Seconds since autoanalyze last processed each watched table; -1 if never.',
    labelNames: ['table'],
  });
  scrape.section(
    'tables',
    [
      partitionInserts,
      partitionLive,
      partitionDead,
      partitionVacuumAge,
      partitionAnalyzeAge,
      tableInserts,
      tableLive,
      tableDead,
      tableVacuumAge,
      tableAnalyzeAge,
    ],
    () =>
      timed(async (client) => {
        // to_regclass and pg_inherits take no lock on the tables, so a held ACCESS EXCLUSIVE lock does not block this.
        const { rows } = await client.query(
          `SELECT s.relname, s.n_tup_ins, s.n_live_tup, s.n_dead_tup,
                  extract(epoch FROM clock_timestamp() - s.last_autovacuum) AS autovacuum_age,
                  extract(epoch FROM clock_timestamp() - s.last_autoanalyze) AS autoanalyze_age,
                  s.relid IN (SELECT inhrelid FROM pg_inherits WHERE inhparent = to_regclass('events')) AS is_partition
             FROM pg_stat_user_tables s
            WHERE (s.relname ~ '^${PARTITION_PREFIX}' AND s.relid IN (SELECT inhrelid FROM pg_inherits WHERE inhparent = to_regclass('events')))
               OR s.relid IN (SELECT to_regclass(t) FROM unnest($1::text[]) AS t)
            ORDER BY s.relname`,
          [WATCHED_TABLES],
        );
        return () => {
          for (const r of rows as Record<string, unknown>[]) {
            const name = String(r.relname);
            if (r.is_partition) {
              const labels = { partition: name };
              partitionInserts.inc(labels, num(r.n_tup_ins));
              partitionLive.set(labels, num(r.n_live_tup));
              partitionDead.set(labels, num(r.n_dead_tup));
              partitionVacuumAge.set(labels, ageOrNever(r.autovacuum_age));
              partitionAnalyzeAge.set(labels, ageOrNever(r.autoanalyze_age));
            } else {
              const labels = { table: name };
              tableInserts.inc(labels, num(r.n_tup_ins));
              tableLive.set(labels, num(r.n_live_tup));
              tableDead.set(labels, num(r.n_dead_tup));
              tableVacuumAge.set(labels, ageOrNever(r.autovacuum_age));
              tableAnalyzeAge.set(labels, ageOrNever(r.autoanalyze_age));
            }
          }
        };
      }),
  );
}
