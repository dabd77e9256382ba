-- What a key may do (scopes), the highest class it may send (max_priority), when it stops working
-- (expires_at), and the secret it had before its last rotation, valid until previous_key_expires_at.
ALTER TABLE api_keys
  ADD COLUMN scopes                  text[]      NOT NULL DEFAULT '{ingest}'
    CHECK (cardinality(scopes) > 0 AND scopes <@ '{ingest,read,admin}'::text[]),
  ADD COLUMN max_priority            text        NOT NULL DEFAULT 'critical'
    CHECK (max_priority IN ('critical', 'normal', 'low')),
  ADD COLUMN expires_at              timestamptz,
  ADD COLUMN previous_key_hash       bytea       UNIQUE,
  ADD COLUMN previous_key_expires_at timestamptz,
  ADD CONSTRAINT api_keys_previous_key_complete
    CHECK ((previous_key_hash IS NULL) = (previous_key_expires_at IS NULL)),
  -- A key's default class is one it may send: otherwise a request without X-Priority would be refused.
  ADD CONSTRAINT api_keys_default_within_ceiling
    CHECK (array_position('{low,normal,critical}'::text[], default_priority)
           <= array_position('{low,normal,critical}'::text[], max_priority));

-- Keys made before scopes existed could ingest, and admin keys also read the admin endpoints.
UPDATE api_keys SET scopes = '{ingest,admin}' WHERE is_admin;
ALTER TABLE api_keys DROP COLUMN is_admin;
