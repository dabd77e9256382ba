import { Redis, type RedisOptions } from 'ioredis';
import type { Config } from './config.js';

/** A Redis node's address. */
export interface RedisNode {
  readonly host: string;
  readonly port: number;
}

/**
 * One pub/sub connection of a process (the live view's, the key-revocation feed's), on a single Redis or on a
 * Redis Cluster. Messages published while it is down are lost: it says so (`onLost`), and when it is subscribed
 * again to every channel (`onRestored`), its user catches up from wherever it keeps a durable copy.
 */
export interface RedisSubscriber {
  /** Subscribes to a channel; resolves once the subscription is in effect. */
  subscribe(channel: string): Promise<void>;
  unsubscribe(channel: string): Promise<void>;
  /** Called with every message of a subscribed channel. */
  onMessage(listener: (channel: string, message: string) => void): void;
  /** The connection dropped: messages may be missed until onRestored. */
  onLost(listener: () => void): void;
  /** Subscribed again to every channel, on a connection that answered a PING sent after the subscriptions. */
  onRestored(listener: () => void): void;
  /** Closes the connection; idempotent. */
  close(): Promise<void>;
}

/** How a subscriber connects: its client name (CLIENT LIST), and ioredis options of its connections. */
export interface SubscriberOptions {
  readonly connectionName: string;
  /** E.g. `maxRetriesPerRequest: null` to wait for Redis rather than fail a subscribe while it is away. */
  readonly redisOptions?: RedisOptions;
  /** On a cluster: the nodes known now (the command client's view), tried before the configured seeds. */
  readonly clusterNodes?: () => readonly RedisNode[];
}

type Listeners = {
  message: ((channel: string, message: string) => void)[];
  lost: (() => void)[];
  restored: (() => void)[];
};

const MAX_BACKOFF_MS = 2000;

/**
 * A subscriber on REDIS_URL, or on a Redis Cluster (REDIS_CLUSTER_NODES) when it is set.
 *
 * On a cluster it uses classic pub/sub (SUBSCRIBE on one node; a PUBLISH on any node reaches every node over the
 * cluster bus), not sharded pub/sub (SSUBSCRIBE, one connection per master owning a subscribed channel): one
 * connection per process, whatever the number of masters, and one place where a subscription can be lost. When
 * its node goes away it connects to the next known node (masters and replicas alike: every node delivers) and
 * subscribes again.
 */
export function createRedisSubscriber(config: Pick<Config, 'redisUrl' | 'redisClusterNodes'>, options: SubscriberOptions): RedisSubscriber {
  const listeners: Listeners = { message: [], lost: [], restored: [] };
  const channels = new Set<string>();
  const base: RedisOptions = {
    enableAutoPipelining: false,
    connectionName: options.connectionName,
    maxRetriesPerRequest: 1,
    connectTimeout: 5000,
    ...options.redisOptions,
  };
  const onCluster = config.redisClusterNodes.length > 0;
  let conn: Redis;
  let lost = false;
  let closing: Promise<void> | undefined;
  let attempt = 0;
  let nextNode = Math.floor(Math.random() * Math.max(1, config.redisClusterNodes.length));
  let retry: NodeJS.Timeout | undefined;

  const emitLost = () => {
    if (closing || lost) return;
    lost = true;
    for (const l of listeners.lost) l();
  };

  /** After a reconnect: the subscriptions are in effect once a PING sent after them is answered. */
  const restore = (connection: Redis, resubscribe: boolean) => {
    if (!lost || closing) return;
    const subscribed = resubscribe && channels.size > 0 ? connection.subscribe(...channels) : Promise.resolve();
    subscribed
      .then(() => connection.ping())
      .then(() => {
        if (connection !== conn || closing || !lost) return;
        lost = false;
        for (const l of listeners.restored) l();
      })
      .catch(() => connection.disconnect());
  };

  function wire(connection: Redis): void {
    connection.on('error', () => {});
    connection.on('message', (channel: string, message: string) => {
      if (connection !== conn) return;
      for (const l of listeners.message) l(channel, message);
    });
  }

  if (!onCluster) {
    // ioredis reconnects by itself (every 2 s at most) and subscribes again before 'ready'.
    conn = new Redis(config.redisUrl, { retryStrategy: (n) => Math.min(n * 100, MAX_BACKOFF_MS), ...base });
    wire(conn);
    conn.on('close', emitLost);
    conn.on('ready', () => restore(conn, false));
  } else {
    const connectNext = () => {
      retry = undefined;
      if (closing) return;
      const candidates = [...(options.clusterNodes?.() ?? []), ...config.redisClusterNodes];
      const node = candidates[nextNode++ % candidates.length]!;
      // No reconnection to the same node: when it ends, the next node is tried (ioredis's cluster subscriber does
      // the same), so a node that stays away never holds the subscription.
      const connection = new Redis({ host: node.host, port: node.port, retryStrategy: () => null, ...base });
      conn = connection;
      wire(connection);
      connection.on('ready', () => {
        attempt = 0;
        restore(connection, true);
      });
      connection.once('end', () => {
        if (connection !== conn || closing) return;
        emitLost();
        attempt++;
        retry = setTimeout(connectNext, Math.min(attempt * 100, MAX_BACKOFF_MS));
      });
    };
    connectNext();
  }

  return {
    async subscribe(channel) {
      channels.add(channel);
      await conn.subscribe(channel);
    },
    async unsubscribe(channel) {
      channels.delete(channel);
      if (conn.status === 'ready') await conn.unsubscribe(channel);
    },
    onMessage: (l) => void listeners.message.push(l),
    onLost: (l) => void listeners.lost.push(l),
    onRestored: (l) => void listeners.restored.push(l),
    close() {
      closing ??= (async () => {
        clearTimeout(retry);
        if (conn.status === 'ready') await conn.quit().catch(() => conn.disconnect());
        else conn.disconnect();
      })();
      return closing;
    },
  };
}
