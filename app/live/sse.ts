import type { ServerResponse } from 'node:http';
import type { Sink } from './connection.js';
import { sseFrames } from './frames.js';
import type { CloseReason } from './metrics.js';

/** How long a closing connection may take to drain its last bytes before its socket is destroyed (shutdown). */
export const CLOSE_GRACE_MS = 2000;
// A slow consumer that still reads gets longer to reach the close message; what it holds meanwhile is bounded.
const SLOW_CLOSE_GRACE_MS = 10_000;

/** The grace period of a close for `reason`. */
export function closeGraceMs(reason: CloseReason): number {
  return reason === 'slow_consumer' ? SLOW_CLOSE_GRACE_MS : CLOSE_GRACE_MS;
}
// EventSource reconnects this long after the stream ends (e.g. after a shutdown), sending Last-Event-ID.
const RETRY_MS = 2000;

/**
 * Server-Sent Events on a response: `id: <cursor>` and `data: <event JSON>` per event (EventSource sends the last
 * id back as Last-Event-ID when it reconnects), `event: gap` when a resume cannot be complete, `event: close`
 * with the reason before the server ends the stream, and a comment line as heartbeat.
 */
export function createSseSink(res: ServerResponse): Sink {
  res.writeHead(200, {
    'Content-Type': 'text/event-stream; charset=utf-8',
    'Cache-Control': 'no-cache, no-transform',
    Connection: 'keep-alive',
    // Proxies such as nginx would otherwise buffer the stream.
    'X-Accel-Buffering': 'no',
  });
  res.write(`retry: ${RETRY_MS}\n\n`);
  const open = () => !res.writableEnded && !res.destroyed;
  return {
    protocol: 'sse',
    buffered: () => res.writableLength,
    send(events) {
      if (open()) res.write(sseFrames(events));
    },
    sendGap(message) {
      if (open()) res.write(`event: gap\ndata: ${JSON.stringify({ message })}\n\n`);
    },
    heartbeat() {
      if (!open()) return false;
      res.write(': ping\n\n');
      return true;
    },
    close(reason, message) {
      if (!open()) return;
      res.end(`event: close\ndata: ${JSON.stringify({ reason, message })}\n\n`);
      // A client that does not read never lets the end flush: its socket goes after the grace period.
      const timer = setTimeout(() => res.destroy(), closeGraceMs(reason));
      res.once('close', () => clearTimeout(timer));
    },
    onEnd(callback) {
      if (res.destroyed) queueMicrotask(callback);
      else res.once('close', callback);
    },
    terminate() {
      res.destroy();
    },
  };
}
