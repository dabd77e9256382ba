-- Two starters (or a starter and a worker's maintenance pass) may create the same partition at once: the
-- check-then-create above races, so a partition that appeared in between is now simply skipped.
CREATE OR REPLACE FUNCTION floodgate_create_partitions(from_day date, to_day date) RETURNS SETOF text
LANGUAGE plpgsql AS $$
DECLARE
  day date := from_day;
  name text;
BEGIN
  WHILE day <= to_day LOOP
    name := 'events_p' || to_char(day, 'YYYYMMDD');
    IF to_regclass(quote_ident(name)) IS NULL THEN
      BEGIN
        EXECUTE format(
          'CREATE TABLE %I PARTITION OF events FOR VALUES FROM (%L) TO (%L)',
          name, (day::timestamp AT TIME ZONE 'UTC'), ((day + 1)::timestamp AT TIME ZONE 'UTC'));
        RETURN NEXT name;
      EXCEPTION WHEN duplicate_table OR unique_violation THEN
        NULL;
      END;
    END IF;
    day := day + 1;
  END LOOP;
END $$;
