// A fault-injecting HTTP proxy for the client SDK's tests: it sits between the SDK and a real Floodgate and,
// request by request, forwards, answers in Floodgate's place, or cuts the connection — before or after the
// server has accepted the batch — and records what each request carried.
import { once } from 'node:events';
import { createServer, type IncomingMessage } from 'node:http';
import type { AddressInfo } from 'node:net';
import { gunzipSync } from 'node:zlib';

/** What the proxy does with one request. */
export type Fault =
  | 'forward'
  /** Forward, wait for Floodgate's answer, then reset the client's connection: accepted, but the client never hears it. */
  | 'reset-after-forward'
  /** Reset the connection without forwarding. */
  | 'reset'
  /** Answer this status (with Retry-After seconds when given) instead of Floodgate, after forwarding when `forwarded`. */
  | { status: number; retryAfter?: string; forwarded?: boolean; body?: string };

/** One request as the proxy saw it. */
export interface SeenRequest {
  readonly at: number;
  readonly priority: string | undefined;
  readonly gzip: boolean;
  readonly keys: string[];
  readonly sentAt: string | undefined;
  readonly fault: Fault;
}

export interface FaultProxy {
  readonly url: string;
  readonly seen: SeenRequest[];
  /** Decides the fault of the n-th request (0-based); defaults to forwarding everything. */
  setFaults(decide: (n: number) => Fault): void;
  close(): Promise<void>;
}

const FORWARDED_HEADERS = ['content-type', 'content-encoding', 'authorization', 'x-api-key', 'x-priority', 'idempotency-key'];

async function readAll(req: IncomingMessage): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const chunk of req) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks);
}

function describe(body: Buffer, gzip: boolean): { keys: string[]; sentAt: string | undefined } {
  try {
    const parsed = JSON.parse((gzip ? gunzipSync(body) : body).toString()) as {
      events?: Array<{ idempotency_key?: string }>;
      sent_at?: string;
    };
    return { keys: (parsed.events ?? []).map((e) => e.idempotency_key ?? ''), sentAt: parsed.sent_at };
  } catch {
    return { keys: [], sentAt: undefined };
  }
}

/** Starts a proxy on an ephemeral port in front of `upstream` (a Floodgate base URL). */
export async function startFaultProxy(upstream: string): Promise<FaultProxy> {
  let decide: (n: number) => Fault = () => 'forward';
  const seen: SeenRequest[] = [];
  let n = 0;
  const server = createServer((req, res) => {
    void (async () => {
      const body = await readAll(req);
      const fault = decide(n++);
      const gzip = req.headers['content-encoding'] === 'gzip';
      seen.push({ at: Date.now(), priority: req.headers['x-priority'] as string | undefined, gzip, ...describe(body, gzip), fault });
      if (fault === 'reset') return req.socket.resetAndDestroy();
      const forwarded = fault === 'forward' || fault === 'reset-after-forward' || fault.forwarded;
      let answer: Response | undefined;
      let answerBody = '';
      if (forwarded) {
        const headers = Object.fromEntries(
          FORWARDED_HEADERS.flatMap((h) => (typeof req.headers[h] === 'string' ? [[h, req.headers[h]]] : [])),
        );
        answer = await fetch(`${upstream}${req.url}`, { method: req.method, headers, body: req.method === 'POST' ? body : undefined });
        answerBody = await answer.text();
      }
      if (fault === 'reset-after-forward') return req.socket.resetAndDestroy();
      if (fault === 'forward') {
        const retryAfter = answer!.headers.get('retry-after');
        res.writeHead(answer!.status, {
          'content-type': answer!.headers.get('content-type') ?? 'application/json',
          ...(retryAfter ? { 'retry-after': retryAfter } : {}),
        });
        return res.end(answerBody);
      }
      res.writeHead(fault.status, { 'content-type': 'application/json', ...(fault.retryAfter ? { 'retry-after': fault.retryAfter } : {}) });
      res.end(
        fault.body ??
          JSON.stringify({
            error: fault.status === 503 ? 'overloaded' : `http_${fault.status}`,
            message: 'injected by the test proxy',
            request_id: 'proxy',
          }),
      );
    })().catch(() => req.socket.destroy());
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}`,
    seen,
    setFaults(d) {
      decide = d;
      n = 0;
    },
    async close() {
      server.closeAllConnections();
      await new Promise<void>((r) => server.close(() => r()));
    },
  };
}
