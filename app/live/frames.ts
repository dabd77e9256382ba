import type { LiveEvent } from '../../lib/live-channel.js';

// Every unfiltered connection of a tenant is sent the very same events array of a batch: its wire form is built
// and encoded once and the same bytes are written to each socket (a filtered selection is a fresh array, built
// for its connection alone). Entries go when the batch is collected.
const sseCache = new WeakMap<readonly LiveEvent[], Buffer>();
const wsCache = new WeakMap<readonly LiveEvent[], Buffer>();

function cached(cache: WeakMap<readonly LiveEvent[], Buffer>, events: readonly LiveEvent[], build: () => string): Buffer {
  let bytes = cache.get(events);
  if (!bytes) {
    bytes = Buffer.from(build());
    cache.set(events, bytes);
  }
  return bytes;
}

/** Server-Sent Events frames of `events`: `id: <cursor>` and `data: <event JSON>` each. */
export function sseFrames(events: readonly LiveEvent[]): Buffer {
  return cached(sseCache, events, () => {
    let frames = '';
    for (const e of events) frames += `id: ${e.cursor}\ndata: ${e.json}\n\n`;
    return frames;
  });
}

/** One WebSocket text message carrying `events`: `{"kind":"events","events":[{"id":<cursor>,"event":{…}},…]}`. */
export function wsMessage(events: readonly LiveEvent[]): Buffer {
  return cached(wsCache, events, () => {
    let items = '';
    for (const e of events) items += `${items ? ',' : ''}{"id":"${e.cursor}","event":${e.json}}`;
    return `{"kind":"events","events":[${items}]}`;
  });
}
