import { Counter, Gauge, Histogram, Registry } from 'prom-client';
import { LISTENING_TTL_MS, LOG_FIELD, compareEntryIds, liveKeys, parseBody, parseMessage, type LiveBatch } from './live-channel.js';
import type { Logger } from './logger.js';
import { LATENCY_BUCKETS } from './metrics.js';
import type { Redis } from './redis.js';
import type { Config } from './config.js';
import { createRedisSubscriber, type RedisNode } from './redis-subscriber.js';

/** Receives a tenant's batches in order; called synchronously, so it must not block or throw. */
export type LiveListener = (batch: LiveBatch) => void;

/** What the API's live subscriber needs. */
export interface LiveSubscriberDeps {
  /** The API's command client (markers, log reads): a single Redis or a Cluster. */
  readonly redis: Redis;
  /** Where the one subscription connects: REDIS_URL, or a node of REDIS_CLUSTER_NODES. */
  readonly config: Pick<Config, 'redisUrl' | 'redisClusterNodes'>;
  readonly streamKey: string;
  readonly logger: Logger;
  readonly registry?: Registry;
}

/** One API process's view of the live channels: a single Redis subscription shared by all its connections. */
export interface LiveSubscriber {
  /**
   * Adds a listener for a tenant. Resolves once every batch published from then on reaches it (the process is
   * subscribed and the worker sees the tenant's listener marker); rejects when Redis cannot be reached.
   */
  join(tenant: string, listener: LiveListener): Promise<void>;
  /** Removes a listener; the last one of a tenant unsubscribes this process from it. */
  leave(tenant: string, listener: LiveListener): void;
  /** Up to `count` batches of a tenant's resume log from entry `startId` (exclusive unless `inclusive`). */
  readLog(tenant: string, startId: string, inclusive: boolean, count: number): Promise<LiveBatch[]>;
  /** Drops every listener and the subscription connection; idempotent. */
  close(): Promise<void>;
}

interface TenantState {
  readonly listeners: Set<LiveListener>;
  /** The newest batch dispatched (or the log's newest when subscribing): catching up resumes after it. */
  lastId: string;
  /** Batches that arrive while the tenant catches up after a lost subscription, dispatched after it. */
  held: LiveBatch[] | null;
  ready?: Promise<void>;
}

const CATCH_UP_PAGE = 64;

/** The subscription's client name (CLIENT LIST): one per API process. */
export const LIVE_CONNECTION_NAME = 'floodgate-live';

type LogEntries = [id: string, fields: string[]][];

/** The nodes a Cluster client knows (none for a single Redis): where the subscription may move when its node goes. */
function clusterNodes(redis: Redis): RedisNode[] {
  if (!redis.isCluster) return [];
  const cluster = redis as unknown as { nodes(role: 'all'): { options: { host?: string; port?: number } }[] };
  return cluster.nodes('all').map((n) => ({ host: n.options.host ?? '127.0.0.1', port: n.options.port ?? 6379 }));
}

/**
 * The API's half of the live view. One subscriber connection per process, subscribed to the channels of the
 * tenants its connections watch (not one per connection: thousands of connections cost Redis one client).
 * While it watches a tenant it keeps the tenant's listener marker alive, so the worker publishes its batches.
 * If the subscription is lost (Redis restart, network, its cluster node gone), what was published meanwhile is lost; on
 * reconnecting, each tenant catches up from its resume log after the last batch it dispatched, so listeners
 * see neither a gap nor a repeat.
 */
