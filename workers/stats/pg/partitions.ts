import { DAY_MS, partitionName } from '../../../lib/partitions.js';
import type { PgSectionContext } from './section.js';

/** Partition coverage: how many days ahead have an events partition (catalog only). */
export function partitionsSection({ scrape, timed }: PgSectionContext): void {
  // Partition coverage: catalog only, so it keeps reporting while something holds a lock on `events`.
  const partitionCount = scrape.gauge({ name: 'floodgate_pg_partitions', help: 'Partitions attached to the events table.' });
  const daysAhead = scrape.gauge({
    name: 'floodgate_pg_partition_days_ahead',
    help: 'Consecutive UTC days, starting tomorrow, that already have an events partition.',
  });
  const tomorrowPresent = scrape.gauge({
    name: 'floodgate_pg_partition_tomorrow_present',
    help: "1 if the events partition for tomorrow (UTC) exists, else 0: without it tomorrow's events cannot be stored.",
  });
  scrape.section('partitions', [partitionCount, daysAhead, tomorrowPresent], () =>
    timed(async (client) => {
      const { rows } = await client.query<{ relname: string }>(
        `SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid WHERE i.inhparent = to_regclass('events')`,
      );
      return () => {
        const names = new Set(rows.map((r) => r.relname));
        // UTC days by this host's clock, as lib/partitions.ts creates them.
        const now = Date.now();
        let ahead = 0;
        while (names.has(partitionName(now + (ahead + 1) * DAY_MS))) ahead++;
        partitionCount.set(names.size);
        daysAhead.set(ahead);
        tomorrowPresent.set(ahead > 0 ? 1 : 0);
      };
    }),
  );
}
