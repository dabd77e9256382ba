/**
 * The JSON text of each event's `data` as the client sent it, found by one scan of a request body that
 * `JSON.parse` has already accepted, so that an accepted event's `data` is stored as that text rather than
 * serialised again: re-serialising `data` was the largest per-event cost of a batch after the parse itself.
 *
 * A text is given only when storing it is certain to equal storing `JSON.stringify(data)` in a `jsonb` column,
 * and when the checks of lib/event-schema.ts could not refuse it; every other event (or the whole body, when
 * its structure is not the one expected) takes the serialising path, whose checks decide. The text qualifies
 * when:
 * - it is the value of the last `data` key of its event object (`JSON.parse` keeps the last duplicate, as
 *   `jsonb` does), and that value is an object;
 * - every number in it is written as `JSON.stringify` would write the parsed number's value: no exponent, at
 *   most 15 digits (a double holds any 15-digit decimal exactly), no trailing zero after a decimal point, no -0;
 * - it nests at most `maxDepth` levels, is at most `maxBytes` bytes as UTF-8, and its `\u` escapes name
 *   neither NUL nor an unpaired surrogate (Postgres stores neither).
 * Whitespace between tokens, escapes such as `\u00e9` or `\/`, key order and duplicate keys make no difference
 * to the `jsonb` value, and the text is never longer than its re-serialisation would be short of those
 * (re-serialising only removes whitespace, duplicates and escapes), so the size limit refuses nothing more.
 */

/** Limits a `data` text must be within to be stored as sent. */
export interface DataTextLimits {
  readonly maxBytes: number;
  readonly maxDepth: number;
}

// What the scan of the current `data` value found; reset before each one.
let maxDepth = 0;
let escapedUnicode = false;
let plainNumbers = true;

const QUOTE = 34;
const BACKSLASH = 92;
const U = 117;

// Where the next backslash of the text being scanned is (its length when there is none, -1 before the search):
// most bodies have none, and then every string ends at the next quote, which indexOf finds fastest.
let nextBackslash = -1;

/** Index after the string starting at `i` (its opening quote). */
function skipString(s: string, i: number): number {
  const n = s.length;
  const quote = s.indexOf('"', i + 1);
  if (quote === -1) return n;
  if (nextBackslash < i) {
    nextBackslash = s.indexOf('\\', i);
    if (nextBackslash === -1) nextBackslash = n;
  }
  if (nextBackslash > quote) return quote + 1;
  for (i++; i < n; i++) {
    const c = s.charCodeAt(i);
    if (c === QUOTE) return i + 1;
    if (c === BACKSLASH) {
      if (s.charCodeAt(i + 1) === U) escapedUnicode = true;
      i++;
    }
  }
  return n;
}

/** Index after the number starting at `i`; clears `plainNumbers` unless it is written as JSON.stringify writes it. */
function skipNumber(s: string, i: number): number {
  const n = s.length;
  let digits = 0;
  let last = 0;
  let fraction = false;
  let zero = true;
  const negative = s.charCodeAt(i) === 45; /* - */
  if (negative) i++;
  for (; i < n; i++) {
    const c = s.charCodeAt(i);
    if (c >= 48 && c <= 57) {
      digits++;
      last = c;
      if (c !== 48) zero = false;
    } else if (c === 46 /* . */) fraction = true;
    else if (c === 101 || c === 69 || c === 43 || c === 45 /* e E + - */) plainNumbers = false;
    else break;
  }
  // -0 parses to a negative zero, which JSON.stringify writes as 0.
  if (digits > 15 || (fraction && last === 48) || (negative && zero)) plainNumbers = false;
  return i;
}

/** Index after the value starting at `i` (no leading whitespace); a container's nesting is recorded in `maxDepth`. */
function skipValue(s: string, i: number): number {
  const n = s.length;
  const first = s.charCodeAt(i);
  if (first === QUOTE) return skipString(s, i);
  if (first === 45 || (first >= 48 && first <= 57)) return skipNumber(s, i);
  if (first !== 123 && first !== 91) {
    // true, false or null
    while (i < n && s.charCodeAt(i) >= 97 && s.charCodeAt(i) <= 122) i++;
    return i;
  }
  let depth = 0;
  while (i < n) {
    const c = s.charCodeAt(i);
    if (c === QUOTE) i = skipString(s, i);
    else if (c === 45 || (c >= 48 && c <= 57)) i = skipNumber(s, i);
    else if (c === 123 || c === 91 /* { [ */) {
      if (++depth > maxDepth) maxDepth = depth;
      i++;
    } else if (c === 125 || c === 93 /* } ] */) {
      i++;
      if (--depth === 0) return i;
    } else i++; // whitespace, commas, colons, the letters of true/false/null
  }
  return n;
}

function skipSpace(s: string, i: number): number {
  for (;;) {
    const c = s.charCodeAt(i);
    if (c === 32 || c === 10 || c === 13 || c === 9) i++;
    else return i;
  }
}

/** Whether the key string at [start, end) (quotes included) decodes to `name`. */
function keyIs(s: string, start: number, end: number, name: string): boolean {
  const length = end - start - 2;
  if (length === name.length) return s.startsWith(name, start + 1);
  if (length < name.length) return false;
  // A key spelled with escapes ("d\u0061ta") is still that key to JSON.parse.
  for (let i = start + 1; i < end; i++) if (s.charCodeAt(i) === BACKSLASH) return JSON.parse(s.slice(start, end)) === name;
  return false;
}

