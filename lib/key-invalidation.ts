import type { Config } from './config.js';
import type { Logger } from './logger.js';
import { createRedis, type Redis } from './redis.js';

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
 * Subscribes to the invalidation channel. A subscription that comes back after the connection dropped may
 * have missed announcements, so the listener then forgets everything it cached.
 */
export function startKeyInvalidationFeed(deps: {
  redisUrl: string;
  channel: string;
  listener: InvalidationListener;
  logger: Logger;
}): KeyInvalidationFeed {
  const { channel, listener } = deps;
  const log = deps.logger.child({ scope: 'key-invalidation' });
  // Retries forever (every 2 s at most): a subscriber has nothing better to do while Redis is away.
  const sub = createRedis(deps.redisUrl, { enableAutoPipelining: false, maxRetriesPerRequest: null });
  let subscribedBefore = false;
  let closed = false;

  sub.on('message', (from: string, message: string) => {
    if (from !== channel) return;
    const ids = message.split(',').map(Number).filter(Number.isSafeInteger);
    if (ids.length > 0) listener.invalidate(ids);
  });
  sub.on('ready', () => {
    sub.subscribe(channel).then(
      () => {
        if (closed) return;
        if (subscribedBefore) listener.invalidateAll();
        subscribedBefore = true;
        listener.setFed(true);
      },
      (err: unknown) => log.warn({ err }, 'cannot subscribe to key invalidations; cached keys are revalidated every second'),
    );
  });
  sub.on('close', () => listener.setFed(false));

  return {
    async close() {
      closed = true;
      listener.setFed(false);
      sub.disconnect();
    },
  };
}
