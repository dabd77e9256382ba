-- Per-tenant admission policy: quotas on accepted events (per second, per UTC day; NULL: none) and the
-- tenant's weight in fair shedding (its share of the admitted rate relative to other tenants). A tenant
-- without a row has no quota and weight 1. Set with `floodgate tenants set-quota`.
CREATE TABLE tenant_quotas (
  tenant            text             PRIMARY KEY CHECK (tenant ~ '^[A-Za-z0-9_.-]{1,64}$'),
  events_per_second double precision CHECK (events_per_second > 0),
  events_per_day    bigint           CHECK (events_per_day > 0),
  weight            double precision NOT NULL DEFAULT 1 CHECK (weight > 0),
  updated_at        timestamptz      NOT NULL DEFAULT now()
);