/** Whether the `\u` escapes of `text` name neither NUL nor an unpaired surrogate. */
export function storableEscapes(text: string): boolean {
  for (let i = text.indexOf('\\'); i !== -1; i = text.indexOf('\\', i + 2)) {
    if (text.charCodeAt(i + 1) !== U) continue;
    const code = parseInt(text.slice(i + 2, i + 6), 16);
    if (code === 0 || (code >= 0xdc00 && code <= 0xdfff)) return false;
    if (code >= 0xd800 && code <= 0xdbff) {
      if (text.charCodeAt(i + 6) !== BACKSLASH || text.charCodeAt(i + 7) !== U) return false;
      const low = parseInt(text.slice(i + 8, i + 12), 16);
      if (!(low >= 0xdc00 && low <= 0xdfff)) return false;
      i += 6; // past the high half: the search resumes inside the low half's digits
    }
  }
  return true;
}

/** The `data` text of the event object at `i` when it may be stored as sent (see above), and the index after the object. */
function scanEvent(s: string, i: number, limits: DataTextLimits): { readonly text: string | undefined; readonly end: number } {
  let text: string | undefined;
  i = skipSpace(s, i + 1);
  if (s.charCodeAt(i) === 125) return { text, end: i + 1 };
  for (;;) {
    const keyStart = i;
    const keyEnd = skipString(s, i);
    i = skipSpace(s, skipSpace(s, keyEnd) + 1); // past the colon
    if (keyIs(s, keyStart, keyEnd, 'data')) {
      maxDepth = 0;
      escapedUnicode = false;
      plainNumbers = true;
      const after = skipValue(s, i);
      text = storable(s, i, after, limits);
      i = after;
    } else i = skipValue(s, i);
    i = skipSpace(s, i);
    if (s.charCodeAt(i) !== 44 /* , */) return { text, end: i + 1 };
    i = skipSpace(s, i + 1);
  }
}

/** What a scan of a `data` text found, as `storableText` needs it. */
export interface DataTextScan {
  /** Every number is written as JSON.stringify writes it (see above). */
  readonly plainNumbers: boolean;
  /** Deepest nesting of objects and arrays, the text's own braces counted. */
  readonly maxDepth: number;
  /** Whether a string may hold a `\u` escape (when true, the escapes are checked). */
  readonly escapedUnicode: boolean;
}

/** `value` (a JSON object's text, scanned) when it may be stored as sent, else undefined. */
export function storableText(value: string, scan: DataTextScan, limits: DataTextLimits): string | undefined {
  if (value.charCodeAt(0) !== 123 || !scan.plainNumbers || scan.maxDepth > limits.maxDepth) return undefined;
  // A UTF-16 unit is at most 3 bytes of UTF-8 (a pair of them 4): count the bytes only when it could matter.
  if (value.length * 3 > limits.maxBytes && Buffer.byteLength(value) > limits.maxBytes) return undefined;
  if (scan.escapedUnicode && !storableEscapes(value)) return undefined;
  return value;
}

/** The value at [start, end) when the scan just made of it allows storing it as sent. */
function storable(s: string, start: number, end: number, limits: DataTextLimits): string | undefined {
  if (s.charCodeAt(start) !== 123) return undefined;
  return storableText(s.slice(start, end), { plainNumbers, maxDepth, escapedUnicode }, limits);
}

/**
 * The `data` text to store for each event of the body `s` (already accepted by JSON.parse): one entry per
 * event, in order, undefined where the event has no `data` to store as sent. `batch` says whether the body is
 * `{"events": [...]}` or a single event. Undefined for the whole body when its events are not `count` objects.
 */
export function dataTexts(s: string, batch: boolean, count: number, limits: DataTextLimits): (string | undefined)[] | undefined {
  nextBackslash = -1;
  let i = skipSpace(s, 0);
  if (s.charCodeAt(i) !== 123) return undefined;
  if (!batch) return count === 1 ? [scanEvent(s, i, limits).text] : undefined;
  let texts: (string | undefined)[] | undefined;
  i = skipSpace(s, i + 1);
  if (s.charCodeAt(i) === 125) return undefined;
  for (;;) {
    const keyStart = i;
    const keyEnd = skipString(s, i);
    i = skipSpace(s, skipSpace(s, keyEnd) + 1);
    if (!keyIs(s, keyStart, keyEnd, 'events')) i = skipValue(s, i);
    else if (s.charCodeAt(i) !== 91) return undefined;
    else {
      // A repeated "events" key: JSON.parse keeps the last one, and so does this.
      texts = [];
      i = skipSpace(s, i + 1);
      if (s.charCodeAt(i) === 93) i++;
      else
        for (;;) {
          if (s.charCodeAt(i) !== 123) return undefined;
          const scanned = scanEvent(s, i, limits);
          texts.push(scanned.text);
          i = skipSpace(s, scanned.end);
          if (s.charCodeAt(i) !== 44) {
            i++;
            break;
          }
          i = skipSpace(s, i + 1);
        }
    }
    i = skipSpace(s, i);
    if (s.charCodeAt(i) !== 44) break;
    i = skipSpace(s, i + 1);
  }
  return texts?.length === count ? texts : undefined;
}
