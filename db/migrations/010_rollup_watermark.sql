-- A 5-minute rollup level, and coarse levels (5 minutes, hour, day) maintained from the minute rows by the
-- maintenance loop up to a watermark instead of in every batch's transaction.
--
-- The batch write keeps only rollup_minute, exact at every snapshot as before. For every coarse level and every
-- bucket of it, the invariant is: the coarse row holds the aggregate of the minute rows of the bucket that lie
-- before rollup_watermark.upto, unless rollup_stale names a minute of that bucket (a late event arrived there
-- after it was rolled up), in which case the coarse row is ignored until the next roll-up recomputes it. The
-- views rollup_5m_live, rollup_hour_live and rollup_day_live answer from those pieces: coarse rows that are not
-- stale, plus the minute rows at or after the watermark, plus the minute rows of stale buckets; they equal the
-- aggregate over `events` at every snapshot.
--
-- Locks: every batch write takes floodgate_rollup_key() in shared mode (pg_advisory_xact_lock_shared) before its
-- merge statement, which reads the watermark to decide which minutes it must record as stale; a roll-up, a
-- rebuild and a partition drop take it in exclusive mode before any other lock, so the watermark never moves
-- while a write that read it is uncommitted. Order everywhere: the advisory lock, then events, rollup_minute,
-- rollup_stale, then the coarse tables.
CREATE FUNCTION floodgate_rollup_key() RETURNS bigint LANGUAGE sql IMMUTABLE AS 'SELECT 7261010::bigint';

CREATE TABLE rollup_5m (LIKE rollup_minute INCLUDING ALL);

CREATE TABLE rollup_watermark (
  only_row boolean     PRIMARY KEY DEFAULT true CHECK (only_row),
  upto     timestamptz NOT NULL
);

-- Minutes (of a tenant) below the watermark to which a write added events after they were rolled up.
CREATE TABLE rollup_stale (
  tenant text        NOT NULL,
  bucket timestamptz NOT NULL,
  PRIMARY KEY (tenant, bucket)
);

-- The roll-up reads the minutes crossing the watermark of every tenant: by bucket, not by tenant first.
CREATE INDEX rollup_minute_bucket ON rollup_minute (bucket);

-- Minute rows are updated by every batch that adds to them. Half of each page of a minute partition is left
-- free, so that an update finds room on its own page: a HOT update that touches no index (neither the primary
-- key nor the bucket index above). Existing partitions keep it for the pages they fill from now on.
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
            'CREATE TABLE %I PARTITION OF %I FOR VALUES FROM (%L) TO (%L) %s',
            name, parent, (day::timestamp AT TIME ZONE 'UTC'), ((day + 1)::timestamp AT TIME ZONE 'UTC'),
            CASE WHEN parent = 'rollup_minute' THEN 'WITH (fillfactor = 50)' ELSE '' END);
          RETURN NEXT name;
        EXCEPTION WHEN duplicate_table OR unique_violation THEN
          NULL;
        END;
      END IF;
    END LOOP;
    day := day + 1;
  END LOOP;
END $$;

DO $$
DECLARE
  part record;
BEGIN
  FOR part IN
    SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid WHERE i.inhparent = 'rollup_minute'::regclass
  LOOP
    EXECUTE format('ALTER TABLE %I SET (fillfactor = 50)', part.relname);
  END LOOP;
END $$;

-- Recomputes the coarse rows of [lo, hi) (whole days) from the minute rows before the watermark.
CREATE FUNCTION floodgate_reroll(lo timestamptz, hi timestamptz) RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
  mark timestamptz := (SELECT upto FROM rollup_watermark);
