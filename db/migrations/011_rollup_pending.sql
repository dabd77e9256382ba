-- Minute rollups kept off the batch write's path: each write appends what it adds to the minute rollups to
-- rollup_pending (one row per tenant, its minute deltas as arrays) instead of upserting rollup_minute, and the
-- maintenance loop folds the pending rows into rollup_minute every ROLLUP_FOLD_INTERVAL_MS (and before every
-- roll-up, partition drop and rebuild).
--
-- Why: with many tenants and types, a 5,000-event batch touched ~1,600 minute rows of rollup_minute, each an
-- index probe, a row lock and an update in the write's transaction. Appending ~20 rows costs a fraction of it,
-- and a fold adds up every batch of its interval, so each minute row is updated once per fold, not once per batch.
--
-- Exactness: the events and their pending deltas commit together; a fold deletes the pending rows it adds to
-- rollup_minute in one transaction, so at every snapshot rollup_minute + rollup_pending equals the aggregate of
-- `events`. The view rollup_minute_live adds them up (same columns as rollup_minute); the coarse live views add
-- the pending deltas as well. Pending deltas below the watermark were written after the last roll-up (which
-- folds first), with the watermark they read, so their minutes are in rollup_stale: the coarse views may add
-- every pending delta whatever its minute.
--
-- Locks: a fold takes floodgate_fold_key() (exclusive, so folds never overlap) and then rollup_minute rows in
-- key order; writes no longer touch rollup_minute. A roll-up, a partition drop and a rebuild take the roll-up
-- lock, then fold (the fold lock), then proceed as before: the order is roll-up lock, fold lock, rollup_pending,
-- rollup_minute, rollup_stale, coarse tables.
CREATE FUNCTION floodgate_fold_key() RETURNS bigint LANGUAGE sql IMMUTABLE AS 'SELECT 7261011::bigint';

-- lo and hi: the first and last minute of the row, so a read of a time range skips the rows outside it. Rows are
-- stored uncompressed in the heap up to a page (toast_tuple_target): they are written once and soon deleted.
CREATE TABLE rollup_pending (
  tenant       text               NOT NULL,
  lo           timestamptz        NOT NULL,
  hi           timestamptz        NOT NULL,
  buckets      timestamptz[]      NOT NULL,
  types        text[]             NOT NULL,
  event_counts bigint[]           NOT NULL,
  value_counts bigint[]           NOT NULL,
  value_sums   double precision[] NOT NULL,
  value_mins   double precision[] NOT NULL,
  value_maxs   double precision[] NOT NULL
) WITH (toast_tuple_target = 8160);

CREATE INDEX rollup_pending_tenant ON rollup_pending (tenant);

-- Folds every committed pending row into rollup_minute (in key order) and deletes it, in one statement; returns
-- how many pending rows it folded. Waits for a fold running elsewhere; the one that comes second finds only what
-- was committed since.
CREATE FUNCTION floodgate_fold_rollups() RETURNS integer
LANGUAGE plpgsql AS $$
DECLARE
  n integer;
BEGIN
  PERFORM pg_advisory_xact_lock(floodgate_fold_key());
  WITH gone AS (
    DELETE FROM rollup_pending
    RETURNING tenant, buckets, types, event_counts, value_counts, value_sums, value_mins, value_maxs
  ),
  delta AS (
    SELECT g.tenant, d.bucket, d.type, sum(d.event_count)::bigint AS event_count, sum(d.value_count)::bigint AS value_count,
           sum(d.value_sum) AS value_sum, min(d.value_min) AS value_min, max(d.value_max) AS value_max
    FROM gone g
    CROSS JOIN LATERAL unnest(g.buckets, g.types, g.event_counts, g.value_counts, g.value_sums, g.value_mins, g.value_maxs)
      AS d(bucket, type, event_count, value_count, value_sum, value_min, value_max)
    GROUP BY 1, 2, 3
  ),
  upsert AS (
    INSERT INTO rollup_minute AS r (tenant, bucket, type, event_count, value_count, value_sum, value_min, value_max)
    SELECT tenant, bucket, type, event_count, value_count, value_sum, value_min, value_max FROM delta ORDER BY 1, 2, 3
    ON CONFLICT (tenant, bucket, type) DO UPDATE SET
      event_count = r.event_count + EXCLUDED.event_count, value_count = r.value_count + EXCLUDED.value_count,
      value_sum = r.value_sum + EXCLUDED.value_sum, value_min = LEAST(r.value_min, EXCLUDED.value_min),
      value_max = GREATEST(r.value_max, EXCLUDED.value_max)
  )
  SELECT count(*) INTO n FROM gone;
  RETURN n;
END $$;

-- rollup_minute as readers must take it: the minute rows plus the pending deltas, equal to the aggregate of
-- `events` at every snapshot. A query's conditions on tenant and bucket reach both arms.
CREATE VIEW rollup_minute_live AS
SELECT tenant, type, bucket, sum(event_count)::bigint AS event_count, sum(value_count)::bigint AS value_count,
       sum(value_sum) AS value_sum, min(value_min) AS value_min, max(value_max) AS value_max
