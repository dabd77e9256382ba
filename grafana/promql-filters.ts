/**
 * Narrows every series selector of a panel's PromQL to the dashboard's `job` and `instance` variables, so
 * dashboard sources stay plain PromQL and no query can forget the filters. Recorded series (names with a
 * colon) carry `job` but not `instance`: prometheus/rules/recording.yml sums the instances of each job.
 */

/** Matchers added to raw series, and to recorded series (which have no instance label). */
const RAW_MATCHERS = 'job=~"$job",instance=~"$instance"';
const RECORDED_MATCHERS = 'job=~"$job"';

/** Words that look like metric names but are PromQL operators or literals. */
const KEYWORDS = new Set([
  'and',
  'or',
  'unless',
  'bool',
  'offset',
  'inf',
  'nan',
  'atan2',
  'by',
  'without',
  'on',
  'ignoring',
  'group_left',
  'group_right',
]);

// One alternative per lexical element: quoted strings, label matchers, range/subquery brackets, grouping
// clauses (their label lists are not metric names), numbers and durations, identifiers, anything else.
const TOKEN =
  /("(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*'|`[^`]*`)|(\{[^}]*\})|(\[[^\]]*\])|(\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\))|(\d[\w.]*)|([a-zA-Z_:][a-zA-Z0-9_:]*)|([\s\S])/g;

/** Adds the job/instance matchers to every series selector in `expr`; functions, keywords and labels are left alone. */
export function withDashboardFilters(expr: string): string {
  const tokens = [...expr.matchAll(TOKEN)];
  let out = '';
  for (let i = 0; i < tokens.length; i++) {
    const token = tokens[i]!;
    const name = token[6];
    if (name === undefined || KEYWORDS.has(name.toLowerCase())) {
      out += token[0];
      continue;
    }
    let next = i + 1;
    while (next < tokens.length && /^\s$/.test(tokens[next]![0])) next++;
    const following = tokens[next]?.[0];
    if (following === '(' || tokens[next]?.[4] !== undefined) {
      out += name; // a function, or an aggregation (possibly followed by its by/without clause)
      continue;
    }
    const matchers = name.includes(':') ? RECORDED_MATCHERS : RAW_MATCHERS;
    if (following !== undefined && tokens[next]![2] !== undefined) {
      const inner = following.slice(1, -1).trim();
      out += `${name}{${matchers}${inner ? `,${inner}` : ''}}`;
      i = next;
    } else {
      out += `${name}{${matchers}}`;
    }
  }
  return out;
}
