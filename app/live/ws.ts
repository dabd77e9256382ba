import { WebSocketServer, type WebSocket } from 'ws';
import type { Sink } from './connection.js';
import { wsMessage } from './frames.js';
import type { CloseReason } from './metrics.js';
import { closeGraceMs } from './sse.js';

/** WebSocket close codes (RFC 6455 §7.4.1) the live view ends a connection with, by reason. */
export const WS_CLOSE_CODES: Readonly<Record<CloseReason, number>> = {
  client_closed: 1000,
  /** 1008 policy violation: the client did not keep up with its stream. */
  slow_consumer: 1008,
  /** 1001 going away: the server is shutting down; reconnect (to another process) and resume. */
  server_shutdown: 1001,
  heartbeat_timeout: 1001,
  /** 1011 internal error */
  error: 1011,
};

/** The upgrade side of the live view: no server of its own, no compression, clients send nothing but control frames. */
export function createLiveWebSocketServer(): WebSocketServer {
  return new WebSocketServer({ noServer: true, perMessageDeflate: false, maxPayload: 4096, clientTracking: false });
}

/**
 * A WebSocket as a live sink: one text message `{"kind":"events","events":[{"id":<cursor>,"event":{…}},…]}` per
 * delivered batch (the last id is what `last_event_id` resumes after), `{"kind":"gap",…}` when a resume cannot be
 * complete, and `{"kind":"close","reason",…}` followed by a close frame with the reason's code when the server
 * ends it. Pings find dead peers: one unanswered by the next heartbeat ends the connection.
 */
export function createWsSink(ws: WebSocket): Sink {
  let answered = true;
  ws.on('pong', () => (answered = true));
  // Socket errors end in 'close', which is what the connection listens to.
  ws.on('error', () => {});
  const open = () => ws.readyState === ws.OPEN;
  return {
    protocol: 'ws',
    buffered: () => ws.bufferedAmount,
    send(events) {
      // A Buffer goes out as a binary frame unless told otherwise: the message is JSON text.
      if (open()) ws.send(wsMessage(events), { binary: false });
    },
    sendGap(message) {
      if (open()) ws.send(JSON.stringify({ kind: 'gap', message }));
    },
    heartbeat() {
      if (!open()) return false;
      if (!answered) return false;
      answered = false;
      ws.ping();
      return true;
    },
    close(reason, message) {
      if (!open()) return;
      ws.send(JSON.stringify({ kind: 'close', reason, message }));
      ws.close(WS_CLOSE_CODES[reason], reason);
      const timer = setTimeout(() => ws.terminate(), closeGraceMs(reason));
      ws.once('close', () => clearTimeout(timer));
    },
    onEnd(callback) {
      ws.once('close', callback);
    },
    terminate() {
      ws.terminate();
    },
  };
}
