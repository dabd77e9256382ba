import { num } from '../stats-scrape.js';
import { COLLECTOR_APPLICATION_NAME, type PgSectionContext } from './section.js';

/**
 * The states pg_stat_activity gives client backends, always exposed (0 with wait_event_type="none" when no
 * connection is in them): on an idle database every pool has closed its connections, and a gauge without series
 * would leave the connection panels and the saturation alert with no data instead of 0.
 */
const STATES = ['active', 'idle', 'idle in transaction', 'idle in transaction (aborted)', 'fastpath function call', 'disabled'];

/** pg_stat_activity: connections by state, against max_connections; the oldest transaction and query. */
export function activitySection({ scrape, timed }: PgSectionContext): void {
  // pg_stat_activity: client connections of this database; the server-wide count is what max_connections limits.
  const connections = scrape.gauge({
    name: 'floodgate_pg_connections',
    help: "Client connections to this database (this collector's own left out) by state (pg's spelling, 'unknown' if null; every state present, 0 if none) and wait_event_type ('none' if not waiting).",
    labelNames: ['state', 'wait_event_type'],
  });
  const serverConnections = scrape.gauge({
    name: 'floodgate_pg_server_connections',
    help: 'Client connections to the whole server, all databases: what max_connections limits.',
  });
  const maxConnections = scrape.gauge({ name: 'floodgate_pg_max_connections', help: "The server's max_connections setting." });
  const oldestTransaction = scrape.gauge({
    name: 'floodgate_pg_oldest_transaction_age_seconds',
    help: 'Age of the oldest open transaction in this database (0 if none): long ones hold back vacuum.',
  });
  const oldestQuery = scrape.gauge({
    name: 'floodgate_pg_oldest_active_query_age_seconds',
    help: 'Run time so far of the longest-running active query in this database (0 if none).',
  });
  scrape.section('activity', [connections, serverConnections, maxConnections, oldestTransaction, oldestQuery], () =>
    timed(async (client) => {
      const byState = await client.query<{ state: string; wait_event_type: string; n: number }>(
        `SELECT coalesce(state, 'unknown') AS state, coalesce(wait_event_type, 'none') AS wait_event_type, count(*)::int AS n
           FROM pg_stat_activity
          WHERE datname = current_database() AND backend_type = 'client backend' AND application_name IS DISTINCT FROM $1
          GROUP BY 1, 2
          ORDER BY 1, 2`,
        [COLLECTOR_APPLICATION_NAME],
      );
      const totals = await client.query<Record<string, unknown>>(
        `SELECT current_setting('max_connections')::int AS max_connections,
                (SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'client backend')::int AS server_connections,
                (SELECT coalesce(extract(epoch FROM max(clock_timestamp() - xact_start)), 0) FROM pg_stat_activity
                  WHERE datname = current_database() AND backend_type = 'client backend'
                    AND application_name IS DISTINCT FROM $1 AND xact_start IS NOT NULL) AS oldest_xact,
                (SELECT coalesce(extract(epoch FROM max(clock_timestamp() - query_start)), 0) FROM pg_stat_activity
                  WHERE datname = current_database() AND backend_type = 'client backend'
                    AND application_name IS DISTINCT FROM $1 AND state = 'active') AS oldest_query`,
        [COLLECTOR_APPLICATION_NAME],
      );
      const t = totals.rows[0] ?? {};
      return () => {
        for (const state of STATES) connections.set({ state, wait_event_type: 'none' }, 0);
        for (const r of byState.rows) connections.set({ state: r.state, wait_event_type: r.wait_event_type }, r.n);
        serverConnections.set(num(t.server_connections));
        maxConnections.set(num(t.max_connections));
        oldestTransaction.set(Math.max(0, num(t.oldest_xact)));
        oldestQuery.set(Math.max(0, num(t.oldest_query)));
      };
    }),
  );
}
