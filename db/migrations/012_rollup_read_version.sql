-- A version of the rolled-up past, for readers that keep the part of an answer below the roll-up watermark.
--
-- Below the watermark a stats answer is made of the coarse rows of buckets that are not stale (see
-- 010_rollup_watermark.sql). Those rows change only when a roll-up moves the watermark (rollup_watermark.upto
-- changes), when a roll-up recomputes stale buckets, when days are rebuilt or dropped; a late event adds to a
-- minute below the watermark, which its write records in rollup_stale in the same transaction. A reader that
-- keys what it kept on (this version, the watermark, the stale minutes of its range) therefore sees every one of
-- those changes in the snapshot of its next read: each bumps the version or changes the watermark or the stale
-- minutes, in the transaction that makes it.
--
-- Why a version besides the stale minutes: a roll-up that recomputes stale buckets without moving the watermark
-- (two passes within one minute) turns the stale minutes back into what they were before the late event, while
-- the coarse rows now hold it. The version tells the two states apart.
--
-- The triggers are statement-level and fire on the roll-up's, the rebuild's and the partition drop's statements,
-- which hold the roll-up lock in exclusive mode: no writer ever waits on the version row. The batch write's
-- statements (the minute upsert, the stale insert) fire none of them.
CREATE TABLE rollup_read_version (
  only_row boolean PRIMARY KEY DEFAULT true CHECK (only_row),
  version  bigint  NOT NULL
);
INSERT INTO rollup_read_version (version) VALUES (1);

-- With the argument 'always' (deletions from the coarse and minute tables, which only a rebuild, a re-roll or a
-- partition drop makes, possibly of millions of rows: no transition table to fill) and on TRUNCATE, every
-- statement bumps the version. Otherwise `changed` is the statement's transition table, and a statement that
-- changed no row keeps the version: the roll-up empties rollup_stale at every pass, usually of nothing, and
-- upserts coarse rows only when minutes crossed the watermark.
CREATE FUNCTION floodgate_bump_read_version() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
  IF TG_OP = 'TRUNCATE' OR TG_ARGV[0] = 'always' THEN
    UPDATE rollup_read_version SET version = version + 1;
  ELSIF EXISTS (SELECT 1 FROM changed) THEN
    UPDATE rollup_read_version SET version = version + 1;
  END IF;
  RETURN NULL;
END $$;

DO $$
DECLARE
  t text;
BEGIN
  FOREACH t IN ARRAY ARRAY['rollup_5m', 'rollup_hour', 'rollup_day'] LOOP
    EXECUTE format('CREATE TRIGGER %I AFTER INSERT ON %I REFERENCING NEW TABLE AS changed FOR EACH STATEMENT EXECUTE FUNCTION floodgate_bump_read_version()', t || '_read_version_ins', t);
    EXECUTE format('CREATE TRIGGER %I AFTER UPDATE ON %I REFERENCING NEW TABLE AS changed FOR EACH STATEMENT EXECUTE FUNCTION floodgate_bump_read_version()', t || '_read_version_upd', t);
  END LOOP;
  FOREACH t IN ARRAY ARRAY['rollup_5m', 'rollup_hour', 'rollup_day', 'rollup_minute'] LOOP
    EXECUTE format('CREATE TRIGGER %I AFTER DELETE ON %I FOR EACH STATEMENT EXECUTE FUNCTION floodgate_bump_read_version(%L)', t || '_read_version_del', t, 'always');
  END LOOP;
  EXECUTE 'CREATE TRIGGER rollup_stale_read_version_del AFTER DELETE ON rollup_stale REFERENCING OLD TABLE AS changed FOR EACH STATEMENT EXECUTE FUNCTION floodgate_bump_read_version()';
  FOREACH t IN ARRAY ARRAY['rollup_5m', 'rollup_hour', 'rollup_day', 'rollup_minute', 'rollup_stale'] LOOP
    EXECUTE format('CREATE TRIGGER %I AFTER TRUNCATE ON %I FOR EACH STATEMENT EXECUTE FUNCTION floodgate_bump_read_version()', t || '_read_version_trunc', t);
  END LOOP;
END $$;
