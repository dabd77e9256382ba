-- Indexes for reading events back (GET /v1/events, GET /v1/events/{id}), without adding one to the write path.
--
-- Listing pages through one tenant's events by (occurred_at, id): keyset pagination needs both columns in the
-- index, so that a page is one index range scan starting after the cursor, ties on occurred_at included. It
-- replaces (tenant, occurred_at), which it serves as well.
--
-- Looking one event up by id: the primary key's columns swap to (id, occurred_at). Uniqueness is the same
-- (the same pair of columns), but the id now leads, so a lookup is one probe per daily partition instead of a
-- scan of every partition's index. Ids are UUIDv7 (time-ordered), so inserts still land at the right edge.
--
-- On a large existing table both statements rebuild indexes on every partition while holding locks that
-- block writers; the worker's entries wait in the stream meanwhile (see docs/analytics.md).
CREATE INDEX events_tenant_occurred_at_id ON events (tenant, occurred_at, id);
DROP INDEX events_tenant_occurred_at;

ALTER TABLE events DROP CONSTRAINT events_pkey, ADD PRIMARY KEY (id, occurred_at);
