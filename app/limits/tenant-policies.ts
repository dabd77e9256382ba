import type { Pool } from '../../lib/db.js';
import type { Logger } from '../../lib/logger.js';
import { listTenantQuotas, type TenantPolicy } from '../../lib/tenant-quotas.js';

/** The tenants' quotas and weights as this process knows them: reloaded every `refreshMs`, read per request. */
export interface TenantPolicies {
  /** The tenant's policy, or undefined when it has none (no quota, weight 1). */
  get(tenant: string): TenantPolicy | undefined;
  /** The tenant's weight in fair shedding. */
  readonly weightOf: (tenant: string) => number;
  /** Loads once now (a failure is logged; the last known policies stay), then every `refreshMs`. */
  start(): Promise<void>;
  close(): Promise<void>;
}

/** Policies from the `tenant_quotas` table, the whole table reloaded periodically: tenants with a policy are few. */
export function createTenantPolicies(deps: { pool: Pool; refreshMs: number; logger: Logger }): TenantPolicies {
  const log = deps.logger.child({ scope: 'tenant-policies' });
  let policies = new Map<string, TenantPolicy>();
  let timer: NodeJS.Timeout | undefined;
  let loading: Promise<void> | undefined;
  let closed = false;

  async function load(): Promise<void> {
    try {
      const rows = await listTenantQuotas(deps.pool);
      policies = new Map(rows.map((p) => [p.tenant, p]));
    } catch (err) {
      log.error({ err }, 'cannot load tenant quotas; keeping the last known ones');
    }
  }

  return {
    get: (tenant) => policies.get(tenant),
    weightOf: (tenant) => policies.get(tenant)?.weight ?? 1,
    async start() {
      await load();
      if (closed) return;
      timer = setInterval(() => {
        loading ??= load().finally(() => (loading = undefined));
      }, deps.refreshMs);
      timer.unref();
    },
    async close() {
      closed = true;
      clearInterval(timer);
      await loading;
    },
  };
}