BEGIN
  DELETE FROM rollup_stale WHERE bucket >= lo AND bucket < hi;
  DELETE FROM rollup_5m WHERE bucket >= lo AND bucket < hi;
  DELETE FROM rollup_hour WHERE bucket >= lo AND bucket < hi;
  DELETE FROM rollup_day WHERE bucket >= lo AND bucket < hi;
  INSERT INTO rollup_5m
  SELECT tenant, type, date_bin('5 minutes', bucket, 'epoch'), sum(event_count), sum(value_count), sum(value_sum), min(value_min), max(value_max)
  FROM rollup_minute
  WHERE bucket >= lo AND bucket < hi AND bucket < mark
  GROUP BY 1, 2, 3
  ORDER BY 1, 3, 2;
  INSERT INTO rollup_hour
  SELECT tenant, type, date_bin('1 hour', bucket, 'epoch'), sum(event_count), sum(value_count), sum(value_sum), min(value_min), max(value_max)
  FROM rollup_5m
  WHERE bucket >= lo AND bucket < hi
  GROUP BY 1, 2, 3
  ORDER BY 1, 3, 2;
  INSERT INTO rollup_day
  SELECT tenant, type, date_bin('1 day', bucket, 'epoch'), sum(event_count), sum(value_count), sum(value_sum), min(value_min), max(value_max)
  FROM rollup_hour
  WHERE bucket >= lo AND bucket < hi
  GROUP BY 1, 2, 3
  ORDER BY 1, 3, 2;
END $$;

-- One roll-up pass: recompute the buckets late events made stale, then roll the minutes from the watermark up to
-- `target` (rounded down to a minute; the watermark never moves back) into the coarse levels, additively.
-- Returns how many stale minutes it recomputed and the watermark it left.
CREATE FUNCTION floodgate_roll_up(target timestamptz, OUT stale_minutes integer, OUT watermark timestamptz)
LANGUAGE plpgsql AS $$
DECLARE
  mark timestamptz;
  tenants text[];
  minutes timestamptz[];
