import type { IncomingMessage } from 'node:http';
import type { Middleware } from 'koa';
import type { KeyGrant, Scope } from '../../lib/api-keys.js';
import { apiError, type ApiError, type ErrorCode } from '../../lib/errors.js';
import type { KeyResolver } from '../key-resolver.js';
import { jitteredRetryAfter } from '../retry-after.js';
import { authenticatedEarly, type State } from '../state.js';

const MAX_KEY_LENGTH = 256;
const BEARER = /^Bearer\s+(\S+)\s*$/i;
const AUTHORIZATION = 'authorization';
const X_API_KEY = 'x-api-key';

/** The key a request presents, or why it presents none that can be used. */
export type Presented = { readonly key: string } | { readonly problem: 'missing' | 'malformed' | 'ambiguous' };

/**
 * The key a request presents. Both headers may be sent only when they carry the same key: two different
 * credentials (or a header repeated with different values, which Node would silently reduce to one) leave it
 * unclear whose request this is, so neither is picked.
 */
export function presentedKey(req: IncomingMessage): Presented {
  let key: string | undefined;
  let differing = false;
  let malformed = false;
  const raw = req.rawHeaders;
  for (let i = 0; i < raw.length; i += 2) {
    const header = raw[i]!;
    // Every request passes here: most of its headers are told apart by their length, without lowercasing them.
    if (header.length !== AUTHORIZATION.length && header.length !== X_API_KEY.length) continue;
    const name = header.toLowerCase();
    if (name !== AUTHORIZATION && name !== X_API_KEY) continue;
    const value = raw[i + 1]!.trim();
    // An empty header is no credential (some clients send one when unconfigured).
    if (value === '') continue;
    let presented = value;
    if (name === AUTHORIZATION) {
      const bearer = BEARER.exec(value);
      if (!bearer) {
        malformed = true;
        continue;
      }
      presented = bearer[1]!;
    }
    if (key === undefined) key = presented;
    else if (key !== presented) differing = true;
  }
  if (differing || (malformed && key !== undefined)) return { problem: 'ambiguous' };
  if (malformed) return { problem: 'malformed' };
  if (!key) return { problem: 'missing' };
  return key.length > MAX_KEY_LENGTH ? { problem: 'malformed' } : { key };
}

/**
 * A body up to this size is read and discarded after a refusal, keeping the connection: cheaper than making the
 * client open another one (a flood of refused requests would otherwise cost a TCP handshake each).
 */
const DISCARDED_BODY_BYTES = 16 * 1024;

/** Whether a refusal must close the connection: a chunked body, or one announced larger than DISCARDED_BODY_BYTES. */
function closeAfterRefusal(req: IncomingMessage): boolean {
  return req.headers['transfer-encoding'] !== undefined || Number(req.headers['content-length'] ?? 0) > DISCARDED_BODY_BYTES;
}

/**
 * A refusal before the body is read. With a large body the connection is closed after the answer: keeping it
 * alive would make Node read and discard the whole body, however large, before the next request.
 */
function refusal(req: IncomingMessage, code: ErrorCode, message: string, headers: Record<string, string> = {}): ApiError {
  return apiError(code, message, undefined, closeAfterRefusal(req) ? { ...headers, Connection: 'close' } : headers);
}

const UNAUTHORIZED_HEADERS = { 'WWW-Authenticate': 'Bearer' };

/**
 * What authentication can answer from the cache, without a lookup: a refusal (no usable key, a key known to be
 * invalid, or an address past its budget of failed authentications), the grant of a key already verified, or
 * the key to look up. The one rule for the Koa middleware and the early refusal alike.
 */
export function authenticateFromCache(
  req: IncomingMessage,
  keys: KeyResolver,
): { readonly grant: KeyGrant } | { readonly refusal: ApiError } | { readonly lookup: string } {
  const presented = presentedKey(req);
  if ('problem' in presented) {
    if (presented.problem === 'ambiguous') {
      return {
        refusal: refusal(
          req,
          'ambiguous_credentials',
          'send one API key, in either "Authorization: Bearer <key>" or "X-Api-Key", not two different ones',
        ),
      };
    }
    return {
      refusal: refusal(
        req,
        'unauthorized',
        'missing API key: send "Authorization: Bearer <key>" or "X-Api-Key: <key>"',
        UNAUTHORIZED_HEADERS,
      ),
    };
  }
  const grant = keys.peek(presented.key);
  if (grant) return { grant };
  const address = req.socket.remoteAddress ?? '';
  if (grant === null) return { refusal: invalidKey(req, keys, address) };
  const retryAfter = keys.failures.retryAfter(address);
  if (retryAfter > 0) {
    return {
      refusal: refusal(req, 'too_many_auth_failures', 'too many failed authentications from this address; retry later', {
        'Retry-After': String(retryAfter),
      }),
    };
  }
  return { lookup: presented.key };
}

/** A key that is unknown, revoked or expired: it counts against the address's budget. */
function invalidKey(req: IncomingMessage, keys: KeyResolver, address: string): ApiError {
  keys.failures.fail(address);
  return refusal(req, 'unauthorized', 'unknown, revoked or expired API key', UNAUTHORIZED_HEADERS);
}

/**
 * Requires `Authorization: Bearer <key>` or `X-Api-Key` holding `options.scope`; puts the grant in
 * `ctx.state.grant`. A client address past its budget of failed authentications is refused (429) before
 * its key costs a lookup, unless the key is one this process has already verified.
 */
export function authenticate(keys: KeyResolver, options: { scope: Scope }): Middleware<State> {
  return async (ctx, next) => {
    const req = ctx.req;
    const early = authenticatedEarly.get(req);
    const cached = early ? { grant: early } : authenticateFromCache(req, keys);
    if ('refusal' in cached) throw cached.refusal;
    let grant: KeyGrant | null;
    if ('grant' in cached) grant = cached.grant;
    else {
      try {
        grant = await keys.resolve(cached.lookup);
      } catch {
        throw refusal(req, 'dependency_unavailable', 'cannot verify the API key right now', { 'Retry-After': jitteredRetryAfter() });
      }
      if (!grant) throw invalidKey(req, keys, req.socket.remoteAddress ?? '');
    }
    if (!grant.scopes.includes(options.scope))
      throw refusal(req, 'forbidden', `this endpoint needs a key with the "${options.scope}" scope`);
    ctx.state.grant = grant satisfies KeyGrant;
    await next();
  };
}
