import { parseArgs } from 'node:util';
import {
  createApiKey,
  isScope,
  listApiKeys,
  revokeApiKey,
  rotateApiKey,
  SCOPES,
  atMost,
  withinCeiling,
  type KeyRateLimit,
  type Scope,
} from '../lib/api-keys.js';
import type { Config } from '../lib/config.js';
import type { Pool } from '../lib/db.js';
import { isPriority, type Priority } from '../lib/event-schema.js';
import { keyInvalidationChannel, publishKeyInvalidation } from '../lib/key-invalidation.js';
import { createQueueRedis } from '../lib/redis.js';
import { withCommandPool } from './command-pool.js';
import { UsageError } from './usage.js';

const TENANT = /^[A-Za-z0-9_.-]{1,64}$/;

/** A parsed `keys create`. */
export interface CreateKeyAction {
  readonly action: 'create';
  readonly tenant: string;
  readonly priority: Priority;
  readonly scopes: readonly Scope[];
  readonly maxPriority: Priority;
  /** Lifetime in milliseconds from creation; null never expires. */
  readonly expiresInMs: number | null;
  readonly rateLimit: KeyRateLimit;
}

/** A parsed `keys` invocation. */
export type KeysAction =
  | CreateKeyAction
  | { readonly action: 'list' }
  | { readonly action: 'revoke'; readonly target: string }
  | { readonly action: 'rotate'; readonly target: string; readonly graceMs: number };

const DEFAULT_GRACE = '24h';

/** Parses `keys create|list|revoke|rotate …`; throws UsageError (exit 2) before anything touches the database. */
export function parseKeysArgs(args: readonly string[]): KeysAction {
  const [action, ...rest] = args;
  if (action === 'create') return parseCreate(rest);
  if (action === 'list') {
    asUsage(() => parseArgs({ args: rest, strict: true }));
    return { action };
  }
  if (action === 'revoke') {
    const { positionals } = asUsage(() => parseArgs({ args: rest, strict: true, allowPositionals: true }));
    if (positionals.length !== 1) throw new UsageError('keys revoke needs exactly one key id or prefix (see keys list)');
    return { action, target: positionals[0]! };
  }
  if (action === 'rotate') {
    const { values, positionals } = asUsage(() =>
      parseArgs({ args: rest, strict: true, allowPositionals: true, options: { grace: { type: 'string', default: DEFAULT_GRACE } } }),
    );
    if (positionals.length !== 1) throw new UsageError('keys rotate needs exactly one key id or prefix (see keys list)');
    // 0 ends the old secret at once: the rotation of a leaked key.
    const graceMs = /^0[smhd]?$/.test(values.grace) ? 0 : parseDuration('--grace', values.grace);
    return { action, target: positionals[0]!, graceMs };
  }
  throw new UsageError(
    action ? `unknown keys action "${action}": use create, list, revoke or rotate` : 'keys needs create, list, revoke or rotate',
  );
}

function parseCreate(args: readonly string[]): CreateKeyAction {
  const { values } = asUsage(() =>
    parseArgs({
      args: [...args],
      options: {
        tenant: { type: 'string' },
        priority: { type: 'string' },
        scopes: { type: 'string', default: 'ingest' },
        // Shorthand kept for scripts written before scopes: adds `admin` to --scopes.
        admin: { type: 'boolean', default: false },
        'max-priority': { type: 'string', default: 'critical' },
        'expires-in': { type: 'string' },
        'rate-limit': { type: 'string' },
        burst: { type: 'string' },
      },
      strict: true,
    }),
  );
  const { tenant } = values;
  const maxPriority = values['max-priority'];
  // Without --priority a key sends normal traffic, or its ceiling when that is lower.
  const priority = values.priority ?? (isPriority(maxPriority) ? atMost('normal', maxPriority) : 'normal');
  if (!tenant || !TENANT.test(tenant)) throw new UsageError('keys create needs --tenant NAME (1-64 characters of A-Z a-z 0-9 _ . -)');
  if (!isPriority(priority)) throw new UsageError(`--priority must be critical, normal or low, got "${priority}"`);
  if (!isPriority(maxPriority)) throw new UsageError(`--max-priority must be critical, normal or low, got "${maxPriority}"`);
  if (!withinCeiling(priority, maxPriority)) throw new UsageError(`--priority ${priority} is above --max-priority ${maxPriority}`);
  const scopes = values.scopes.split(',').map((s) => s.trim());
  const unknown = scopes.filter((s) => !isScope(s));
  if (unknown.length > 0 || scopes.length === 0)
    throw new UsageError(`--scopes is a comma-separated list of ${SCOPES.join(', ')}, got "${values.scopes}"`);
  if (values.admin) scopes.push('admin');
  const rateLimit = {
    perSecond: optionalNumber('--rate-limit', values['rate-limit'], /^\d+(\.\d+)?$/, 0, MAX_RATE),
    burst: optionalNumber('--burst', values.burst, /^\d+$/, 1, MAX_RATE),
  };
  const expiresInMs = values['expires-in'] === undefined ? null : parseDuration('--expires-in', values['expires-in']);
  return { action: 'create', tenant, priority, scopes: [...new Set(scopes as Scope[])], maxPriority, expiresInMs, rateLimit };
}