FROM (
  SELECT tenant, type, bucket, event_count, value_count, value_sum, value_min, value_max FROM rollup_minute
  UNION ALL
  SELECT p.tenant, d.type, d.bucket, d.event_count, d.value_count, d.value_sum, d.value_min, d.value_max
  FROM rollup_pending p
  CROSS JOIN LATERAL unnest(p.buckets, p.types, p.event_counts, p.value_counts, p.value_sums, p.value_mins, p.value_maxs)
    AS d(bucket, type, event_count, value_count, value_sum, value_min, value_max)
) u
GROUP BY tenant, type, bucket;

-- The coarse live views of migration 010, plus every pending delta (see above): one text, written for each level.
DO $$
DECLARE
  level record;
BEGIN
  FOR level IN SELECT * FROM (VALUES ('rollup_5m', '5 minutes'), ('rollup_hour', '1 hour'), ('rollup_day', '1 day')) AS l(stored, width) LOOP
    EXECUTE format($view$
CREATE OR REPLACE VIEW %1$I AS
SELECT tenant, type, bucket, sum(event_count)::bigint AS event_count, sum(value_count)::bigint AS value_count,
       sum(value_sum) AS value_sum, min(value_min) AS value_min, max(value_max) AS value_max
FROM (
  SELECT c.tenant, c.type, c.bucket, c.event_count, c.value_count, c.value_sum, c.value_min, c.value_max
  FROM %2$I c
  WHERE NOT EXISTS (SELECT 1 FROM rollup_stale s WHERE s.tenant = c.tenant AND s.bucket >= c.bucket AND s.bucket < c.bucket + %3$L::interval)
  UNION ALL
  SELECT m.tenant, m.type, date_bin(%3$L, m.bucket, 'epoch'), m.event_count, m.value_count, m.value_sum, m.value_min, m.value_max
  FROM rollup_minute m
  WHERE m.bucket >= (SELECT upto FROM rollup_watermark)
  UNION ALL
  SELECT m.tenant, m.type, s.b, m.event_count, m.value_count, m.value_sum, m.value_min, m.value_max
  FROM (SELECT DISTINCT tenant, date_bin(%3$L, bucket, 'epoch') AS b FROM rollup_stale) s
  JOIN rollup_minute m ON m.tenant = s.tenant AND m.bucket >= s.b AND m.bucket < s.b + %3$L::interval
  WHERE m.bucket < (SELECT upto FROM rollup_watermark)
  UNION ALL
  SELECT p.tenant, d.type, date_bin(%3$L, d.bucket, 'epoch'), d.event_count, d.value_count, d.value_sum, d.value_min, d.value_max
  FROM rollup_pending p
  CROSS JOIN LATERAL unnest(p.buckets, p.types, p.event_counts, p.value_counts, p.value_sums, p.value_mins, p.value_maxs)
    AS d(bucket, type, event_count, value_count, value_sum, value_min, value_max)
) u
GROUP BY tenant, type, bucket;
$view$, level.stored || '_live', level.stored, level.width);
  END LOOP;
END $$;

-- The roll-up of migration 010, folding first.
CREATE OR REPLACE FUNCTION floodgate_roll_up(target timestamptz, OUT stale_minutes integer, OUT watermark timestamptz)
LANGUAGE plpgsql AS $$
DECLARE
  mark timestamptz;
  tenants text[];
  minutes timestamptz[];
BEGIN
  PERFORM pg_advisory_xact_lock(floodgate_rollup_key());
  -- No write is in flight (they hold the lock above in shared mode): after the fold, rollup_minute holds every
  -- committed event, and nothing can be added until this commits.
  PERFORM floodgate_fold_rollups();
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

-- The partition drop of migration 010, folding first.
CREATE OR REPLACE FUNCTION floodgate_drop_partitions(before_day date) RETURNS SETOF text
LANGUAGE plpgsql AS $$
DECLARE
  part record;
  dropped boolean := false;
  cutoff timestamptz := before_day::timestamp AT TIME ZONE 'UTC';
BEGIN
  PERFORM pg_advisory_xact_lock(floodgate_rollup_key());
  -- Pending deltas of the days about to go are folded into their partitions first, and go with them.
  PERFORM floodgate_fold_rollups();
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

-- The rebuild of migration 010, folding first (under its locks).
CREATE OR REPLACE FUNCTION floodgate_rebuild_rollups(from_day date, to_day date) RETURNS bigint
LANGUAGE plpgsql AS $$
DECLARE
  lo timestamptz := from_day::timestamp AT TIME ZONE 'UTC';
  hi timestamptz := (to_day + 1)::timestamp AT TIME ZONE 'UTC';
  n bigint;
BEGIN
  PERFORM pg_advisory_xact_lock(floodgate_rollup_key());
  LOCK TABLE events IN SHARE MODE;
  -- Deltas of the days rebuilt would otherwise be added a second time by the next fold.
  PERFORM floodgate_fold_rollups();
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
