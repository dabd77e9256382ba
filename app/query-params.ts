import type { ParsedUrlQuery } from 'node:querystring';
import { SQLSTATE, apiError, type ApiError } from '../lib/errors.js';
import { parseTypePattern, type TypePattern } from '../lib/type-pattern.js';

/** A 400 invalid_parameter naming the parameter, with why. */
export function invalidParameter(parameter: string, reason: string): ApiError {
  return apiError('invalid_parameter', `${parameter}: ${reason}`, { parameter, reason });
}

/**
 * The query string as single values. Unknown parameters are refused rather than ignored (a typo such as
 * `grup_by` would otherwise silently answer another question), and so are repeated ones.
 */
export function queryParams(query: ParsedUrlQuery, allowed: readonly string[]): Map<string, string> {
  const params = new Map<string, string>();
  for (const [name, value] of Object.entries(query)) {
    if (!allowed.includes(name)) throw invalidParameter(name, `unknown parameter; expected one of ${allowed.join(', ')}`);
    if (Array.isArray(value)) throw invalidParameter(name, 'given more than once');
    if (value !== undefined) params.set(name, value);
  }
  return params;
}

const UNIT_MS = { m: 60_000, h: 3_600_000, d: 86_400_000 } as const;
const DURATION = /^([1-9]\d{0,5})(m|h|d)$/;

/** A duration such as `90m`, `24h` or `7d` (whole minutes, hours or days), in ms. */
export function parseDuration(parameter: string, text: string): number {
  const match = DURATION.exec(text);
  if (!match)
    throw invalidParameter(
      parameter,
      `expected a whole number of minutes, hours or days such as 5m, 24h or 7d, got "${text.slice(0, 40)}"`,
    );
  return Number(match[1]) * UNIT_MS[match[2] as keyof typeof UNIT_MS];
}

/** Renders a duration in ms back in the largest unit that divides it. */
export function formatDuration(ms: number): string {
  for (const unit of ['d', 'h', 'm'] as const) if (ms % UNIT_MS[unit] === 0) return `${ms / UNIT_MS[unit]}${unit}`;
  return `${ms}ms`;
}

/** `order.paid` (one type), `order.*` (every type starting with `order.`), or `*` (every type: null). */
export function parseTypeFilter(text: string): TypePattern | null {
  const pattern = parseTypePattern(text);
  if (pattern === undefined) {
    throw invalidParameter(
      'type',
      `expected an event type such as order.paid, or a prefix ending in * such as order.*, got "${text.slice(0, 40)}"`,
    );
  }
  return pattern;
}

const RFC3339 = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,9})?(Z|[+-]\d{2}:\d{2})$/i;

/** An RFC 3339 timestamp with its offset, in epoch ms. */
export function parseTimestamp(parameter: string, text: string): number {
  const ms = RFC3339.test(text) ? Date.parse(text) : Number.NaN;
  if (Number.isNaN(ms))
    throw invalidParameter(parameter, `expected an RFC 3339 timestamp such as 2024-05-01T12:00:00Z, got "${text.slice(0, 40)}"`);
  return ms;
}

/** A whole number within [min, max]. */
export function parseInteger(parameter: string, text: string, min: number, max: number): number {
  const n = /^\d{1,9}$/.test(text) ? Number(text) : Number.NaN;
  if (!(n >= min && n <= max))
    throw invalidParameter(parameter, `expected a whole number from ${min} to ${max}, got "${text.slice(0, 40)}"`);
  return n;
}

/** One of a fixed set of words. */
export function parseChoice<T extends string>(parameter: string, text: string, choices: readonly T[]): T {
  if (!(choices as readonly string[]).includes(text))
    throw invalidParameter(parameter, `expected one of ${choices.join(', ')}, got "${text.slice(0, 40)}"`);
  return text as T;
}

/** A free-form text filter (source, idempotency key): 1 to 255 characters, as the event schema allows. */
export function parseText(parameter: string, text: string): string {
  if (text.length < 1 || text.length > 255) throw invalidParameter(parameter, 'expected 1 to 255 characters');
  // Postgres text cannot hold NUL: no stored event has one, and the query would fail rather than find nothing.
  if (text.includes('\u0000')) throw invalidParameter(parameter, 'must not contain NUL');
  return text;
}

/** Runs a read; a statement cancelled by QUERY_TIMEOUT_MS becomes 503 query_timeout. */
export async function timedRead<T>(read: () => Promise<T>, timeoutMs: number): Promise<T> {
  try {
    return await read();
  } catch (err) {
    if ((err as { code?: string }).code === SQLSTATE.queryCanceled) {
      throw apiError('query_timeout', `the query ran longer than ${timeoutMs} ms and was cancelled; narrow the window or the filters`);
    }
    throw err;
  }
}
