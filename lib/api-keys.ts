import { createHash, randomBytes } from 'node:crypto';
import { withTransaction, type Pool } from './db.js';
import { PRIORITIES, type Priority } from './event-schema.js';

const KEY_PREFIX = 'fgk_';

/** What a key may be used for: sending events, reading them back, the admin endpoints. */
export const SCOPES = ['ingest', 'read', 'admin'] as const;
export type Scope = (typeof SCOPES)[number];

/** Checks a word against the scopes. */
export function isScope(value: unknown): value is Scope {
  return (SCOPES as readonly unknown[]).includes(value);
}

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
  readonly scopes: readonly Scope[];
  /** The highest class this key may send (its ceiling). */
  readonly maxPriority: Priority;
  /** When the presented secret stops working: the key's expiry, or the end of a rotation's grace; null never. */
  readonly expiresAt: Date | null;
  readonly rateLimit: KeyRateLimit;
}

export interface ApiKeyRow {
  readonly id: number;
  readonly tenant: string;
  readonly prefix: string;
  readonly defaultPriority: Priority;
  readonly scopes: readonly Scope[];
  readonly maxPriority: Priority;
  readonly createdAt: Date;
  readonly expiresAt: Date | null;
  readonly revokedAt: Date | null;
  /** Until when the secret replaced by the last rotation still works; null when none does. */
  readonly previousKeyExpiresAt: Date | null;
  readonly rateLimit: KeyRateLimit;
}

/** Whether `priority` is at or below `ceiling` (critical > normal > low). */
export function withinCeiling(priority: Priority, ceiling: Priority): boolean {
  return PRIORITIES.indexOf(priority) >= PRIORITIES.indexOf(ceiling);
}

/** `priority`, lowered to `ceiling` when it is above it. */
export function atMost(priority: Priority, ceiling: Priority): Priority {
  return withinCeiling(priority, ceiling) ? priority : ceiling;
}

/** SHA-256 of a key: keys are 256-bit random, so a fast hash is enough and a lookup stays one index probe. */
export function hashKey(key: string): Buffer {
  return createHash('sha256').update(key).digest();
}

/** A fresh secret and the prefix `keys list` shows for it. */
function newSecret(): { key: string; prefix: string } {
  const key = KEY_PREFIX + randomBytes(32).toString('base64url');
  return { key, prefix: key.slice(0, KEY_PREFIX.length + 8) };
}

/** What a new key may do; every field but the tenant has a default. */
export interface NewKeyOptions {
  readonly tenant: string;
  /** Default: `normal`, or the ceiling when that is lower. */
  readonly defaultPriority?: Priority;
  /** Default: `ingest` only. */
  readonly scopes?: readonly Scope[];
  /** Default: `critical` (no ceiling). */
  readonly maxPriority?: Priority;
  /** Lifetime from now (the database's clock, the one expiry is checked against); default: never expires. */
  readonly expiresInMs?: number | null;
  readonly rateLimit?: Partial<KeyRateLimit>;
}

/** Creates a key for a tenant; the plaintext key is returned once and never stored. */
export async function createApiKey(pool: Pool, options: NewKeyOptions): Promise<{ id: number; key: string; prefix: string }> {
  const { key, prefix } = newSecret();
  const maxPriority = options.maxPriority ?? 'critical';
  const { rows } = await pool.query<{ id: string }>(
    `INSERT INTO api_keys (tenant, key_hash, key_prefix, default_priority, scopes, max_priority, expires_at, rate_limit_per_second, rate_limit_burst)
     VALUES ($1, $2, $3, $4, $5, $6, now() + $7 * interval '1 millisecond', $8, $9) RETURNING id`,
    [
      options.tenant,
      hashKey(key),
      prefix,
      options.defaultPriority ?? atMost('normal', maxPriority),
      [...new Set(options.scopes ?? ['ingest'])],
      maxPriority,
      options.expiresInMs ?? null,
      options.rateLimit?.perSecond ?? null,
      options.rateLimit?.burst ?? null,
    ],
  );
  return { id: Number(rows[0]!.id), key, prefix };
}

interface KeyColumns {
  id: string;
  tenant: string;
  default_priority: Priority;
  scopes: Scope[];
  max_priority: Priority;
  expires_at: Date | null;
  rate_limit_per_second: number | null;
  rate_limit_burst: number | null;
}

