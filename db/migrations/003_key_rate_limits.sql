-- Per-key rate limits (token bucket, in requests per second, and the bucket size). NULL: the key follows the
-- RATE_LIMIT_PER_SECOND / RATE_LIMIT_BURST defaults; a rate of 0 means the key is never limited.
ALTER TABLE api_keys
  ADD COLUMN rate_limit_per_second double precision CHECK (rate_limit_per_second >= 0),
  ADD COLUMN rate_limit_burst      integer          CHECK (rate_limit_burst >= 1);