BEGIN
  PERFORM pg_advisory_xact_lock(floodgate_rollup_key());
  SELECT upto INTO mark FROM rollup_watermark FOR UPDATE;
  watermark := greatest(mark, date_bin('1 minute', target, 'epoch'));

  WITH gone AS (DELETE FROM rollup_stale RETURNING tenant, bucket)
  SELECT array_agg(tenant ORDER BY tenant, bucket), array_agg(bucket ORDER BY tenant, bucket) INTO tenants, minutes FROM gone;
  stale_minutes := coalesce(cardinality(tenants), 0);
  IF stale_minutes > 0 THEN
    -- Recomputed (not added to): each level from the one below, below the current watermark.
    INSERT INTO rollup_5m AS r
    SELECT m.tenant, m.type, s.b, sum(m.event_count), sum(m.value_count), sum(m.value_sum), min(m.value_min), max(m.value_max)
    FROM (SELECT DISTINCT t, date_bin('5 minutes', b, 'epoch') AS b FROM unnest(tenants, minutes) AS u(t, b)) s
    JOIN rollup_minute m ON m.tenant = s.t AND m.bucket >= s.b AND m.bucket < s.b + interval '5 minutes' AND m.bucket < mark
    GROUP BY 1, 2, 3
    ORDER BY 1, 3, 2
    ON CONFLICT (tenant, bucket, type) DO UPDATE SET
      event_count = EXCLUDED.event_count, value_count = EXCLUDED.value_count, value_sum = EXCLUDED.value_sum,
      value_min = EXCLUDED.value_min, value_max = EXCLUDED.value_max;
    INSERT INTO rollup_hour AS r
    SELECT m.tenant, m.type, s.b, sum(m.event_count), sum(m.value_count), sum(m.value_sum), min(m.value_min), max(m.value_max)
    FROM (SELECT DISTINCT t, date_bin('1 hour', b, 'epoch') AS b FROM unnest(tenants, minutes) AS u(t, b)) s
    JOIN rollup_5m m ON m.tenant = s.t AND m.bucket >= s.b AND m.bucket < s.b + interval '1 hour'
    GROUP BY 1, 2, 3
    ORDER BY 1, 3, 2
    ON CONFLICT (tenant, bucket, type) DO UPDATE SET
      event_count = EXCLUDED.event_count, value_count = EXCLUDED.value_count, value_sum = EXCLUDED.value_sum,
      value_min = EXCLUDED.value_min, value_max = EXCLUDED.value_max;
    INSERT INTO rollup_day AS r
    SELECT m.tenant, m.type, s.b, sum(m.event_count), sum(m.value_count), sum(m.value_sum), min(m.value_min), max(m.value_max)
    FROM (SELECT DISTINCT t, date_bin('1 day', b, 'epoch') AS b FROM unnest(tenants, minutes) AS u(t, b)) s
    JOIN rollup_hour m ON m.tenant = s.t AND m.bucket >= s.b AND m.bucket < s.b + interval '1 day'
    GROUP BY 1, 2, 3
    ORDER BY 1, 3, 2
    ON CONFLICT (tenant, bucket, type) DO UPDATE SET
      event_count = EXCLUDED.event_count, value_count = EXCLUDED.value_count, value_sum = EXCLUDED.value_sum,
      value_min = EXCLUDED.value_min, value_max = EXCLUDED.value_max;
  END IF;

  IF watermark > mark THEN
    WITH d5 AS (
      SELECT tenant, date_bin('5 minutes', bucket, 'epoch') AS bucket, type, sum(event_count)::bigint AS event_count,
             sum(value_count)::bigint AS value_count, sum(value_sum) AS value_sum, min(value_min) AS value_min, max(value_max) AS value_max
      FROM rollup_minute WHERE bucket >= mark AND bucket < watermark GROUP BY 1, 2, 3
    ),
    dh AS (
      SELECT tenant, date_bin('1 hour', bucket, 'epoch') AS bucket, type, sum(event_count)::bigint AS event_count,
             sum(value_count)::bigint AS value_count, sum(value_sum) AS value_sum, min(value_min) AS value_min, max(value_max) AS value_max
      FROM d5 GROUP BY 1, 2, 3
    ),
    dd AS (
      SELECT tenant, date_bin('1 day', bucket, 'epoch') AS bucket, type, sum(event_count)::bigint AS event_count,
             sum(value_count)::bigint AS value_count, sum(value_sum) AS value_sum, min(value_min) AS value_min, max(value_max) AS value_max
      FROM dh GROUP BY 1, 2, 3
    ),
    u5 AS (
      INSERT INTO rollup_5m AS r (tenant, bucket, type, event_count, value_count, value_sum, value_min, value_max)
      SELECT * FROM d5 ORDER BY 1, 2, 3
      ON CONFLICT (tenant, bucket, type) DO UPDATE SET
        event_count = r.event_count + EXCLUDED.event_count, value_count = r.value_count + EXCLUDED.value_count,
        value_sum = r.value_sum + EXCLUDED.value_sum, value_min = LEAST(r.value_min, EXCLUDED.value_min),
        value_max = GREATEST(r.value_max, EXCLUDED.value_max)
    ),
    uh AS (
      INSERT INTO rollup_hour AS r (tenant, bucket, type, event_count, value_count, value_sum, value_min, value_max)
      SELECT * FROM dh ORDER BY 1, 2, 3
      ON CONFLICT (tenant, bucket, type) DO UPDATE SET
        event_count = r.event_count + EXCLUDED.event_count, value_count = r.value_count + EXCLUDED.value_count,
        value_sum = r.value_sum + EXCLUDED.value_sum, value_min = LEAST(r.value_min, EXCLUDED.value_min),
        value_max = GREATEST(r.value_max, EXCLUDED.value_max)
    )
    INSERT INTO rollup_day AS r (tenant, bucket, type, event_count, value_count, value_sum, value_min, value_max)
    SELECT * FROM dd ORDER BY 1, 2, 3
    ON CONFLICT (tenant, bucket, type) DO UPDATE SET
      event_count = r.event_count + EXCLUDED.event_count, value_count = r.value_count + EXCLUDED.value_count,
      value_sum = r.value_sum + EXCLUDED.value_sum, value_min = LEAST(r.value_min, EXCLUDED.value_min),
      value_max = GREATEST(r.value_max, EXCLUDED.value_max);
    UPDATE rollup_watermark SET upto = watermark;
  END IF;