const DURATION_UNIT_MS = { s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 } as const;
const MAX_DURATION_MS = 100 * 365 * DURATION_UNIT_MS.d;

/** `90s`, `15m`, `24h`, `30d` in milliseconds. */
export function parseDuration(option: string, raw: string): number {
  const match = /^(\d{1,6})([smhd])$/.exec(raw);
  const ms = match ? Number(match[1]) * DURATION_UNIT_MS[match[2] as keyof typeof DURATION_UNIT_MS] : 0;
  if (ms <= 0 || ms > MAX_DURATION_MS)
    throw new UsageError(`${option} must be a positive duration such as 90s, 15m, 24h or 30d, got "${raw}"`);
  return ms;
}

const MAX_RATE = 10_000_000;

function optionalNumber(option: string, raw: string | undefined, shape: RegExp, min: number, max: number): number | null {
  if (raw === undefined) return null;
  const value = Number(raw);
  if (!shape.test(raw) || value < min || value > max)
    throw new UsageError(`${option} must be a number from ${min} to ${max}, got "${raw}"`);
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
  await withCommandPool(config, 'floodgate-keys', 'api_keys', (pool) => runKeys(pool, config, parsed));
}

/**
 * Tells running API processes to drop their cached grants of these keys. The change is already committed, so
 * a failure here is a warning: processes that cannot reach Redis either revalidate their keys every second,
 * the others notice within AUTH_CACHE_TTL_MS.
 */
async function announce(config: Config, keyIds: readonly number[], what: string): Promise<void> {
  // QUEUE=postgres runs without Redis: API processes revalidate cached keys every second instead.
  if (config.queue === 'postgres') return;
  // A cluster client sends PUBLISH to one node; the cluster bus passes it to every node, so every subscriber hears it.
  const redis = createQueueRedis(config, {
    lazyConnect: true,
    maxRetriesPerRequest: 0,
    retryStrategy: () => null,
    connectTimeout: 2000,
  });
  try {
    await redis.connect();
    await publishKeyInvalidation(redis, keyInvalidationChannel(config), keyIds);
  } catch (err) {
    process.stderr.write(
      `floodgate: could not announce the ${what} on Redis (${(err as Error).message}): API processes refuse the old secret within AUTH_CACHE_TTL_MS (${config.authCacheTtlMs} ms), or within a second if they cannot reach Redis either\n`,
    );
  } finally {
    redis.disconnect();
  }
}

async function runKeys(pool: Pool, config: Config, parsed: KeysAction): Promise<void> {
  switch (parsed.action) {
    case 'create': {
      const { tenant, priority, scopes, maxPriority, expiresInMs, rateLimit } = parsed;
      const created = await createApiKey(pool, { tenant, defaultPriority: priority, scopes, maxPriority, expiresInMs, rateLimit });
      const expiry = expiresInMs === null ? 'never expires' : `expires ${isoSeconds(new Date(Date.now() + expiresInMs))}`;
      console.log(
        `created key ${created.id} (${created.prefix}) for tenant ${tenant}: scopes ${scopes.join(',')}, default priority ${priority}, ` +
          `max priority ${maxPriority}, rate limit ${rateLimitText(rateLimit)}, ${expiry}.`,
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
        k.scopes.join(','),
        k.defaultPriority,
        k.maxPriority,
        isoSeconds(k.createdAt),
        k.expiresAt ? isoSeconds(k.expiresAt) : '-',
        k.revokedAt ? isoSeconds(k.revokedAt) : '-',
        k.previousKeyExpiresAt ? isoSeconds(k.previousKeyExpiresAt) : '-',
        rateLimitText(k.rateLimit),
      ]);
      const header = [
        'id',
        'tenant',
        'prefix',
        'scopes',
        'priority',
        'max_priority',
        'created',
        'expires',
        'revoked',
        'old_secret_until',
        'rate_limit',
      ];
      console.log(table(header, rows));
      return;
    }
    case 'revoke': {
      const revoked = await revokeApiKey(pool, parsed.target);
      if (revoked.length === 0) throw new Error(`no active key has id or prefix "${parsed.target}" (see floodgate keys list)`);
      await announce(config, revoked, 'revocation');
      console.log(`revoked key${revoked.length === 1 ? '' : 's'} ${revoked.join(', ')}`);
      return;
    }
    case 'rotate': {
      const rotated = await rotateApiKey(pool, parsed.target, parsed.graceMs);
      if (!rotated) throw new Error(`no active key has id or prefix "${parsed.target}" (see floodgate keys list)`);
      await announce(config, [rotated.id], 'rotation');
      const old = parsed.graceMs === 0 ? 'no longer works' : `works until ${isoSeconds(rotated.previousValidUntil)}`;
      console.log(`rotated key ${rotated.id}: new secret ${rotated.prefix}; the old one (${rotated.previousPrefix}) ${old}.`);
      console.log('It is shown only this once; store it now:');
      console.log(rotated.key);
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
  const line = (cells: string[]) =>
    cells
      .map((c, i) => c.padEnd(widths[i]!))
      .join('  ')
      .trimEnd();
  return [line(header), ...rows.map(line)].join('\n');
}
