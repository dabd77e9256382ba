-- The Postgres-only queue (QUEUE=postgres): one row per accepted request, holding the same encoded entry the
-- API would XADD to the Redis stream. Workers claim rows with FOR UPDATE SKIP LOCKED, write their events with
-- the batch merge and delete them in the same transaction. Logged here; a worker started with
-- QUEUE_POSTGRES_TABLE=unlogged switches it (ALTER TABLE ... SET UNLOGGED) and back.
CREATE TABLE event_queue (
  id          bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  events      integer     NOT NULL CHECK (events > 0),
  -- Failed writes of this row on its own (not counting database outages); past MAX_DELIVERY_ATTEMPTS it moves
  -- to event_queue_dead_letter.
  attempts    integer     NOT NULL DEFAULT 0,
  enqueued_at timestamptz NOT NULL DEFAULT now(),
  entry       text        NOT NULL
);

-- Rows no write could store, kept for an operator (the Postgres counterpart of the dead-letter stream).
CREATE TABLE event_queue_dead_letter (
  id        bigint      PRIMARY KEY,
  entry     text        NOT NULL,
  reason    text        NOT NULL,
  failed_at timestamptz NOT NULL DEFAULT now()
);
