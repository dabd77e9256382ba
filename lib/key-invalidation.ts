import type { Config } from './config.js';
import type { Logger } from './logger.js';
import type { Redis } from './redis.js';
import { createRedisSubscriber } from './redis-subscriber.js';

/**
 * The Redis pub/sub channel announcing revoked and rotated keys; named after the stream so that deployments
 * sharing one Redis do not hear each other.
 */
export function keyInvalidationChannel(config: Pick<Config, 'streamKey'>): string {
  return `${config.streamKey}:key-invalidations`;
}

/** Announces that the cached grants of these keys are stale; returns how many API processes heard it. */
export async function publishKeyInvalidation(redis: Redis, channel: string, keyIds: readonly number[]): Promise<number> {
  return redis.publish(channel, keyIds.join(','));
}

/** What the feed tells: a key resolver's cache. */
export interface InvalidationListener {
  invalidate(keyIds: readonly number[]): void;
  invalidateAll(): void;
  /** true once the subscription is in place, false while the connection is down. */
  setFed(fed: boolean): void;
}

/** One subscriber connection per process, passing announcements on to the listener. */
export interface KeyInvalidationFeed {
  close(): Promise<void>;
}

/**
 * Subscribes to the invalidation channel, on REDIS_URL or on a Redis Cluster (classic pub/sub: an announcement
 * published on any node reaches every node). A subscription that comes back after the connection dropped may
 * have missed announcements, so the listener then forgets everything it cached.
 */
export function startKeyInvalidationFeed(deps: {
  config: Pick<Config, 'redisUrl' | 'redisClusterNodes'>;
  channel: string;
  listener: InvalidationListener;
  logger: Logger;
}): KeyInvalidationFeed {
  const { channel, listener } = deps;
  const log = deps.logger.child({ scope: 'key-invalidation' });
  // Waits for Redis rather than failing: a subscriber has nothing better to do while Redis is away.
  const sub = createRedisSubscriber(deps.config, { connectionName: 'floodgate-key-feed', redisOptions: { maxRetriesPerRequest: null } });
  let closed = false;

  sub.onMessage((from, message) => {
    if (from !== channel) return;
    const ids = message.split(',').map(Number).filter(Number.isSafeInteger);
    if (ids.length > 0) listener.invalidate(ids);
  });
  sub.onLost(() => listener.setFed(false));
  sub.onRestored(() => {
    if (closed) return;
    listener.invalidateAll();
    listener.setFed(true);
  });
  sub.subscribe(channel).then(
    () => {
      if (!closed) listener.setFed(true);
    },
    (err: unknown) => log.warn({ err }, 'cannot subscribe to key invalidations; cached keys are revalidated every second'),
  );

  return {
    async close() {
      closed = true;
      listener.setFed(false);
      await sub.close();
    },
  };
}
