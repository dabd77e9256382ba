import { parseArgs } from 'node:util';
import type { Config } from '../lib/config.js';
import type { Pool } from '../lib/db.js';
import { clearTenantQuota, listTenantQuotas, setTenantQuota, type TenantPolicy, type TenantPolicyChange } from '../lib/tenant-quotas.js';
import { withCommandPool } from './command-pool.js';
import { UsageError } from './usage.js';

const TENANT = /^[A-Za-z0-9_.-]{1,64}$/;
const MAX_RATE = 10_000_000;
const MAX_PER_DAY = 1e15;

/** A parsed `tenants` invocation. */
export type TenantsAction =
  | { readonly action: 'set-quota'; readonly tenant: string; readonly change: TenantPolicyChange }
  | { readonly action: 'clear-quota'; readonly tenant: string }
  | { readonly action: 'list' };

function asUsage<T>(parse: () => T): T {
  try {
    return parse();
  } catch (err) {
    // node:util reports unknown options and stray arguments as TypeErrors; to the user they are usage mistakes.
    throw new UsageError((err as Error).message);
  }
}

/** `none` clears a quota; otherwise a number within bounds. */
function quota(option: string, raw: string | undefined, shape: RegExp, max: number): number | null | undefined {
  if (raw === undefined) return undefined;
  if (raw === 'none') return null;
  const value = Number(raw);
  if (!shape.test(raw) || value <= 0 || value > max)
    throw new UsageError(`${option} must be a number above 0 and at most ${max}, or "none", got "${raw}"`);
  return value;
}

function oneTenant(command: string, positionals: string[]): string {
  if (positionals.length !== 1 || !TENANT.test(positionals[0]!))
    throw new UsageError(`tenants ${command} needs one TENANT (1-64 characters of A-Z a-z 0-9 _ . -)`);
  return positionals[0]!;
}

/** Parses `tenants set-quota|clear-quota|list …`; throws UsageError (exit 2) before anything touches the database. */
export function parseTenantsArgs(args: readonly string[]): TenantsAction {
  const [action, ...rest] = args;
  if (action === 'set-quota') {
    const { values, positionals } = asUsage(() =>
      parseArgs({
        args: rest,
        allowPositionals: true,
        strict: true,
        options: { 'events-per-second': { type: 'string' }, 'events-per-day': { type: 'string' }, weight: { type: 'string' } },
      }),
    );
    const tenant = oneTenant('set-quota', positionals);
    const change: TenantPolicyChange = {
      eventsPerSecond: quota('--events-per-second', values['events-per-second'], /^\d+(\.\d+)?$/, MAX_RATE),
      eventsPerDay: quota('--events-per-day', values['events-per-day'], /^\d+$/, MAX_PER_DAY),
    };
    const weight = quota('--weight', values.weight, /^\d+(\.\d+)?$/, 1_000_000);
    if (weight === null) throw new UsageError('--weight cannot be "none": use 1 for the default weight');
    const given = { ...change, ...(weight === undefined ? {} : { weight }) };
    if (Object.values(given).every((v) => v === undefined))
      throw new UsageError('tenants set-quota needs --events-per-second, --events-per-day or --weight');
    return { action, tenant, change: Object.fromEntries(Object.entries(given).filter(([, v]) => v !== undefined)) };
  }
  if (action === 'clear-quota') {
    const { positionals } = asUsage(() => parseArgs({ args: rest, allowPositionals: true, strict: true }));
    return { action, tenant: oneTenant('clear-quota', positionals) };
  }
  if (action === 'list') {
    asUsage(() => parseArgs({ args: rest, strict: true }));
    return { action };
  }
  throw new UsageError(
    action ? `unknown tenants action "${action}": use set-quota, clear-quota or list` : 'tenants needs set-quota, clear-quota or list',
  );
}

/** `100/s`, `none`: one word per cell, so `tenants list` splits on spaces. */
function policyRow(p: TenantPolicy): string[] {
  return [
    p.tenant,
    p.eventsPerSecond === null ? 'none' : `${p.eventsPerSecond}/s`,
    p.eventsPerDay === null ? 'none' : `${p.eventsPerDay}/day`,
    String(p.weight),
  ];
}

function table(header: string[], rows: string[][]): string {
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i]!.length)));
  const line = (cells: string[]) =>
    cells
      .map((c, i) => c.padEnd(widths[i]!))
      .join('  ')
      .trimEnd();
  return [line(header), ...rows.map(line)].join('\n');
}

async function runTenants(pool: Pool, parsed: TenantsAction, config: Config): Promise<void> {
  switch (parsed.action) {
    case 'set-quota': {
      const policy = await setTenantQuota(pool, parsed.tenant, parsed.change);
      console.log(table(['tenant', 'events_per_second', 'events_per_day', 'weight'], [policyRow(policy)]));
      // Each API process reloads the policies periodically: the change is not instant.
      console.log(`running API processes apply it within QUOTA_REFRESH_MS (${config.quotaRefreshMs} ms)`);
      return;
    }
    case 'clear-quota': {
      const had = await clearTenantQuota(pool, parsed.tenant);
      console.log(had ? `tenant ${parsed.tenant} has no quota now (weight 1)` : `tenant ${parsed.tenant} had no quota`);
      return;
    }
    case 'list':
      console.log(table(['tenant', 'events_per_second', 'events_per_day', 'weight'], (await listTenantQuotas(pool)).map(policyRow)));
      return;
  }
}

/** `floodgate tenants …`: per-tenant quotas on accepted events and weights in fair shedding. */
export async function tenantsCommand(config: Config, parsed: TenantsAction): Promise<void> {
  await withCommandPool(config, 'floodgate-tenants', 'tenant_quotas', (pool) => runTenants(pool, parsed, config));
}
