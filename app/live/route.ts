import type { Middleware } from 'koa';
import { apiError } from '../../lib/errors.js';
import { parseCursor, type Cursor } from '../../lib/live-channel.js';
import type { AuthenticatedState } from '../state.js';
import { parseTypeFilter } from './filter.js';
import type { LiveHub } from './hub.js';
import { createSseSink } from './sse.js';
import { acceptWebSocket, isUpgrade } from './upgrade.js';
import { createLiveWebSocketServer, createWsSink } from './ws.js';

/** Where to resume: the `Last-Event-ID` header (what EventSource sends), else the `last_event_id` parameter. */
function resumeCursor(header: string, query: unknown): Cursor | null {
  if (header.trim() !== '') {
    const cursor = parseCursor(header);
    if (!cursor) throw apiError('invalid_header', 'Last-Event-ID must be an id this stream sent');
    return cursor;
  }
  if (query === undefined || query === '') return null;
  const cursor = typeof query === 'string' ? parseCursor(query) : null;
  if (!cursor) throw apiError('invalid_parameter', 'last_event_id must be an id this stream sent');
  return cursor;
}

/**
 * GET /v1/events/live: the tenant's events as they become durable, as Server-Sent Events, or as WebSocket
 * messages when the request is an upgrade (see upgrade.ts). `type` filters (exact, or a prefix ending in `*`);
 * `Last-Event-ID` / `last_event_id` resumes within the resume window. The subscription is in place before the
 * answer starts, so every event committed after the client sees the stream open reaches it.
 */
export function liveEvents(hub: LiveHub): Middleware<AuthenticatedState> {
  const wss = createLiveWebSocketServer();
  return async (ctx) => {
    const { grant } = ctx.state;
    const filter = parseTypeFilter(ctx.query.type);
    const resumeAfter = resumeCursor(ctx.get('last-event-id'), ctx.query.last_event_id);
    const session = await hub.open(grant.tenant, filter, resumeAfter);
    // From here the socket is the live view's: Koa neither writes a body nor ends the response.
    ctx.respond = false;
    if (isUpgrade(ctx.req)) {
      ctx.status = 101;
      acceptWebSocket(
        ctx.req,
        wss,
        (ws) => void session.start(createWsSink(ws)),
        () => session.abort(),
      );
    } else {
      ctx.status = 200;
      void session.start(createSseSink(ctx.res));
    }
  };
}
