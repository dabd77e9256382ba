import { parseArgs } from 'node:util';
import { createApiKey, listApiKeys, revokeApiKey } from '../lib/api-keys.js';
import type { Config } from '../lib/config.js';
import { createPool } from '../lib/db.js';
import { isPriority } from '../lib/event-schema.js';
import { UsageError } from './usage.js';

const TENANT = /^[A-Za-z0-9_.-]{1,64}$/;

/** `floodgate keys create|list|revoke`. The created key is printed once, as the last line of stdout. */
export async function keysCommand(config: Config, args: string[]): Promise<void> {
  const [action, ...rest] = args;
  const pool = createPool(config.databaseUrl, { max: 1, applicationName: 'floodgate-keys' });
  try {
    if (action === 'create') {
      const { values } = parseArgs({
        args: rest,
        options: { tenant: { type: 'string' }, priority: { type: 'string', default: 'normal' }, admin: { type: 'boolean', default: false } },
      });
      if (!values.tenant || !TENANT.test(values.tenant)) throw new UsageError('keys create needs --tenant NAME (1-64 characters of [A-Za-z0-9_.-])');
      if (!isPriority(values.priority)) throw new UsageError('--priority must be critical, normal or low');
      const created = await createApiKey(pool, { tenant: values.tenant, defaultPriority: values.priority, isAdmin: values.admin });
      console.log(`created key ${created.id} (${created.prefix}…) for tenant ${values.tenant}; it is shown once:`);
      console.log(created.key);
    } else if (action === 'list') {
      const keys = await listApiKeys(pool);
      console.log(['id', 'tenant', 'prefix', 'priority', 'admin', 'created', 'revoked'].join('\t'));
      for (const k of keys) {
        console.log([k.id, k.tenant, k.prefix, k.defaultPriority, k.isAdmin ? 'yes' : 'no', k.createdAt.toISOString(), k.revokedAt?.toISOString() ?? '-'].join('\t'));
      }
    } else if (action === 'revoke') {
      const target = rest[0];
      if (!target) throw new UsageError('keys revoke needs a key id or prefix');
      const revoked = await revokeApiKey(pool, target);
      if (revoked === 0) throw new UsageError(`no active key matches ${target}`);
      console.log(`revoked ${revoked} key(s); processes stop accepting it within AUTH_CACHE_TTL_MS`);
    } else {
      throw new UsageError('keys needs create, list or revoke');
    }
  } finally {
    await pool.end();
  }
}
