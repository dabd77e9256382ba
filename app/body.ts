import type { IncomingMessage } from 'node:http';
import { isUtf8 } from 'node:buffer';
import { gunzip } from 'node:zlib';
import { promisify } from 'node:util';
import { apiError } from '../lib/errors.js';
import type { DataTextLimits } from '../lib/data-text.js';
import { parseEventBody } from '../lib/event-body.js';

const gunzipAsync = promisify(gunzip);

export interface BodyLimits {
  readonly maxBodyBytes: number;
  readonly maxDecompressedBytes: number;
  /** The whole body must arrive within this many ms of the start of reading (BODY_TIMEOUT_MS). */
  readonly bodyTimeoutMs: number;
}

const JSON_CONTENT_TYPE = /^application\/json\s*(;|$)/i;
const CHARSET_PARAMETER = /;\s*charset\s*=\s*("?)([^";\s]*)\1/i;
// JSON is UTF-8 (RFC 8259 §8.1); `utf8` is the spelling many clients send for it.
const UTF8_NAMES = new Set(['utf-8', 'utf8']);

/** Rejects a request before its body is read when its headers already say it cannot be accepted. */
export function checkBodyHeaders(req: IncomingMessage, limits: BodyLimits): 'gzip' | 'identity' {
  const type = req.headers['content-type'] ?? '';
  if (!JSON_CONTENT_TYPE.test(type)) {
    throw apiError('unsupported_media_type', `Content-Type must be application/json, got "${type.slice(0, 100)}"`);
  }
  // A body declared in another charset would be read as UTF-8 and stored wrong (or refused as malformed).
  const charset = CHARSET_PARAMETER.exec(type)?.[2];
  if (charset !== undefined && !UTF8_NAMES.has(charset.toLowerCase())) {
    throw apiError('unsupported_media_type', `the body must be UTF-8 JSON, got charset "${charset.slice(0, 40)}"`);
  }
  const encoding = (req.headers['content-encoding'] ?? 'identity').trim().toLowerCase();
  if (encoding !== 'gzip' && encoding !== 'identity') {
    throw apiError('unsupported_encoding', `Content-Encoding must be gzip or identity, got "${encoding.slice(0, 100)}"`);
  }
  const declared = Number(req.headers['content-length'] ?? 0);
  if (declared > limits.maxBodyBytes) throw tooLarge(limits.maxBodyBytes);
  return encoding;
}

function tooLarge(limit: number) {
  // The rest of the body is not read: closing the connection keeps a huge upload from being drained for nothing.
  return apiError('payload_too_large', `request body exceeds ${limit} bytes`, undefined, { Connection: 'close' });
}

function tooSlow(timeoutMs: number) {
  // The connection is closed: the rest of a body that stalled may never come, and waiting for it holds the socket.
  return apiError('body_timeout', `the request body did not arrive within ${timeoutMs} ms`, undefined, { Connection: 'close' });
}

/** Reads the body within the limits, gunzipping with a cap on the output, and checks it is UTF-8. */
export async function readBody(req: IncomingMessage, encoding: 'gzip' | 'identity', limits: BodyLimits): Promise<Buffer> {
  let body = await collect(req, limits.maxBodyBytes, limits.bodyTimeoutMs);
  if (encoding === 'gzip') {
    try {
      body = await gunzipAsync(body, { maxOutputLength: limits.maxDecompressedBytes });
    } catch (err) {
      if ((err as { code?: string }).code === 'ERR_BUFFER_TOO_LARGE') {
        throw apiError('payload_too_large', `decompressed body exceeds ${limits.maxDecompressedBytes} bytes`);
      }
      throw apiError('unsupported_encoding', 'the body is not a valid gzip stream');
    }
  }
  if (!isUtf8(body)) throw apiError('malformed_json', 'the body is not valid UTF-8');
  return body;
}

/** Status that request metrics give a request whose client went away before it was answered (nginx's 499). */
export const CLIENT_CLOSED_STATUS = 499;

/**
 * The client closed the connection before its body was read: nobody is left to answer, and nothing went wrong on
 * our side, so it is counted as client-closed rather than as an internal error.
 */
export class ClientClosedRequest extends Error {
  constructor(cause: unknown) {
    super('the client closed the connection before sending the whole body', { cause });
    this.name = 'ClientClosedRequest';
  }
}

/**
 * Collects the raw body with plain listeners (cheaper than an async iterator on the hot path), within `limit`
 * bytes and `timeoutMs`: without a deadline a client that stops sending holds its request until Node's own
 * requestTimeout cuts the socket, with no answer it could act on.
 */
function collect(req: IncomingMessage, limit: number, timeoutMs: number): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    const deadline = setTimeout(() => {
      cleanup();
      req.pause();
      reject(tooSlow(timeoutMs));
    }, timeoutMs);
    const onData = (chunk: Buffer) => {
      size += chunk.length;
      if (size > limit) {
        cleanup();
        req.resume();
        reject(tooLarge(limit));
        return;
      }
      chunks.push(chunk);
    };
    const onEnd = () => {
      cleanup();
      resolve(chunks.length === 1 ? chunks[0]! : Buffer.concat(chunks, size));
    };
    // A request stream fails only when its connection does (Node: 'aborted', ECONNRESET) mid-body.
    const onError = (err: Error) => {
      cleanup();
      reject(new ClientClosedRequest(err));
    };
    const cleanup = () => {
      clearTimeout(deadline);
      req.off('data', onData);
      req.off('end', onEnd);
      req.off('error', onError);
    };
    req.on('data', onData);
    req.on('end', onEnd);
    req.on('error', onError);
  });
}

/** A parsed body and the text it was parsed from. */
export interface ParsedBody {
  readonly value: unknown;
  readonly text: string;
  /**
   * Given `dataLimits`, when lib/event-body.ts parsed the body: each event's `data` text, in order (its `data`
   * in `value` is then DATA_AS_TEXT, not the parsed object).
   */
  readonly texts?: (string | undefined)[];
}

/**
 * Parses JSON, turning syntax errors into a 400 that says where; the text is kept for lib/data-text.ts. With
 * `dataLimits`, an ingest body of the common shape is parsed without building its events' `data`
 * (lib/event-body.ts); anything else, and every body it refuses, goes to JSON.parse.
 */
export function parseJson(body: Buffer, dataLimits?: DataTextLimits): ParsedBody {
  if (body.length === 0) throw apiError('malformed_json', 'the body is empty');
  const text = body.toString('utf8');
  const events = dataLimits && parseEventBody(text, dataLimits);
  if (events) return { value: events.value, text, texts: events.texts };
  try {
    return { value: JSON.parse(text), text };
  } catch (err) {
    throw apiError('malformed_json', `the body is not valid JSON: ${(err as Error).message.slice(0, 200)}`);
  }
}
