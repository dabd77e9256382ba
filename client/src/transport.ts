// One attempt to deliver one batch: the body (`{"events": [...], "sent_at": ...}`, gzipped above a size), the
// headers (key, class), and what the answer means: accepted (with per-event rejections), transient, refused.
import { promisify } from 'node:util';
import { gzip } from 'node:zlib';
import type { Priority } from './options.js';
import { classifyStatus, parseRetryAfter } from './retry.js';

const gzipAsync = promisify(gzip);

/** A field error of a rejected event, as the server reports it. */
export interface FieldError {
  readonly path: string;
  readonly message: string;
}

/** What one attempt came to. */
export type Outcome =
  | { kind: 'accepted'; status: number; ids: readonly string[]; rejected: ReadonlyArray<{ index: number; errors: readonly FieldError[] }> }
  | { kind: 'transient'; status: number | null; reason: string; retryAfterMs: number | null }
  | {
      kind: 'refused';
      status: number;
      reason: string;
      message: string;
      rejected: ReadonlyArray<{ index: number; errors: readonly FieldError[] }>;
    };

/** One request: where, with which key and class, and the events' JSON. */
export interface Attempt {
  readonly url: string;
  readonly key: string;
  readonly priority: Priority;
  readonly eventsJson: readonly string[];
  readonly gzipAboveBytes: number;
  readonly timeoutMs: number;
  /** Aborts the attempt (the client closing at its deadline). */
  readonly signal: AbortSignal;
  readonly now: () => number;
  readonly fetch: typeof fetch;
}

const USER_AGENT = 'floodgate-client/0.1 (node)';

/** The request body; `sent_at` is this attempt's send time by the client's clock (the server corrects skew with it). */
export function batchBody(eventsJson: readonly string[], sentAt: number): string {
  return `{"events":[${eventsJson.join(',')}],"sent_at":"${new Date(sentAt).toISOString()}"}`;
}

/** Sends one batch and classifies the answer; never throws (network errors are transient outcomes). */
export async function sendBatch(a: Attempt): Promise<Outcome & { bytes: number; gzip: boolean }> {
  const text = batchBody(a.eventsJson, a.now());
  const plain = Buffer.from(text);
  const compress = plain.length > a.gzipAboveBytes;
  const body = compress ? await gzipAsync(plain) : plain;
  const wire = { bytes: body.length, gzip: compress };
  const headers: Record<string, string> = {
    'content-type': 'application/json',
    authorization: `Bearer ${a.key}`,
    'x-priority': a.priority,
    'user-agent': USER_AGENT,
  };
  if (compress) headers['content-encoding'] = 'gzip';
  // One controller per attempt for its timeout and the client's abort (AbortSignal.any on a long-lived signal
  // kept every attempt's signal alive in some Node 20 releases).
  const controller = new AbortController();
  const onAbort = () => controller.abort(a.signal.reason);
  a.signal.addEventListener('abort', onAbort, { once: true });
  const timer = setTimeout(() => controller.abort(new DOMException('the request timed out', 'TimeoutError')), a.timeoutMs);
  let res: Response;
  let answer: string;
  try {
    if (a.signal.aborted) onAbort();
    res = await a.fetch(a.url, { method: 'POST', headers, body, signal: controller.signal });
    // Read the whole answer: the connection is only reused once its body has been consumed.
    answer = await res.text();
  } catch (err) {
    return { kind: 'transient', status: null, reason: networkReason(err), retryAfterMs: null, ...wire };
  } finally {
    clearTimeout(timer);
    a.signal.removeEventListener('abort', onAbort);
  }
  const parsed = parseJsonObject(answer);
  const kind = classifyStatus(res.status);
  if (kind === 'accepted') {
    // A 2xx is an acceptance even if a proxy mangled its body: nothing to retry, no rejections known.
    const ids = Array.isArray(parsed?.ids) ? (parsed.ids as string[]) : [];
    return { kind, status: res.status, ids, rejected: rejections(parsed?.rejected), ...wire };
  }
  const reason = typeof parsed?.error === 'string' ? parsed.error : `http_${res.status}`;
  if (kind === 'transient')
    return { kind, status: res.status, reason, retryAfterMs: parseRetryAfter(res.headers.get('retry-after'), a.now()), ...wire };
  const details = parsed?.details as { rejected?: unknown } | undefined;
  const message = typeof parsed?.message === 'string' ? parsed.message : answer.slice(0, 200);
  return { kind, status: res.status, reason, message, rejected: rejections(details?.rejected), ...wire };
}

function parseJsonObject(text: string): Record<string, unknown> | null {
  try {
    const value: unknown = JSON.parse(text);
    return typeof value === 'object' && value !== null && !Array.isArray(value) ? (value as Record<string, unknown>) : null;
  } catch {
    return null;
  }
}

function rejections(value: unknown): Array<{ index: number; errors: FieldError[] }> {
  if (!Array.isArray(value)) return [];
  return value.flatMap((r: { index?: unknown; errors?: unknown }) =>
    typeof r?.index === 'number' ? [{ index: r.index, errors: Array.isArray(r.errors) ? (r.errors as FieldError[]) : [] }] : [],
  );
}

/** A short code for a failed fetch: `timeout`, `aborted`, or the socket error's code (ECONNRESET…). */
function networkReason(err: unknown): string {
  const e = err as { name?: string; code?: string; cause?: { code?: string; name?: string } };
  if (e?.name === 'TimeoutError' || e?.cause?.name === 'TimeoutError') return 'timeout';
  if (e?.name === 'AbortError') return 'aborted';
  return e?.cause?.code ?? e?.code ?? 'network_error';
}
