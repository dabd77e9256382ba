import type { Pool } from './db.js';

/** A tenant's admission policy: quotas on accepted events (null: none) and its weight in fair shedding. */
export interface TenantPolicy {
  readonly tenant: string;
  readonly eventsPerSecond: number | null;
  readonly eventsPerDay: number | null;
  readonly weight: number;
}

/** What `setTenantQuota` changes: an absent field keeps its value, null removes that quota. */
export interface TenantPolicyChange {
  readonly eventsPerSecond?: number | null;
  readonly eventsPerDay?: number | null;
  readonly weight?: number;
}

interface PolicyRow {
  tenant: string;
  events_per_second: number | null;
  events_per_day: string | null;
  weight: number;
}

const fromRow = (r: PolicyRow): TenantPolicy => ({
  tenant: r.tenant,
  eventsPerSecond: r.events_per_second,
  eventsPerDay: r.events_per_day === null ? null : Number(r.events_per_day),
  weight: r.weight,
});

/** Creates or updates a tenant's policy; returns it as stored. */
export async function setTenantQuota(pool: Pool, tenant: string, change: TenantPolicyChange): Promise<TenantPolicy> {
  // $n::boolean says whether a field was given, so that an absent one keeps its value and null clears it.
  const { rows } = await pool.query<PolicyRow>(
    `INSERT INTO tenant_quotas AS q (tenant, events_per_second, events_per_day, weight)
     VALUES ($1, $3::double precision, $5::bigint, coalesce($7::double precision, 1))
     ON CONFLICT (tenant) DO UPDATE SET
       events_per_second = CASE WHEN $2::boolean THEN $3::double precision ELSE q.events_per_second END,
       events_per_day    = CASE WHEN $4::boolean THEN $5::bigint ELSE q.events_per_day END,
       weight            = CASE WHEN $6::boolean THEN $7::double precision ELSE q.weight END,
       updated_at        = now()
     RETURNING tenant, events_per_second, events_per_day, weight`,
    [
      tenant,
      change.eventsPerSecond !== undefined,
      change.eventsPerSecond ?? null,
      change.eventsPerDay !== undefined,
      change.eventsPerDay ?? null,
      change.weight !== undefined,
      change.weight ?? null,
    ],
  );
  return fromRow(rows[0]!);
}

/** Removes a tenant's policy (no quota, weight 1); returns whether it had one. */
export async function clearTenantQuota(pool: Pool, tenant: string): Promise<boolean> {
  const result = await pool.query('DELETE FROM tenant_quotas WHERE tenant = $1', [tenant]);
  return (result.rowCount ?? 0) > 0;
}

/** Every tenant with a policy, by name. */
export async function listTenantQuotas(pool: Pool): Promise<TenantPolicy[]> {
  const { rows } = await pool.query<PolicyRow>(
    'SELECT tenant, events_per_second, events_per_day, weight FROM tenant_quotas ORDER BY tenant',
  );
  return rows.map(fromRow);
}