END $$;

-- The exact coarse levels at any snapshot (see the invariant above): what GET /v1/stats and the business
-- dashboard read. Each names (tenant, type, bucket) like the tables; a query's conditions on them reach the
-- arms, so one tenant's range reads that range of the coarse table, the few minutes past the watermark and the
-- stale buckets.
CREATE VIEW rollup_5m_live AS
SELECT tenant, type, bucket, sum(event_count)::bigint AS event_count, sum(value_count)::bigint AS value_count,
       sum(value_sum) AS value_sum, min(value_min) AS value_min, max(value_max) AS value_max
FROM (
  SELECT c.tenant, c.type, c.bucket, c.event_count, c.value_count, c.value_sum, c.value_min, c.value_max
  FROM rollup_5m c
  WHERE NOT EXISTS (SELECT 1 FROM rollup_stale s WHERE s.tenant = c.tenant AND s.bucket >= c.bucket AND s.bucket < c.bucket + interval '5 minutes')
  UNION ALL
  SELECT m.tenant, m.type, date_bin('5 minutes', m.bucket, 'epoch'), m.event_count, m.value_count, m.value_sum, m.value_min, m.value_max
  FROM rollup_minute m
  WHERE m.bucket >= (SELECT upto FROM rollup_watermark)
  UNION ALL
  SELECT m.tenant, m.type, s.b, m.event_count, m.value_count, m.value_sum, m.value_min, m.value_max
  FROM (SELECT DISTINCT tenant, date_bin('5 minutes', bucket, 'epoch') AS b FROM rollup_stale) s
  JOIN rollup_minute m ON m.tenant = s.tenant AND m.bucket >= s.b AND m.bucket < s.b + interval '5 minutes'
  WHERE m.bucket < (SELECT upto FROM rollup_watermark)
) u
GROUP BY tenant, type, bucket;

CREATE VIEW rollup_hour_live AS
SELECT tenant, type, bucket, sum(event_count)::bigint AS event_count, sum(value_count)::bigint AS value_count,
       sum(value_sum) AS value_sum, min(value_min) AS value_min, max(value_max) AS value_max
FROM (
  SELECT c.tenant, c.type, c.bucket, c.event_count, c.value_count, c.value_sum, c.value_min, c.value_max
  FROM rollup_hour c
  WHERE NOT EXISTS (SELECT 1 FROM rollup_stale s WHERE s.tenant = c.tenant AND s.bucket >= c.bucket AND s.bucket < c.bucket + interval '1 hour')
  UNION ALL
  SELECT m.tenant, m.type, date_bin('1 hour', m.bucket, 'epoch'), m.event_count, m.value_count, m.value_sum, m.value_min, m.value_max
  FROM rollup_minute m
  WHERE m.bucket >= (SELECT upto FROM rollup_watermark)
  UNION ALL
  SELECT m.tenant, m.type, s.b, m.event_count, m.value_count, m.value_sum, m.value_min, m.value_max
  FROM (SELECT DISTINCT tenant, date_bin('1 hour', bucket, 'epoch') AS b FROM rollup_stale) s
  JOIN rollup_minute m ON m.tenant = s.tenant AND m.bucket >= s.b AND m.bucket < s.b + interval '1 hour'
  WHERE m.bucket < (SELECT upto FROM rollup_watermark)
) u
GROUP BY tenant, type, bucket;

CREATE VIEW rollup_day_live AS
SELECT tenant, type, bucket, sum(event_count)::bigint AS event_count, sum(value_count)::bigint AS value_count,
       sum(value_sum) AS value_sum, min(value_min) AS value_min, max(value_max) AS value_max
