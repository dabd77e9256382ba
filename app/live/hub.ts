import { Gauge, type Registry } from 'prom-client';
import type { Config } from '../../lib/config.js';
import { apiError } from '../../lib/errors.js';
import { cursorEntryId, type Cursor } from '../../lib/live-channel.js';
import type { Logger } from '../../lib/logger.js';
import type { Redis } from '../../lib/redis.js';
import { createLiveSubscriber, type LiveSubscriber } from '../../lib/live-subscriber.js';
import { createLiveConnection, type LiveConnection, type Sink } from './connection.js';
import type { TypeFilter } from './filter.js';
import { createLiveMetrics, type LiveProtocol } from './metrics.js';
import { CLOSE_GRACE_MS } from './sse.js';

/** What the live hub needs. */
export interface LiveHubDeps {
  readonly config: Pick<Config, 'streamKey' | 'liveMaxConnections' | 'liveMaxBufferBytes' | 'redisUrl' | 'redisClusterNodes'>;
  readonly redis: Redis;
  readonly logger: Logger;
  readonly registry: Registry;
}

/** A live connection that is subscribed and holds its events until it has a socket. */
export interface LiveSession {
  /** Gives it its socket: replays after the Last-Event-ID if any, then delivers live. */
  start(sink: Sink): Promise<void>;
  /** The socket could not be set up: forget the session. */
  abort(): void;
}

/** Every live connection of one API process. */
export interface LiveHub {
  /** Subscribes a new connection for `tenant`; throws overloaded at capacity, dependency_unavailable without Redis. */
  open(tenant: string, filter: TypeFilter, resumeAfter: Cursor | null): Promise<LiveSession>;
  /** Ends every connection with a close message (server_shutdown), at most CLOSE_GRACE_MS later; idempotent. */
  close(): Promise<void>;
}

// Proxies close connections idle for about a minute; a comment or ping every 15 s keeps them open and finds
// dead WebSocket peers within 30 s.
const HEARTBEAT_MS = 15_000;
const REPLAY_PAGE = 16;

/**
 * The live view's connections in one API process: one Redis subscription for all of them (lib/live-subscriber),
 * a connection cap (LIVE_MAX_CONNECTIONS), one heartbeat timer, and the metrics. Shutting down closes every
 * connection with a reason and never waits longer than the grace period.
 */
export function createLiveHub(deps: LiveHubDeps): LiveHub {
  const { config, logger } = deps;
  const log = logger.child({ scope: 'live' });
  const metrics = createLiveMetrics(deps.registry);
  const subscriber: LiveSubscriber = createLiveSubscriber({
    redis: deps.redis,
    config,
    streamKey: config.streamKey,
    logger,
    registry: deps.registry,
  });
  const connections = new Set<LiveConnection>();
  /** Ends of connections that had a socket, awaited on shutdown. */
  const ended = new Map<LiveConnection, () => void>();
  let closing: Promise<void> | undefined;

  new Gauge({
    name: 'floodgate_live_buffered_bytes',
    help: 'Bytes the API process holds for its live clients (written and unread, or held while a connection starts): at most LIVE_MAX_BUFFER_BYTES and one batch per connection.',
    registers: [deps.registry],
    collect() {
      let bytes = 0;
      for (const connection of connections) bytes += connection.buffered();
      this.set(bytes);
    },
  });

  const heartbeat = setInterval(() => {
    for (const connection of connections) connection.heartbeat();
  }, HEARTBEAT_MS);
  heartbeat.unref();

  function onEnd(connection: LiveConnection, protocol: LiveProtocol | undefined): void {
    connections.delete(connection);
    subscriber.leave(connection.tenant, connection.deliver);
    ended.get(connection)?.();
    ended.delete(connection);
    if (protocol) metrics.connections.dec({ protocol });
  }

  /** Replays the resume log after `cursor`; says so first when the log no longer reaches back to it. */
  async function replay(connection: LiveConnection, sink: Sink, cursor: Cursor): Promise<void> {
    const startId = cursorEntryId(cursor);
    let from = startId;
    let first = true;
    for (;;) {
      const page = await subscriber.readLog(connection.tenant, from, first, REPLAY_PAGE);
      if (first) {
        // The log is trimmed from its head: if the cursor's own entry is still there, nothing after it is gone.
        const complete = page[0]?.id === startId;
        metrics.resumes.inc({ outcome: complete ? 'resumed' : 'gap' });
        if (!complete) sink.sendGap('the Last-Event-ID is older than the resume window: events after it may be missing');
      }
      for (const batch of page) {
        await connection.replay(batch, first && batch.id === startId ? cursor.index : -1);
        first = false;
        if (connection.closed) return;
      }
      first = false;
      if (page.length < REPLAY_PAGE) return;
      from = page.at(-1)!.id;
    }
  }

  return {
    async open(tenant, filter, resumeAfter) {
      if (closing) throw apiError('not_ready', 'the server is shutting down', undefined, { 'Retry-After': '1' });
      if (connections.size >= config.liveMaxConnections) {
        throw apiError('overloaded', `this server holds its maximum of ${config.liveMaxConnections} live connections`, undefined, {
          'Retry-After': '5',
        });
      }
      const connection = createLiveConnection({ tenant, filter, maxBufferBytes: config.liveMaxBufferBytes, metrics, onEnd });
      connections.add(connection);
      try {
        await subscriber.join(tenant, connection.deliver);
      } catch (err) {
        connection.close('error', 'no subscription');
        log.error({ err, tenant }, 'could not subscribe to a live channel');
        throw apiError('dependency_unavailable', 'the live view cannot reach Redis right now', undefined, { 'Retry-After': '1' });
      }
      return {
        async start(sink) {
          // Closed while its socket was being set up (shutdown): attach() tells the client why and ends it.
          if (connection.closed) return connection.attach(sink);
          metrics.connections.inc({ protocol: sink.protocol });
          connection.attach(sink);
          try {
            if (resumeAfter) await replay(connection, sink, resumeAfter);
            connection.goLive();
          } catch (err) {
            log.error({ err, tenant }, 'could not replay the resume log');
            connection.close('error', 'the resume log could not be read');
          }
        },
        abort() {
          connection.close('error', 'the connection could not be set up');
        },
      };
    },
    close() {
      closing ??= (async () => {
        clearInterval(heartbeat);
        const waits = [...connections].map((c) => new Promise<void>((resolve) => ended.set(c, resolve)));
        for (const connection of connections)
          connection.close('server_shutdown', 'the server is shutting down; reconnect with Last-Event-ID to resume');
        let timer: NodeJS.Timeout | undefined;
        await Promise.race([Promise.all(waits), new Promise((resolve) => (timer = setTimeout(resolve, CLOSE_GRACE_MS + 500)))]);
        clearTimeout(timer);
        // E.g. a slow consumer closed just before, whose longer grace period the shutdown does not wait for.
        for (const connection of connections) connection.terminate();
        await subscriber.close();
      })();
      return closing;
    },
  };
}
