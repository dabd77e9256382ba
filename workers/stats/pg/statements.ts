import { quoteIdent } from '../../../lib/db.js';
import { SQLSTATE } from '../../../lib/errors.js';
import { num } from '../stats-scrape.js';
import type { PgSectionContext } from './section.js';

const QUERY_LABEL_CHARS = 80;

/** pg_stat_statements text as a bounded label: whitespace collapsed, first 80 characters. */
export function shortQueryText(query: string): string {
  return query.replace(/\s+/g, ' ').trim().slice(0, QUERY_LABEL_CHARS);
}

/** pg_stat_statements: the top statements of this database by total execution time. */
export function statementsSection({ scrape, timed }: PgSectionContext, topStatements: number): void {
  // pg_stat_statements, top N of this database by total execution time; the labels are reset each scrape, so
  // only the current top N exist (bounded cardinality).
  const statementsAvailable = scrape.gauge({
    name: 'floodgate_pg_stat_statements_available',
    help: '1 if pg_stat_statements is installed in this database and loaded (shared_preload_libraries), else 0.',
  });
  const statementCalls = scrape.counter({
    name: 'floodgate_pg_statement_calls_total',
    help: 'Calls of each of the top statements by total execution time (pg_stat_statements), summed over users.',
    labelNames: ['queryid', 'query'],
  });
  const statementTime = scrape.counter({
    name: 'floodgate_pg_statement_time_seconds_total',
    help: 'Total execution time of each of the top statements (pg_stat_statements total_exec_time).',
    labelNames: ['queryid', 'query'],
  });
  const statementRows = scrape.counter({
    name: 'floodgate_pg_statement_rows_total',
    help: 'Rows returned or affected by each of the top statements.',
    labelNames: ['queryid', 'query'],
  });
  scrape.section('statements', [statementsAvailable, statementCalls, statementTime, statementRows], () =>
    timed(async (client) => {
      const ext = await client.query<{ schema: string }>(
        `SELECT n.nspname AS schema FROM pg_extension e JOIN pg_namespace n ON n.oid = e.extnamespace WHERE e.extname = 'pg_stat_statements'`,
      );
      const schema = ext.rows[0]?.schema;
      if (schema === undefined) return () => statementsAvailable.set(0);
      // The extension can be created without being preloaded; reading it then fails, which means "unavailable".
      await client.query('SAVEPOINT floodgate_pg_stat_statements');
      let rows: { queryid: string; calls: string; total_ms: number; rows: string; query: string | null }[];
      try {
        ({ rows } = await client.query(
          `SELECT queryid::text AS queryid, sum(calls) AS calls, sum(total_exec_time) AS total_ms, sum(rows) AS rows, min(query) AS query
             FROM ${quoteIdent(schema)}.pg_stat_statements
            WHERE dbid = (SELECT oid FROM pg_database WHERE datname = current_database()) AND queryid IS NOT NULL
            GROUP BY queryid
            ORDER BY sum(total_exec_time) DESC
            LIMIT $1`,
          [topStatements],
        ));
      } catch (err) {
        if ((err as { code?: string }).code !== SQLSTATE.objectNotInPrerequisiteState) throw err;
        await client.query('ROLLBACK TO SAVEPOINT floodgate_pg_stat_statements');
        return () => statementsAvailable.set(0);
      }
      return () => {
        statementsAvailable.set(1);
        for (const r of rows) {
          const labels = { queryid: r.queryid, query: shortQueryText(r.query ?? '') };
          statementCalls.inc(labels, num(r.calls));
          statementTime.inc(labels, num(r.total_ms) / 1000);
          statementRows.inc(labels, num(r.rows));
        }
      };
    }),
  );
}
