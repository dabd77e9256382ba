import { compareEntryIds, type LiveBatch, type LiveEvent } from '../../lib/live-channel.js';
import type { TypeFilter } from './filter.js';
import type { CloseReason, LiveMetrics, LiveProtocol } from './metrics.js';

/** One client socket as the live view writes to it: SSE (sse.ts) or WebSocket (ws.ts). */
export interface Sink {
  readonly protocol: LiveProtocol;
  /** Bytes written and not yet taken by the client's socket: what a slow consumer grows. */
  buffered(): number;
  /** Writes events (one write per call). */
  send(events: readonly LiveEvent[]): void;
  /** Tells the client that events between its Last-Event-ID and what follows may be missing. */
  sendGap(message: string): void;
  /** Keeps idle connections open through proxies and finds dead peers; false when the peer is gone. */
  heartbeat(): boolean;
  /** Says why (SSE close event, WebSocket close code and reason), then ends; destroys it after a grace period. */
  close(reason: CloseReason, message: string): void;
  /** Called once when the socket is gone, whoever closed it. */
  onEnd(callback: () => void): void;
  /** Drops the socket at once (a close whose grace period the shutdown cannot wait for). */
  terminate(): void;
}

/** One live connection: its filter, its bounded backlog while it starts, and how it ends. */
export interface LiveConnection {
  readonly tenant: string;
  /** The subscriber's listener: filters a batch and writes it, or holds it until the replay is done. */
  readonly deliver: (batch: LiveBatch) => void;
  /** Writes one batch of the resume log (events after `afterIndex` of it); waits while the client is behind. */
  replay(batch: LiveBatch, afterIndex: number): Promise<void>;
  /** Gives the connection its socket; events are held until goLive(). */
  attach(sink: Sink): void;
  /** Writes what arrived meanwhile (skipping what the replay wrote), then delivers directly. */
  goLive(): void;
  close(reason: CloseReason, message: string): void;
  readonly closed: boolean;
  heartbeat(): void;
  /** Drops the socket now, closed or not. */
  terminate(): void;
  /** Bytes this connection holds for its client: written and unread, or held while it starts. */
  buffered(): number;
}

/** What a connection is given. */
export interface ConnectionOptions {
  readonly tenant: string;
  readonly filter: TypeFilter;
  /** The most a client may lag, in bytes, before it is closed as a slow consumer (LIVE_MAX_BUFFER_BYTES). */
  readonly maxBufferBytes: number;
  readonly metrics: LiveMetrics;
  /** Called once when the connection has ended (after its sink is gone, or when it never got one); closes are counted already. */
  readonly onEnd: (connection: LiveConnection, protocol: LiveProtocol | undefined) => void;
}

const ROOM_POLL_MS = 20;
// During a replay the client may lag up to the buffer limit and is waited for this long each time before it
// counts as a slow consumer; live delivery does not wait at all.
const REPLAY_PATIENCE_MS = 10_000;

/** Bytes-ish size of events as held (JSON text length): what the backlog bound counts. */
function sizeOf(events: readonly LiveEvent[]): number {
  let n = 0;
  for (const e of events) n += e.json.length + e.cursor.length + 16;
  return n;
}

/**
 * Creates a live connection. Until goLive() it holds the batches the subscription brings (while the resume
 * log is replayed, or while the socket is being set up), within maxBufferBytes; after it, each batch is
 * filtered and written at once, and a client whose unread bytes pass maxBufferBytes is closed as a slow
 * consumer: the process never buffers more than that per connection.
 */
export function createLiveConnection(options: ConnectionOptions): LiveConnection {
  const { tenant, filter, maxBufferBytes, metrics } = options;
  let sink: Sink | undefined;
  let held: { id: string; events: readonly LiveEvent[] }[] | null = [];
  let heldBytes = 0;
  /** The newest batch written: held batches at or before it were replayed already. */
  let lastId = '0-0';
  let ended = false;
  let closedReason: CloseReason | undefined;

  const select = (events: readonly LiveEvent[]) => (filter.all ? events : events.filter((e) => filter.matches(e.type)));

  /** Writes events; a live write (not a replay, which waits instead) closes a client that lags too far. */
  function write(events: readonly LiveEvent[], live = true): void {
    if (events.length === 0 || !sink) return;
    sink.send(events);
    metrics.eventsSent.inc({ protocol: sink.protocol }, events.length);
    if (live && sink.buffered() > maxBufferBytes) {
      connection.close('slow_consumer', `the client read too slowly: more than ${maxBufferBytes} bytes were waiting`);
    }
  }

  function end(reason: CloseReason): void {
    if (ended) return;
    ended = true;
    held = null;
    // A close the server decided was counted when it decided (its socket may take the grace period to go).
    if (sink && !closedReason) metrics.closes.inc({ protocol: sink.protocol, reason });
    options.onEnd(connection, sink?.protocol);
  }

  const roomLeft = () => !sink || sink.buffered() <= maxBufferBytes / 2;

  async function waitForRoom(): Promise<boolean> {
    const deadline = Date.now() + REPLAY_PATIENCE_MS;
    while (!roomLeft() && !connection.closed) {
      if (Date.now() > deadline) return false;
      await new Promise((resolve) => setTimeout(resolve, ROOM_POLL_MS));
    }
    return !connection.closed;
  }

  const connection: LiveConnection = {
    tenant,
    get closed() {
      return closedReason !== undefined || ended;
    },
    deliver(batch) {
      if (connection.closed) return;
      const events = select(batch.events);
      if (held) {
        held.push({ id: batch.id, events });
        heldBytes += sizeOf(events);
        if (heldBytes > maxBufferBytes)
          connection.close('slow_consumer', `more than ${maxBufferBytes} bytes of events arrived while the connection was starting`);
        return;
      }
      lastId = batch.id;
      write(events);
    },
    attach(s) {
      sink = s;
      s.onEnd(() => end('client_closed'));
      // Closed while the socket was being set up (shutdown, backlog): say so on the socket now.
      if (closedReason) {
        metrics.closes.inc({ protocol: s.protocol, reason: closedReason });
        s.close(closedReason, 'the connection was closed while it started');
      }
    },
    async replay(batch, afterIndex) {
      if (connection.closed) return;
      lastId = batch.id;
      write(select(batch.events.slice(afterIndex + 1)), false);
      if (!(await waitForRoom()) && !connection.closed) {
        connection.close('slow_consumer', 'the client did not read its resumed events');
      }
    },
    goLive() {
      const backlog = held ?? [];
      held = null;
      heldBytes = 0;
      for (const batch of backlog) {
        if (connection.closed) return;
        if (compareEntryIds(batch.id, lastId) <= 0) continue;
        lastId = batch.id;
        write(batch.events);
      }
    },
    close(reason, message) {
      if (connection.closed) return;
      closedReason = reason;
      held = null;
      if (!sink) return end(reason);
      metrics.closes.inc({ protocol: sink.protocol, reason });
      sink.close(reason, message);
    },
    buffered: () => heldBytes + (sink?.buffered() ?? 0),
    terminate() {
      if (sink) sink.terminate();
      else end(closedReason ?? 'error');
    },
    heartbeat() {
      if (!sink || connection.closed) return;
      if (!sink.heartbeat()) connection.close('heartbeat_timeout', 'no answer to the previous ping');
      else if (sink.buffered() > maxBufferBytes) connection.close('slow_consumer', `more than ${maxBufferBytes} bytes were waiting`);
    },
  };
  return connection;
}
