-- API keys: only a SHA-256 of the key is stored; the key itself is shown once, at creation.
CREATE TABLE api_keys (
  id               bigserial PRIMARY KEY,
  tenant           text        NOT NULL CHECK (tenant ~ '^[A-Za-z0-9_.-]{1,64}$'),
  key_hash         bytea       NOT NULL UNIQUE,
  key_prefix       text        NOT NULL,
  default_priority text        NOT NULL DEFAULT 'normal' CHECK (default_priority IN ('critical', 'normal', 'low')),
  is_admin         boolean     NOT NULL DEFAULT false,
  created_at       timestamptz NOT NULL DEFAULT now(),
  revoked_at       timestamptz
);

-- Events, one partition per UTC day of occurred_at. The primary key includes the partition key (Postgres
-- requires it), and makes a redelivered stream entry (same id, same occurred_at) a no-op.
CREATE TABLE events (
  id              uuid             NOT NULL,
  tenant          text             NOT NULL,
  type            text             NOT NULL,
  occurred_at     timestamptz      NOT NULL,
  received_at     timestamptz      NOT NULL,
  source          text,
  idempotency_key text,
  priority        text             NOT NULL,
  value           double precision,
  data            jsonb,
  PRIMARY KEY (occurred_at, id)
) PARTITION BY RANGE (occurred_at);

CREATE INDEX events_tenant_occurred_at ON events (tenant, occurred_at);

-- Idempotency keys live outside the partitioned table so that uniqueness of (tenant, key) holds across
-- partitions: a partitioned table's unique index must contain the partition key, which would let the same key
-- with two different timestamps land twice. Rows older than the dedup window are pruned by the worker.
CREATE TABLE idempotency_keys (
  tenant     text        NOT NULL,
  key        text        NOT NULL,
  event_id   uuid        NOT NULL,
  created_at timestamptz NOT NULL,
  PRIMARY KEY (tenant, key)
);
CREATE INDEX idempotency_keys_created_at ON idempotency_keys (created_at);

-- Creates the daily partitions covering [from_day, to_day]; returns the names it created.
CREATE FUNCTION floodgate_create_partitions(from_day date, to_day date) RETURNS SETOF text
LANGUAGE plpgsql AS $$
DECLARE
  day date := from_day;
  name text;
BEGIN
  WHILE day <= to_day LOOP
    name := 'events_p' || to_char(day, 'YYYYMMDD');
    IF to_regclass(quote_ident(name)) IS NULL THEN
      EXECUTE format(
        'CREATE TABLE %I PARTITION OF events FOR VALUES FROM (%L) TO (%L)',
        name, (day::timestamp AT TIME ZONE 'UTC'), ((day + 1)::timestamp AT TIME ZONE 'UTC'));
      RETURN NEXT name;
    END IF;
    day := day + 1;
  END LOOP;
END $$;

-- Drops the daily partitions that end on or before before_day; returns the names it dropped.
CREATE FUNCTION floodgate_drop_partitions(before_day date) RETURNS SETOF text
LANGUAGE plpgsql AS $$
DECLARE
  part record;
BEGIN
  FOR part IN
    SELECT c.relname
    FROM pg_inherits i
    JOIN pg_class c ON c.oid = i.inhrelid
    WHERE i.inhparent = 'events'::regclass
      AND c.relname ~ '^events_p[0-9]{8}$'
      AND to_date(substring(c.relname from 9), 'YYYYMMDD') < before_day
  LOOP
    EXECUTE format('DROP TABLE %I', part.relname);
    RETURN NEXT part.relname;
  END LOOP;
END $$;
