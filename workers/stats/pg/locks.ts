import { COLLECTOR_APPLICATION_NAME, type PgSectionContext } from './section.js';

/** Table-level lock modes, always exposed (as 0 when unused) so `granted="false"` series exist for alerting. */
const LOCK_MODES = [
  'AccessShareLock',
  'RowShareLock',
  'RowExclusiveLock',
  'ShareUpdateExclusiveLock',
  'ShareLock',
  'ShareRowExclusiveLock',
  'ExclusiveLock',
  'AccessExclusiveLock',
];

/** pg_locks held or awaited by backends of this database, by mode. */
export function locksSection({ scrape, timed }: PgSectionContext): void {
  // pg_locks held or awaited by backends of this database.
  const locks = scrape.gauge({
    name: 'floodgate_pg_locks',
    help: 'Locks held (granted="true") or awaited (granted="false") by backends of this database (this collector\'s own left out), by mode.',
    labelNames: ['mode', 'granted'],
  });
  scrape.section('locks', [locks], () =>
    timed(async (client) => {
      const { rows } = await client.query<{ mode: string; granted: boolean; n: number }>(
        `SELECT l.mode, l.granted, count(*)::int AS n
           FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid
          WHERE a.datname = current_database() AND a.application_name IS DISTINCT FROM $1
          GROUP BY 1, 2`,
        [COLLECTOR_APPLICATION_NAME],
      );
      return () => {
        for (const mode of LOCK_MODES) for (const granted of ['true', 'false']) locks.set({ mode, granted }, 0);
        for (const r of rows) locks.set({ mode: r.mode, granted: String(r.granted) }, r.n);
      };
    }),
  );
}
