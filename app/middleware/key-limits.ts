import type { Socket } from 'node:net';
import type { Middleware } from 'koa';
import type { Config } from '../../lib/config.js';
import { apiError } from '../../lib/errors.js';
import type { AuthenticatedState } from '../state.js';

/** What one key holds in this process: open requests and connections. */
interface Held {
  requests: number;
  connections: number;
}

/**
 * Caps what one API key may hold in this process: MAX_IN_FLIGHT_PER_KEY open requests (from authentication to
 * the answer, the wait for the body included) and MAX_CONNECTIONS_PER_KEY connections. Without them one key
 * could hold every socket the process can serve, slowly uploading or stalled, while other tenants wait.
 *
 * A connection belongs to the key of its latest request (HTTP/1.1 keep-alive lets one socket carry several keys;
 * the latest is the one that holds it now). The refusal closes the connection, so a key past its cap loses the
 * extra sockets instead of keeping them idle. Per request: one WeakMap lookup and two counter updates; a listener
 * is added once per connection.
 */
export function keyLimits(config: Config): Middleware<AuthenticatedState> {
  const held = new Map<number, Held>();
  const owners = new WeakMap<Socket, { keyId: number }>();
  const maxRequests = config.maxInFlightPerKey;
  const maxConnections = config.maxConnectionsPerKey;

  const of = (keyId: number): Held => {
    let h = held.get(keyId);
    if (!h) held.set(keyId, (h = { requests: 0, connections: 0 }));
    return h;
  };
  const release = (keyId: number, h: Held) => {
    if (h.requests === 0 && h.connections === 0) held.delete(keyId);
  };

  /** Moves the socket to `keyId`, unless that key already holds its cap of connections. */
  function claim(socket: Socket, keyId: number, h: Held): boolean {
    const owner = owners.get(socket);
    if (owner?.keyId === keyId) return true;
    if (maxConnections > 0 && h.connections >= maxConnections) return false;
    h.connections++;
    if (owner) {
      const previous = held.get(owner.keyId);
      if (previous) {
        previous.connections--;
        release(owner.keyId, previous);
      }
      owner.keyId = keyId;
      return true;
    }
    const record = { keyId };
    owners.set(socket, record);
    socket.once('close', () => {
      const h = held.get(record.keyId);
      if (!h) return;
      h.connections--;
      release(record.keyId, h);
    });
    return true;
  }

  return async (ctx, next) => {
    const { keyId } = ctx.state.grant;
    const h = of(keyId);
    if (!claim(ctx.req.socket, keyId, h)) {
      release(keyId, h);
      throw apiError(
        'too_many_connections',
        `this API key already holds ${maxConnections} connections to this server; reuse them`,
        undefined,
        {
          Connection: 'close',
          'Retry-After': '1',
        },
      );
    }
    if (maxRequests > 0 && h.requests >= maxRequests) {
      throw apiError('too_many_in_flight', `this API key already has ${maxRequests} requests open on this server`, undefined, {
        'Retry-After': '1',
      });
    }
    h.requests++;
    try {
      await next();
    } finally {
      h.requests--;
      release(keyId, h);
    }
  };
}
