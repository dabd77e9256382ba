import { PARTITION_PREFIX } from '../../../lib/partitions.js';
import { num } from '../stats-scrape.js';
import type { PgSectionContext } from './section.js';

/** On-disk size of each events partition and of all of them. */
export function sizesSection({ scrape, timed }: PgSectionContext): void {
  // Sizes open each partition (AccessShareLock): a separate section, so a lock only blanks these.
  const partitionSize = scrape.gauge({
    name: 'floodgate_pg_partition_size_bytes',
    help: 'Total size of each events partition: table, indexes and TOAST.',
    labelNames: ['partition'],
  });
  const eventsSize = scrape.gauge({
    name: 'floodgate_pg_events_size_bytes',
    help: 'Total size of all events partitions: tables, indexes and TOAST.',
  });
  scrape.section('sizes', [partitionSize, eventsSize], () =>
    timed(async (client) => {
      const { rows } = await client.query<{ relname: string; bytes: string }>(
        `SELECT c.relname, pg_total_relation_size(c.oid) AS bytes
           FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
          WHERE i.inhparent = to_regclass('events') AND c.relname ~ '^${PARTITION_PREFIX}'
          ORDER BY c.relname`,
      );
      return () => {
        let total = 0;
        for (const r of rows) {
          partitionSize.set({ partition: r.relname }, num(r.bytes));
          total += num(r.bytes);
        }
        eventsSize.set(total);
      };
    }),
  );
}