export function createLiveSubscriber(deps: LiveSubscriberDeps): LiveSubscriber {
  const { redis } = deps;
  const keys = liveKeys(deps.streamKey);
  const log = deps.logger.child({ scope: 'live-subscriber' });
  // Subscriber mode takes the connection over; commands go on the shared client.
  const sub = createRedisSubscriber(deps.config, { connectionName: LIVE_CONNECTION_NAME, clusterNodes: () => clusterNodes(redis) });
  const states = new Map<string, TenantState>();
  const byChannel = new Map<string, string>();
  const registers = [deps.registry ?? new Registry()];
  new Gauge({
    name: 'floodgate_live_subscribed_tenants',
    help: 'Tenants whose live channel this API process is subscribed to (it has connections for them).',
    registers,
    collect() {
      this.set(states.size);
    },
  });
  const received = new Counter({
    name: 'floodgate_live_batches_received_total',
    help: 'Live batches received from Redis (one per tenant per published chunk).',
    registers,
  });
  const commitToSend = new Histogram({
    name: 'floodgate_live_commit_to_send_seconds',
    help: "Worker's commit of a live batch → the batch written to this process's connections, per batch received (worker and API clocks).",
    buckets: LATENCY_BUCKETS,
    registers,
  });
  let closing: Promise<void> | undefined;

  function dispatch(state: TenantState, batch: LiveBatch): void {
    if (compareEntryIds(batch.id, state.lastId) <= 0) return;
    state.lastId = batch.id;
    for (const listener of state.listeners) {
      try {
        listener(batch);
      } catch (err) {
        log.error({ err }, 'live listener failed');
      }
    }
    // Listeners write synchronously, so the batch is on every connection's socket now. The two clocks may
    // disagree by a little: a batch "sent before its commit" counts as 0.
    if (batch.committedAtMs !== undefined) commitToSend.observe(Math.max(0, Date.now() - batch.committedAtMs) / 1000);
  }

  async function readLog(tenant: string, startId: string, inclusive: boolean, count: number): Promise<LiveBatch[]> {
    const entries = (await redis.xrange(keys.log(tenant), inclusive ? startId : `(${startId}`, '+', 'COUNT', count)) as LogEntries;
    return entries.map(([id, fields]) => parseBody(id, fields[fields.indexOf(LOG_FIELD) + 1] ?? ''));
  }

  async function catchUp(tenant: string, state: TenantState): Promise<void> {
    for (;;) {
      const page = await readLog(tenant, state.lastId, false, CATCH_UP_PAGE);
      for (const batch of page) dispatch(state, batch);
      if (page.length < CATCH_UP_PAGE) break;
    }
    const held = state.held ?? [];
    state.held = null;
    for (const batch of held) dispatch(state, batch);
  }

  /**
   * Catches a tenant up, trying again while its log cannot be read (on a cluster its master may be failing over):
   * until then its batches are held, so its connections see them late but none lost or out of order.
   */
  async function catchUpRetrying(tenant: string, state: TenantState): Promise<void> {
    for (let attempt = 1; !closing && states.get(tenant) === state; attempt++) {
      try {
        await catchUp(tenant, state);
        return;
      } catch (err) {
        if (attempt === 1) log.error({ err, tenant }, 'could not catch up a live channel; trying again');
        await new Promise((resolve) => setTimeout(resolve, Math.min(attempt * 200, 2000)));
      }
    }
  }

  function refreshMarkers(): Promise<unknown> {
    if (states.size === 0) return Promise.resolve();
    const pipeline = redis.pipeline();
    for (const tenant of states.keys()) pipeline.set(keys.listening(tenant), '1', 'PX', LISTENING_TTL_MS);
    return pipeline.exec();
  }

  sub.onMessage((channel, message) => {
    const tenant = byChannel.get(channel);
    const state = tenant === undefined ? undefined : states.get(tenant);
    const batch = state ? parseMessage(message) : null;
    if (!state || !batch) return;
    received.inc();
    if (state.held) state.held.push(batch);
    else dispatch(state, batch);
  });
  sub.onLost(() => {
    for (const state of states.values()) state.held ??= [];
  });
  // Subscribed again, and a PING after the subscriptions was answered: no batch falls between the log read and
  // the subscription. What was published while we were away is in the logs.
  sub.onRestored(() => {
    log.warn({ tenants: states.size }, 'live subscription restored; catching up from the resume logs');
    refreshMarkers().catch(() => {});
    for (const [tenant, state] of states) void catchUpRetrying(tenant, state);
  });

  const refresher = setInterval(() => {
    refreshMarkers().catch((err: unknown) => log.warn({ err }, 'could not refresh live listener markers'));
  }, LISTENING_TTL_MS / 3);
  refresher.unref();

  function forget(tenant: string, state: TenantState): void {
    if (states.get(tenant) !== state) return;
    states.delete(tenant);
    byChannel.delete(keys.channel(tenant));
    sub.unsubscribe(keys.channel(tenant)).catch(() => {});
  }

  return {
    async join(tenant, listener) {
      if (closing) throw new Error('the live subscriber is closed');
      let state = states.get(tenant);
      if (!state) {
        const fresh: TenantState = { listeners: new Set(), lastId: '0-0', held: null };
        states.set(tenant, fresh);
        byChannel.set(keys.channel(tenant), tenant);
        fresh.ready = (async () => {
          // Read before subscribing: every batch the subscription brings is newer, and a later catch-up starts here.
          const newest = (await redis.xrevrange(keys.log(tenant), '+', '-', 'COUNT', 1)) as LogEntries;
          if (newest[0]) fresh.lastId = newest[0][0];
          await Promise.all([sub.subscribe(keys.channel(tenant)), redis.set(keys.listening(tenant), '1', 'PX', LISTENING_TTL_MS)]);
        })();
        state = fresh;
      }
      state.listeners.add(listener);
      try {
        await state.ready;
      } catch (err) {
        state.listeners.delete(listener);
        forget(tenant, state);
        throw err;
      }
    },
    leave(tenant, listener) {
      const state = states.get(tenant);
      if (!state || !state.listeners.delete(listener)) return;
      if (state.listeners.size === 0) forget(tenant, state);
    },
    readLog,
    close() {
      closing ??= (async () => {
        clearInterval(refresher);
        states.clear();
        byChannel.clear();
        await sub.close();
      })();
      return closing;
    },
  };
}
