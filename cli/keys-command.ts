import { parseArgs } from 'node:util';
import { createApiKey, listApiKeys, revokeApiKey, type KeyRateLimit } from '../lib/api-keys.js';
import type { Config } from '../lib/config.js';
import { createPool, type Pool } from '../lib/db.js';
import { SQLSTATE } from '../lib/errors.js';
import { isPriority, type Priority } from '../lib/event-schema.js';
import { UsageError } from './usage.js';

const TENANT = /^[A-Za-z0-9_.-]{1,64}$/;

/** A parsed `keys` invocation. */
export type KeysAction =
  | { readonly action: 'create'; readonly tenant: string; readonly priority: Priority; readonly admin: boolean; readonly rateLimit: KeyRateLimit }
  | { readonly action: 'list' }
  | { readonly action: 'revoke'; readonly target: string };

/** Parses `keys create|list|revoke …`; throws UsageError (exit 2) before anything touches the database. */
export function parseKeysArgs(args: readonly string[]): KeysAction {
  const [action, ...rest] = args;
  if (action === 'create') {
    const { values } = asUsage(() =>
      parseArgs({
        args: rest,
        options: {
          tenant: { type: 'string' },
          priority: { type: 'string', default: 'normal' },
          admin: { type: 'boolean', default: false },
          'rate-limit': { type: 'string' },
          burst: { type: 'string' },
        },
        strict: true,
      }),
    );
    const { tenant, priority } = values;
    if (!tenant || !TENANT.test(tenant)) throw new UsageError('keys create needs --tenant NAME (1-64 characters of A-Z a-z 0-9 _ . -)');
    if (!isPriority(priority)) throw new UsageError(`--priority must be critical, normal or low, got "${priority}"`);
    const rateLimit = {
      perSecond: optionalNumber('--rate-limit', values['rate-limit'], /^\d+(\.\d+)?$/, 0, MAX_RATE),
      burst: optionalNumber('--burst', values.burst, /^\d+$/, 1, MAX_RATE),
    };
    return { action, tenant, priority, admin: values.admin, rateLimit };
  }
  if (action === 'list') {
    asUsage(() => parseArgs({ args: rest, strict: true }));
    return { action };
  }
  if (action === 'revoke') {
    const { positionals } = asUsage(() => parseArgs({ args: rest, strict: true, allowPositionals: true }));
    if (positionals.length !== 1) throw new UsageError('keys revoke needs exactly one key id or prefix (see keys list)');
    return { action, target: positionals[0]! };
  }
  throw new UsageError(action ? `unknown keys action "${action}": use create, list or revoke` : 'keys needs create, list or revoke');
}

const MAX_RATE = 10_000_000;

function optionalNumber(option: string, raw: string | undefined, shape: RegExp, min: number, max: number): number | null {
  if (raw === undefined) return null;
  const value = Number(raw);
  if (!shape.test(raw) || value < min || value > max) throw new UsageError(`${option} must be a number from ${min} to ${max}, got "${raw}"`);
  return value;
}

function asUsage<T>(parse: () => T): T {
  try {
    return parse();
  } catch (err) {
    // node:util reports unknown options and stray arguments as TypeErrors; to the user they are usage mistakes.
    throw new UsageError((err as Error).message);
  }
}

/** `floodgate keys …`: the created key is printed once, as the last line of stdout, so `| tail -n 1` captures it. */
export async function keysCommand(config: Config, parsed: KeysAction): Promise<void> {
  const pool = createPool(config.databaseUrl, { max: 1, applicationName: 'floodgate-keys' });
  try {
    await runKeys(pool, parsed);
  } catch (err) {
    if ((err as { code?: string }).code === SQLSTATE.undefinedTable) throw new Error('the api_keys table does not exist yet: run `floodgate migrate` first');
    throw err;
  } finally {
    await pool.end();
  }
}

async function runKeys(pool: Pool, parsed: KeysAction): Promise<void> {
  switch (parsed.action) {
    case 'create': {
      const created = await createApiKey(pool, { tenant: parsed.tenant, defaultPriority: parsed.priority, isAdmin: parsed.admin, rateLimit: parsed.rateLimit });
      const kind = parsed.admin ? 'admin key' : 'key';
      console.log(
        `created ${kind} ${created.id} (${created.prefix}) for tenant ${parsed.tenant}, default priority ${parsed.priority}, rate limit ${rateLimitText(parsed.rateLimit)}.`,
      );
      console.log('It is shown only this once; store it now:');
      console.log(created.key);
      return;
    }
    case 'list': {
      const keys = await listApiKeys(pool);
      const rows = keys.map((k) => [
        String(k.id),
        k.tenant,
        k.prefix,
        k.defaultPriority,
        k.isAdmin ? 'yes' : 'no',
        isoSeconds(k.createdAt),
        k.revokedAt ? isoSeconds(k.revokedAt) : '-',
        rateLimitText(k.rateLimit),
      ]);
      console.log(table(['id', 'tenant', 'prefix', 'priority', 'admin', 'created', 'revoked', 'rate_limit'], rows));
      return;
    }
    case 'revoke': {
      const revoked = await revokeApiKey(pool, parsed.target);
      if (revoked === 0) throw new Error(`no active key has id or prefix "${parsed.target}" (see floodgate keys list)`);
      // The API caches verified keys per process (AUTH_CACHE_TTL_MS), so revocation is not instant.
      console.log(`revoked ${revoked} key${revoked === 1 ? '' : 's'}; running API processes refuse it within AUTH_CACHE_TTL_MS`);
      return;
    }
  }
}

const isoSeconds = (d: Date) => d.toISOString().replace(/\.\d{3}Z$/, 'Z');

/** `100/s,burst=200`; `default` for what follows RATE_LIMIT_PER_SECOND / RATE_LIMIT_BURST (one word: `keys list` is split on spaces). */
function rateLimitText(limit: KeyRateLimit): string {
  if (limit.perSecond === 0) return 'unlimited';
  const rate = limit.perSecond === null ? 'default' : `${limit.perSecond}/s`;
  return limit.burst === null ? rate : `${rate},burst=${limit.burst}`;
}

function table(header: string[], rows: string[][]): string {
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i]!.length)));
  const line = (cells: string[]) => cells.map((c, i) => c.padEnd(widths[i]!)).join('  ').trimEnd();
  return [line(header), ...rows.map(line)].join('\n');
}
