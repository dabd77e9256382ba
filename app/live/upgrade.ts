import { ServerResponse, type IncomingMessage, type Server } from 'node:http';
import type { Duplex } from 'node:stream';
import type { WebSocket, WebSocketServer } from 'ws';

/** The path whose WebSocket upgrades the live view takes. */
export const LIVE_PATH = '/v1/events/live';

interface PendingUpgrade {
  readonly socket: Duplex;
  readonly head: Buffer;
  readonly res: ServerResponse;
}

/** Upgrade requests routed here and not yet taken over, with what the handshake needs (typed, no mark on the request). */
const pendingUpgrades = new WeakMap<IncomingMessage, PendingUpgrade>();

function isLiveWebSocket(req: IncomingMessage): boolean {
  if (req.method !== 'GET') return false;
  const path = (req.url ?? '').split('?', 1)[0];
  const upgrade = String(req.headers.upgrade ?? '')
    .toLowerCase()
    .split(',')
    .map((s) => s.trim());
  return path === LIVE_PATH && upgrade.includes('websocket');
}

/**
 * Re-reads an upgrade request that is not for the live view as a plain HTTP request on the same socket, as Node
 * did before any 'upgrade' listener existed (a client's `Upgrade: h2c` was ignored, not refused): the request
 * head is rebuilt from its raw headers without the upgrade, put back in front of the unread bytes, and the
 * socket handed to the server again.
 */
function asPlainRequest(server: Server, req: IncomingMessage, socket: Duplex, head: Buffer): void {
  const lines = [`${req.method} ${req.url} HTTP/${req.httpVersion}`];
  for (let i = 0; i < req.rawHeaders.length; i += 2) {
    const name = req.rawHeaders[i]!;
    let value = req.rawHeaders[i + 1]!;
    const lower = name.toLowerCase();
    if (lower === 'upgrade') continue;
    if (lower === 'connection') {
      value = value
        .split(',')
        .map((t) => t.trim())
        .filter((t) => t !== '' && t.toLowerCase() !== 'upgrade')
        .join(', ');
      if (value === '') continue;
    }
    lines.push(`${name}: ${value}`);
  }
  // The parser read the head as latin1 (raw bytes), so writing it back as latin1 restores the same bytes.
  socket.unshift(Buffer.concat([Buffer.from(`${lines.join('\r\n')}\r\n\r\n`, 'latin1'), head]));
  server.emit('connection', socket);
}

/**
 * Sends WebSocket upgrades of the live path through the Koa application like any request (request id,
 * metrics, authentication, error answers from the catalogue), on a response bound to the raw socket; the live
 * route then takes the socket over with acceptWebSocket(). Any other upgrade request is served as plain HTTP.
 */
export function routeUpgrades(server: Server, handle: (req: IncomingMessage, res: ServerResponse) => void): void {
  server.on('upgrade', (req: IncomingMessage, socket: Duplex, head: Buffer) => {
    if (!isLiveWebSocket(req)) return asPlainRequest(server, req, socket, head);
    socket.on('error', () => socket.destroy());
    const res = new ServerResponse(req);
    // No HTTP parser reads this socket any more: an error answer is the last thing on it.
    res.shouldKeepAlive = false;
    res.assignSocket(socket as import('node:net').Socket);
    res.once('finish', () => socket.end());
    pendingUpgrades.set(req, { socket, head, res });
    handle(req, res);
  });
}

/** Whether this request is a WebSocket upgrade routed here by routeUpgrades(). */
export function isUpgrade(req: IncomingMessage): boolean {
  return pendingUpgrades.has(req);
}

/**
 * Completes the WebSocket handshake of an upgrade request: `onOpen` gets the socket, or `onFail` runs when the
 * handshake fails or the client leaves first (ws then answers or drops the socket itself).
 */
export function acceptWebSocket(req: IncomingMessage, wss: WebSocketServer, onOpen: (ws: WebSocket) => void, onFail: () => void): void {
  const pending = pendingUpgrades.get(req);
  if (!pending) throw new Error('not an upgrade request');
  pendingUpgrades.delete(req);
  const { socket, head, res } = pending;
  res.detachSocket(socket as import('node:net').Socket);
  let opened = false;
  socket.once('close', () => {
    if (!opened) onFail();
  });
  wss.handleUpgrade(req, socket, head, (ws) => {
    opened = true;
    onOpen(ws);
  });
}