FROM (
  SELECT c.tenant, c.type, c.bucket, c.event_count, c.value_count, c.value_sum, c.value_min, c.value_max
  FROM rollup_day c
  WHERE NOT EXISTS (SELECT 1 FROM rollup_stale s WHERE s.tenant = c.tenant AND s.bucket >= c.bucket AND s.bucket < c.bucket + interval '1 day')
  UNION ALL
  SELECT m.tenant, m.type, date_bin('1 day', m.bucket, 'epoch'), m.event_count, m.value_count, m.value_sum, m.value_min, m.value_max
  FROM rollup_minute m
  WHERE m.bucket >= (SELECT upto FROM rollup_watermark)
  UNION ALL
  SELECT m.tenant, m.type, s.b, m.event_count, m.value_count, m.value_sum, m.value_min, m.value_max
  FROM (SELECT DISTINCT tenant, date_bin('1 day', bucket, 'epoch') AS b FROM rollup_stale) s
  JOIN rollup_minute m ON m.tenant = s.tenant AND m.bucket >= s.b AND m.bucket < s.b + interval '1 day'
  WHERE m.bucket < (SELECT upto FROM rollup_watermark)
) u
GROUP BY tenant, type, bucket;

-- Drops expired days as before, and their 5-minute rollups and stale minutes too, under the roll-up lock.
CREATE OR REPLACE FUNCTION floodgate_drop_partitions(before_day date) RETURNS SETOF text
LANGUAGE plpgsql AS $$
DECLARE
  part record;
  dropped boolean := false;
  cutoff timestamptz := before_day::timestamp AT TIME ZONE 'UTC';
BEGIN
  PERFORM pg_advisory_xact_lock(floodgate_rollup_key());
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
  IF dropped THEN
    DELETE FROM rollup_stale WHERE bucket < cutoff;
    DELETE FROM rollup_5m WHERE bucket < cutoff;
    DELETE FROM rollup_hour WHERE bucket < cutoff;
    DELETE FROM rollup_day WHERE bucket < cutoff;
  END IF;
END $$;

-- Recomputes every level of the UTC days [from_day, to_day] from events, as before, under the roll-up lock.
CREATE OR REPLACE FUNCTION floodgate_rebuild_rollups(from_day date, to_day date) RETURNS bigint
LANGUAGE plpgsql AS $$
DECLARE
  lo timestamptz := from_day::timestamp AT TIME ZONE 'UTC';
  hi timestamptz := (to_day + 1)::timestamp AT TIME ZONE 'UTC';
  n bigint;
BEGIN
  PERFORM pg_advisory_xact_lock(floodgate_rollup_key());
  LOCK TABLE events IN SHARE MODE;
  DELETE FROM rollup_minute WHERE bucket >= lo AND bucket < hi;
  INSERT INTO rollup_minute
  SELECT tenant, type, date_bin('1 minute', occurred_at, 'epoch'), count(*), count(value), coalesce(sum(value), 0), min(value), max(value)
  FROM events
  WHERE occurred_at >= lo AND occurred_at < hi
  GROUP BY 1, 2, 3;
  GET DIAGNOSTICS n = ROW_COUNT;
  PERFORM floodgate_reroll(lo, hi);
  RETURN n;
END $$;

-- The watermark starts at the current minute; the coarse rows of every existing day are recomputed below it
-- (the hour and day rows of migration 006 also held the minutes after it).
DO $$
DECLARE
  first_day date;
  last_day date;
BEGIN
  PERFORM pg_advisory_xact_lock(floodgate_rollup_key());
  INSERT INTO rollup_watermark (upto) VALUES (date_trunc('minute', now()));
  SELECT min(to_date(right(c.relname, 8), 'YYYYMMDD')), max(to_date(right(c.relname, 8), 'YYYYMMDD'))
  INTO first_day, last_day
  FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
  WHERE i.inhparent = 'rollup_minute'::regclass AND c.relname ~ '^rollup_minute_p[0-9]{8}$';
  IF first_day IS NOT NULL THEN
    PERFORM floodgate_reroll(first_day::timestamp AT TIME ZONE 'UTC', (last_day + 1)::timestamp AT TIME ZONE 'UTC');
  END IF;
END $$;
