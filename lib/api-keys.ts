import { createHash, randomBytes } from 'node:crypto';
import type { Pool } from './db.js';
import type { Priority } from './event-schema.js';

const KEY_PREFIX = 'fgk_';

/** A key's own rate limit; a null field means the configured default. */
export interface KeyRateLimit {
  /** Requests per second; 0 means unlimited. */
  readonly perSecond: number | null;
  /** Bucket size: requests it may send at once after being idle. */
  readonly burst: number | null;
}

/** What a verified key grants. */
export interface KeyGrant {
  readonly keyId: number;
  readonly tenant: string;
  readonly defaultPriority: Priority;
  readonly isAdmin: boolean;
  readonly rateLimit: KeyRateLimit;
}

export interface ApiKeyRow {
  readonly id: number;
  readonly tenant: string;
  readonly prefix: string;
  readonly defaultPriority: Priority;
  readonly isAdmin: boolean;
  readonly createdAt: Date;
  readonly revokedAt: Date | null;
  readonly rateLimit: KeyRateLimit;
}

/** SHA-256 of a key: keys are 256-bit random, so a fast hash is enough and a lookup stays one index probe. */
export function hashKey(key: string): Buffer {
  return createHash('sha256').update(key).digest();
}

/** Creates a key for a tenant; the plaintext key is returned once and never stored. */
export async function createApiKey(
  pool: Pool,
  options: { tenant: string; defaultPriority?: Priority; isAdmin?: boolean; rateLimit?: Partial<KeyRateLimit> },
): Promise<{ id: number; key: string; prefix: string }> {
  const key = KEY_PREFIX + randomBytes(32).toString('base64url');
  const prefix = key.slice(0, KEY_PREFIX.length + 8);
  const { rows } = await pool.query<{ id: string }>(
    `INSERT INTO api_keys (tenant, key_hash, key_prefix, default_priority, is_admin, rate_limit_per_second, rate_limit_burst)
     VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING id`,
    [
      options.tenant,
      hashKey(key),
      prefix,
      options.defaultPriority ?? 'normal',
      options.isAdmin ?? false,
      options.rateLimit?.perSecond ?? null,
      options.rateLimit?.burst ?? null,
    ],
  );
  return { id: Number(rows[0]!.id), key, prefix };
}

/** Every key, newest first, without secrets. */
export async function listApiKeys(pool: Pool): Promise<ApiKeyRow[]> {
  const { rows } = await pool.query<{
    id: string;
    tenant: string;
    key_prefix: string;
    default_priority: Priority;
    is_admin: boolean;
    created_at: Date;
    revoked_at: Date | null;
    rate_limit_per_second: number | null;
    rate_limit_burst: number | null;
  }>(
    `SELECT id, tenant, key_prefix, default_priority, is_admin, created_at, revoked_at, rate_limit_per_second, rate_limit_burst
     FROM api_keys ORDER BY id DESC`,
  );
  return rows.map((r) => ({
    id: Number(r.id),
    tenant: r.tenant,
    prefix: r.key_prefix,
    defaultPriority: r.default_priority,
    isAdmin: r.is_admin,
    createdAt: r.created_at,
    revokedAt: r.revoked_at,
    rateLimit: { perSecond: r.rate_limit_per_second, burst: r.rate_limit_burst },
  }));
}

/** Revokes a key by id or by its displayed prefix; returns how many keys were revoked. */
export async function revokeApiKey(pool: Pool, idOrPrefix: string): Promise<number> {
  const byId = /^\d+$/.test(idOrPrefix);
  const result = await pool.query(
    `UPDATE api_keys SET revoked_at = now() WHERE revoked_at IS NULL AND ${byId ? 'id = $1::bigint' : 'key_prefix = $1'}`,
    [idOrPrefix],
  );
  return result.rowCount ?? 0;
}

/** Looks a presented key up by its hash; null when unknown or revoked. */
export async function findApiKey(pool: Pool, key: string): Promise<KeyGrant | null> {
  const { rows } = await pool.query<{
    id: string;
    tenant: string;
    default_priority: Priority;
    is_admin: boolean;
    rate_limit_per_second: number | null;
    rate_limit_burst: number | null;
  }>(
    `SELECT id, tenant, default_priority, is_admin, rate_limit_per_second, rate_limit_burst
     FROM api_keys WHERE key_hash = $1 AND revoked_at IS NULL`,
    [hashKey(key)],
  );
  const row = rows[0];
  if (!row) return null;
  return {
    keyId: Number(row.id),
    tenant: row.tenant,
    defaultPriority: row.default_priority,
    isAdmin: row.is_admin,
    rateLimit: { perSecond: row.rate_limit_per_second, burst: row.rate_limit_burst },
  };
}
