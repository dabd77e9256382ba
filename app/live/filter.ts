import { apiError } from '../../lib/errors.js';

/** Which event types a live connection wants. */
export interface TypeFilter {
  /** True when no filter was given: every type. */
  readonly all: boolean;
  matches(type: string): boolean;
}

const MAX_PATTERNS = 32;
// An event type (lib/event-schema.ts) or a prefix of one followed by `*`; a lone `*` matches every type.
const EXACT = /^[A-Za-z0-9_.:-]{1,128}$/;
const PREFIX = /^([A-Za-z0-9_.:-]{0,127})\*$/;

/**
 * Parses `type` query values (repeated, or comma-separated): `order.created` matches that type exactly,
 * `order.*` every type starting with `order.`. Throws invalid_parameter on anything else.
 */
export function parseTypeFilter(values: string | readonly string[] | undefined): TypeFilter {
  const patterns = (typeof values === 'string' ? [values] : (values ?? []))
    .flatMap((v) => v.split(','))
    .map((v) => v.trim())
    .filter((v) => v !== '');
  if (patterns.length > MAX_PATTERNS) throw apiError('invalid_parameter', `at most ${MAX_PATTERNS} type patterns, got ${patterns.length}`);
  const exact = new Set<string>();
  const prefixes: string[] = [];
  for (const pattern of patterns) {
    const prefix = PREFIX.exec(pattern);
    if (prefix) prefixes.push(prefix[1]!);
    else if (EXACT.test(pattern)) exact.add(pattern);
    else throw apiError('invalid_parameter', `type "${pattern.slice(0, 140)}" is neither an event type nor a prefix ending in *`);
  }
  if (patterns.length === 0 || prefixes.includes('')) return { all: true, matches: () => true };
  return {
    all: false,
    matches: (type) => exact.has(type) || prefixes.some((p) => type.startsWith(p)),
  };
}
