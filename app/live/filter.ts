import { apiError } from '../../lib/errors.js';
import { parseTypePattern } from '../../lib/type-pattern.js';

/** Which event types a live connection wants. */
export interface TypeFilter {
  /** True when no filter was given: every type. */
  readonly all: boolean;
  matches(type: string): boolean;
}

const MAX_PATTERNS = 32;

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
  let all = patterns.length === 0;
  for (const pattern of patterns) {
    const parsed = parseTypePattern(pattern);
    if (parsed === undefined)
      throw apiError('invalid_parameter', `type "${pattern.slice(0, 140)}" is neither an event type nor a prefix ending in *`);
    if (parsed === null) all = true;
    else if ('prefix' in parsed) prefixes.push(parsed.prefix);
    else exact.add(parsed.exact);
  }
  if (all) return { all: true, matches: () => true };
  return {
    all: false,
    matches: (type) => exact.has(type) || prefixes.some((p) => type.startsWith(p)),
  };
}
