-- Rollups of events per tenant × type at three resolutions (UTC minute, hour, day): how many events, and the
-- count, sum, min and max of their `value`. The batch write maintains all three in the transaction that
-- inserts the events, from the rows that insert actually stored (see lib/pg-batch-write.ts), so a rollup always
-- equals an aggregate over `events` as of any snapshot. value_sum is 0 and value_min/value_max are NULL when no
-- event of the bucket carried a value.
--
-- The primary key leads with (tenant, bucket): every query is one tenant over a time range, and the newest
-- bucket of a tenant is one backward index probe. The batch write upserts in primary-key order.
CREATE TABLE rollup_minute (
  tenant      text             NOT NULL,
  type        text             NOT NULL,
  bucket      timestamptz      NOT NULL,
  event_count bigint           NOT NULL,
  value_count bigint           NOT NULL,
  value_sum   double precision NOT NULL,
  value_min   double precision,
  value_max   double precision,
  PRIMARY KEY (tenant, bucket, type)
) PARTITION BY RANGE (bucket);

-- Minute rows are partitioned by UTC day exactly like events, so a day's minute rollups are created and dropped
-- with the day's events. Hour and day rows are few (24 and 1 per tenant × type × day): plain tables, whose rows
-- of a day are deleted when that day's events are dropped.
CREATE TABLE rollup_hour (LIKE rollup_minute INCLUDING ALL);
CREATE TABLE rollup_day (LIKE rollup_minute INCLUDING ALL);

-- Creates the daily partitions of events and rollup_minute covering [from_day, to_day]; returns the names it
-- created. A partition that appears concurrently (another starter) is skipped.
CREATE OR REPLACE FUNCTION floodgate_create_partitions(from_day date, to_day date) RETURNS SETOF text
LANGUAGE plpgsql AS $$
DECLARE
  day date := from_day;
  parent text;
  name text;
BEGIN
  WHILE day <= to_day LOOP
    FOREACH parent IN ARRAY ARRAY['events', 'rollup_minute'] LOOP
      name := parent || '_p' || to_char(day, 'YYYYMMDD');
      IF to_regclass(quote_ident(name)) IS NULL THEN
        BEGIN
          EXECUTE format(
            'CREATE TABLE %I PARTITION OF %I FOR VALUES FROM (%L) TO (%L)',
            name, parent, (day::timestamp AT TIME ZONE 'UTC'), ((day + 1)::timestamp AT TIME ZONE 'UTC'));
          RETURN NEXT name;
        EXCEPTION WHEN duplicate_table OR unique_violation THEN
          NULL;
        END;
      END IF;
    END LOOP;
    day := day + 1;
  END LOOP;
END $$;

-- Drops the daily partitions of events and rollup_minute that end on or before before_day, and the hour and
-- day rollups of the same days; returns the names of the partitions it dropped.
CREATE OR REPLACE FUNCTION floodgate_drop_partitions(before_day date) RETURNS SETOF text
LANGUAGE plpgsql AS $$
DECLARE
  part record;
  dropped boolean := false;
BEGIN
  FOR part IN
    SELECT c.relname
    FROM pg_inherits i
    JOIN pg_class c ON c.oid = i.inhrelid
    WHERE i.inhparent IN ('events'::regclass, 'rollup_minute'::regclass)
      AND c.relname ~ '^(events|rollup_minute)_p[0-9]{8}$'
      AND to_date(right(c.relname, 8), 'YYYYMMDD') < before_day
  LOOP
    EXECUTE format('DROP TABLE %I', part.relname);
    dropped := true;
    RETURN NEXT part.relname;
  END LOOP;
  -- Only when a day went: both tables are scanned (bucket is not their leading key), which every maintenance
  -- pass need not pay.
  IF dropped THEN
    DELETE FROM rollup_hour WHERE bucket < (before_day::timestamp AT TIME ZONE 'UTC');
    DELETE FROM rollup_day WHERE bucket < (before_day::timestamp AT TIME ZONE 'UTC');
  END IF;
END $$;

-- Recomputes the rollups of the UTC days [from_day, to_day] from events. Writers wait meanwhile (SHARE lock on
-- events), so nothing committed is missed or counted twice. The migration backfills with it; an operator may
-- run it to check or repair a day (the result equals what the batch write maintains).
CREATE FUNCTION floodgate_rebuild_rollups(from_day date, to_day date) RETURNS bigint
LANGUAGE plpgsql AS $$
DECLARE
  lo timestamptz := from_day::timestamp AT TIME ZONE 'UTC';
  hi timestamptz := (to_day + 1)::timestamp AT TIME ZONE 'UTC';
  n bigint;
BEGIN
  LOCK TABLE events IN SHARE MODE;
  DELETE FROM rollup_minute WHERE bucket >= lo AND bucket < hi;
  DELETE FROM rollup_hour WHERE bucket >= lo AND bucket < hi;
  DELETE FROM rollup_day WHERE bucket >= lo AND bucket < hi;
  INSERT INTO rollup_minute
  SELECT tenant, type, date_bin('1 minute', occurred_at, 'epoch'), count(*), count(value), coalesce(sum(value), 0), min(value), max(value)
  FROM events
  WHERE occurred_at >= lo AND occurred_at < hi
  GROUP BY 1, 2, 3;
  GET DIAGNOSTICS n = ROW_COUNT;
  INSERT INTO rollup_hour
  SELECT tenant, type, date_bin('1 hour', bucket, 'epoch'), sum(event_count), sum(value_count), sum(value_sum), min(value_min), max(value_max)
  FROM rollup_minute
  WHERE bucket >= lo AND bucket < hi
  GROUP BY 1, 2, 3;
  INSERT INTO rollup_day
  SELECT tenant, type, date_bin('1 day', bucket, 'epoch'), sum(event_count), sum(value_count), sum(value_sum), min(value_min), max(value_max)
  FROM rollup_hour
  WHERE bucket >= lo AND bucket < hi
  GROUP BY 1, 2, 3;
  RETURN n;
END $$;

-- Backfill: minute partitions for every day events already has, then the rollups of those days.
DO $$
DECLARE
  first_day date;
  last_day date;
BEGIN
  SELECT min(to_date(right(c.relname, 8), 'YYYYMMDD')), max(to_date(right(c.relname, 8), 'YYYYMMDD'))
  INTO first_day, last_day
  FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
  WHERE i.inhparent = 'events'::regclass AND c.relname ~ '^events_p[0-9]{8}$';
  IF first_day IS NOT NULL THEN
    PERFORM floodgate_create_partitions(first_day, last_day);
    PERFORM floodgate_rebuild_rollups(first_day, last_day);
  END IF;
END $$;