/** Every key, newest first, without secrets. */
export async function listApiKeys(pool: Pool): Promise<ApiKeyRow[]> {
  const { rows } = await pool.query<
    KeyColumns & { key_prefix: string; created_at: Date; revoked_at: Date | null; previous_key_expires_at: Date | null }
  >(
    `SELECT id, tenant, key_prefix, default_priority, scopes, max_priority, created_at, expires_at, revoked_at, previous_key_expires_at,
            rate_limit_per_second, rate_limit_burst
     FROM api_keys ORDER BY id DESC`,
  );
  return rows.map((r) => ({
    id: Number(r.id),
    tenant: r.tenant,
    prefix: r.key_prefix,
    defaultPriority: r.default_priority,
    scopes: r.scopes,
    maxPriority: r.max_priority,
    createdAt: r.created_at,
    expiresAt: r.expires_at,
    revokedAt: r.revoked_at,
    previousKeyExpiresAt: r.previous_key_expires_at && r.previous_key_expires_at > new Date() ? r.previous_key_expires_at : null,
    rateLimit: { perSecond: r.rate_limit_per_second, burst: r.rate_limit_burst },
  }));
}

/** Revokes a key by id or by its displayed prefix; returns the ids of the keys revoked. */
export async function revokeApiKey(pool: Pool, idOrPrefix: string): Promise<number[]> {
  const byId = /^\d+$/.test(idOrPrefix);
  const { rows } = await pool.query<{ id: string }>(
    `UPDATE api_keys SET revoked_at = now() WHERE revoked_at IS NULL AND ${byId ? 'id = $1::bigint' : 'key_prefix = $1'} RETURNING id`,
    [idOrPrefix],
  );
  return rows.map((r) => Number(r.id));
}

/** What `rotateApiKey` did: the new secret (shown once) and until when the old one still works. */
export interface RotatedKey {
  readonly id: number;
  readonly key: string;
  readonly prefix: string;
  readonly previousPrefix: string;
  readonly previousValidUntil: Date;
}

/**
 * Gives one active key a new secret, keeping its id and every setting; the old secret keeps working for
 * `graceMs` (0: not at all), on the database's clock. A key has one previous secret: rotating again within the
 * grace ends the grace of the one before. Null when no active key has that id or prefix.
 */
export async function rotateApiKey(pool: Pool, idOrPrefix: string, graceMs: number): Promise<RotatedKey | null> {
  const byId = /^\d+$/.test(idOrPrefix);
  const { key, prefix } = newSecret();
  return withTransaction(pool, async (client) => {
    const { rows } = await client.query<{ id: string; key_prefix: string }>(
      `SELECT id, key_prefix FROM api_keys
       WHERE revoked_at IS NULL AND (expires_at IS NULL OR expires_at > now()) AND ${byId ? 'id = $1::bigint' : 'key_prefix = $1'}
       FOR UPDATE`,
      [idOrPrefix],
    );
    if (rows.length === 0) return null;
    if (rows.length > 1) throw new Error(`${rows.length} active keys have the prefix "${idOrPrefix}": rotate one by its id`);
    const { rows: updated } = await client.query<{ previous_key_expires_at: Date }>(
      `UPDATE api_keys
       SET previous_key_hash = key_hash, previous_key_expires_at = now() + $2 * interval '1 millisecond', key_hash = $3, key_prefix = $4
       WHERE id = $1 RETURNING previous_key_expires_at`,
      [rows[0]!.id, graceMs, hashKey(key), prefix],
    );
    return {
      id: Number(rows[0]!.id),
      key,
      prefix,
      previousPrefix: rows[0]!.key_prefix,
      previousValidUntil: updated[0]!.previous_key_expires_at,
    };
  });
}

/** Looks a presented key up by its hash; null when unknown, revoked or expired. */
export async function findApiKey(pool: Pool, key: string): Promise<KeyGrant | null> {
  // The secret a rotation replaced matches previous_key_hash until its grace ends; it never outlives the key.
  const { rows } = await pool.query<KeyColumns>(
    `SELECT id, tenant, default_priority, scopes, max_priority, rate_limit_per_second, rate_limit_burst,
            CASE WHEN key_hash = $1 THEN expires_at ELSE LEAST(expires_at, previous_key_expires_at) END AS expires_at
     FROM api_keys
     WHERE (key_hash = $1 OR (previous_key_hash = $1 AND previous_key_expires_at > now()))
       AND revoked_at IS NULL AND (expires_at IS NULL OR expires_at > now())`,
    [hashKey(key)],
  );
  const row = rows[0];
  if (!row) return null;
  return {
    keyId: Number(row.id),
    tenant: row.tenant,
    defaultPriority: row.default_priority,
    scopes: row.scopes,
    maxPriority: row.max_priority,
    expiresAt: row.expires_at,
    rateLimit: { perSecond: row.rate_limit_per_second, burst: row.rate_limit_burst },
  };
}
