import { promisify } from 'node:util';
import { gzip as gzipCallback } from 'node:zlib';
import type { StatsFormat } from '../lib/stats-render.js';

const gzip = promisify(gzipCallback);

/** Below this many bytes an answer is sent as is: gzip would save less than it costs. */
const GZIP_MIN_BYTES = 1024;

/** One read's answer, in every encoding a request asks for: each rendered (and compressed) once, then shared. */
export interface StatsAnswer {
  /** The body in `format`, gzipped when `gzipped` and the body is large enough to pay; says which it is. */
  body(format: StatsFormat, gzipped: boolean): Promise<{ body: Buffer; gzipped: boolean }>;
}

/** See StatsAnswer; `render` writes the answer in one format. */
export function createAnswer(render: (format: StatsFormat) => string): StatsAnswer {
  const plain = new Map<StatsFormat, Buffer>();
  const compressed = new Map<StatsFormat, Promise<Buffer>>();
  const rendered = (format: StatsFormat): Buffer => {
    let body = plain.get(format);
    if (!body) plain.set(format, (body = Buffer.from(render(format))));
    return body;
  };
  return {
    async body(format, gzipped) {
      const body = rendered(format);
      if (!gzipped || body.length < GZIP_MIN_BYTES) return { body, gzipped: false };
      let packed = compressed.get(format);
      // Level 1: the answers repeat themselves (bucket times, zero points) and compress ~10× even at the fastest level.
      if (!packed) compressed.set(format, (packed = gzip(body, { level: 1 })));
      return { body: await packed, gzipped: true };
    },
  };
}
