/**
 * A parser for the common shape of an ingest body that does not build each event's `data`: it checks the whole
 * text against the JSON grammar, builds the event objects and the batch around them as `JSON.parse` would, and
 * gives each event's `data` as the text the client wrote (stored as it is: lib/data-text.ts says when that is
 * allowed). For a batch, `JSON.parse` of the body was the largest single cost, most of it building `data`
 * objects that are serialised again (or, with the data texts, thrown away) and collected.
 *
 * It answers only when it is certain; otherwise undefined, and the caller parses with `JSON.parse`, whose
 * verdict and error message then decide. So it never accepts a text `JSON.parse` refuses, and what it returns
 * is what `JSON.parse` would return but for `data`. It answers for a body that is one event object or
 * `{"events": [...]}` with an optional `"sent_at"` string, where every key is one the event schema knows (spelled
 * without escapes, none repeated), `type`, `timestamp`, `source`, `idempotency_key` and `sent_at` are strings,
 * `value` is a number, and `data` is an object whose text may be stored as sent. Anything else (an unknown key,
 * a wrong type, a `data` with an exponent in it…) is left to `JSON.parse` and to the checks after it.
 */
import { storableText, type DataTextLimits } from './data-text.js';

/**
 * Stands in for the `data` of an event parsed here: an object, as `data` must be, never looked into (the
 * event's data text is used instead). Frozen, so nothing can write into what every such event shares.
 */
export const DATA_AS_TEXT: object = Object.freeze({});

/** A body parsed without its events' `data`. */
export interface EventBody {
  /** What JSON.parse gives, `data` values replaced by DATA_AS_TEXT. */
  readonly value: Record<string, unknown>;
  /** Each event's `data` text, in order (undefined for an event without `data`). */
  readonly texts: (string | undefined)[];
}

const QUOTE = 34;
const BACKSLASH = 92;
const COMMA = 44;
const COLON = 58;
const OPEN_BRACE = 123;
const CLOSE_BRACE = 125;
const OPEN_BRACKET = 91;
const CLOSE_BRACKET = 93;
const MINUS = 45;

/** The deepest `data` the scan follows; deeper is past MAX_DATA_DEPTH anyway, and left to JSON.parse. */
const MAX_NESTING = 64;

// What may follow a backslash: one of the single-character escapes or u and four hex digits.
const ESCAPE = /["\\/bfnrt]|u[0-9a-fA-F]{4}/y;

/**
 * Thrown (and caught in parseEventBody) to give up on a body: JSON.parse decides instead. One instance, made
 * once: giving up is not an error of the request, and needs no stack.
 */
const UNSURE = new Error('not certain: left to JSON.parse');

// What the scan of the current `data` found (reset before each one): whether every number is written as
// JSON.stringify writes it, whether a string holds an escape, and the deepest nesting.
let plainNumbers = true;
let escaped = false;
let depthSeen = 0;

function skipSpace(s: string, i: number): number {
  for (;;) {
    const c = s.charCodeAt(i);
    if (c === 32 || c === 10 || c === 13 || c === 9) i++;
    else return i;
  }
}

/** Index after the valid JSON string whose opening quote is at `i`; throws UNSURE on anything invalid. */
function endOfString(s: string, i: number): number {
  const n = s.length;
  for (i++; i < n; i++) {
    const c = s.charCodeAt(i);
    if (c === QUOTE) return i + 1;
    if (c === BACKSLASH) {
      ESCAPE.lastIndex = i + 1;
      if (!ESCAPE.test(s)) throw UNSURE;
      escaped = true;
      i = ESCAPE.lastIndex - 1;
    } else if (c < 0x20) throw UNSURE;
  }
  throw UNSURE;
}

function isDigit(c: number): boolean {
  return c >= 48 && c <= 57;
}

/** Index after the digits from `i`. */
function endOfDigits(s: string, i: number): number {
  while (isDigit(s.charCodeAt(i))) i++;
  return i;
}

/**
 * Index after the valid JSON number at `i` (`-? (0 | [1-9][0-9]*) (. [0-9]+)? ([eE] [+-]? [0-9]+)?`); clears
 * `plainNumbers` unless JSON.stringify writes its value as it is written here, by the rule of lib/data-text.ts:
 * no exponent, at most 15 digits, no trailing zero after a point, no -0.
 */
function endOfNumber(s: string, i: number): number {
  const start = i;
  const negative = s.charCodeAt(i) === MINUS;
  if (negative) i++;
  const first = s.charCodeAt(i);
  if (first === 48) i++;
  else if (first >= 49 && first <= 57) i = endOfDigits(s, i + 1);
  else throw UNSURE;
  let digits = i - start - (negative ? 1 : 0);
  let zero = first === 48;
  let trailingZero = false;
  if (s.charCodeAt(i) === 46 /* . */) {
    const from = i + 1;
    i = endOfDigits(s, from);
    if (i === from) throw UNSURE;
    digits += i - from;
    trailingZero = s.charCodeAt(i - 1) === 48;
    if (zero) for (let j = from; j < i && zero; j++) zero = s.charCodeAt(j) === 48;
  }
  const e = s.charCodeAt(i);
  if (e === 101 || e === 69 /* e E */) {
    i++;
    const sign = s.charCodeAt(i);
    if (sign === 43 || sign === MINUS) i++;
    const from = i;
    i = endOfDigits(s, from);
    if (i === from) throw UNSURE;
    plainNumbers = false;
  }
  if (digits > 15 || trailingZero || (negative && zero)) plainNumbers = false;
  return i;
}

/** Index after the literal `word` at `i`. */
function endOfWord(s: string, i: number, word: string): number {
  if (!s.startsWith(word, i)) throw UNSURE;
  return i + word.length;
}

/** Index after the valid JSON value at `i` (no leading space), checked to the grammar and not built. */
function endOfValue(s: string, i: number): number {
  // Open containers, innermost last: true for an object (whose members are `key: value`), false for an array.
  const stack: boolean[] = [];
  for (;;) {
    // A value at i.
    const c = s.charCodeAt(i);
    if (c === OPEN_BRACE || c === OPEN_BRACKET) {
      const object = c === OPEN_BRACE;
      if (stack.push(object) > MAX_NESTING) throw UNSURE;
      if (stack.length > depthSeen) depthSeen = stack.length;
      i = skipSpace(s, i + 1);
      if (s.charCodeAt(i) === (object ? CLOSE_BRACE : CLOSE_BRACKET)) {
        stack.pop();
        i++;
      } else {
        if (object) i = memberValue(s, i);
        continue;
      }
    } else if (c === QUOTE) i = endOfString(s, i);
    else if (c === MINUS || (c >= 48 && c <= 57)) i = endOfNumber(s, i);
    else if (c === 116 /* t */) i = endOfWord(s, i, 'true');
    else if (c === 102 /* f */) i = endOfWord(s, i, 'false');
    else if (c === 110 /* n */) i = endOfWord(s, i, 'null');
    else throw UNSURE;
    // After a value: a comma and the next member, or the end of containers.
    for (;;) {
      if (stack.length === 0) return i;
      i = skipSpace(s, i);
      const d = s.charCodeAt(i);
      const object = stack[stack.length - 1]!;
      if (d === COMMA) {
        i = skipSpace(s, i + 1);
        if (object) i = memberValue(s, i);
        break;
      }
      if (d !== (object ? CLOSE_BRACE : CLOSE_BRACKET)) throw UNSURE;
      stack.pop();
      i++;
    }
  }
}

/** From a member's key at `i`: index of its value, past the key, the colon and the space around it. */
function memberValue(s: string, i: number): number {
  if (s.charCodeAt(i) !== QUOTE) throw UNSURE;
  i = skipSpace(s, endOfString(s, i));
  if (s.charCodeAt(i) !== COLON) throw UNSURE;
  return skipSpace(s, i + 1);
}

// The keys the parser takes, as bits (a key seen twice is left to JSON.parse).
const TYPE = 1;
const TIMESTAMP = 2;
const SOURCE = 4;
const IDEMPOTENCY_KEY = 8;
const VALUE = 16;
const DATA = 32;
const EVENTS = 64;
const SENT_AT = 128;
const STRING_KEYS = TYPE | TIMESTAMP | SOURCE | IDEMPOTENCY_KEY;
const EVENT_KEYS = STRING_KEYS | VALUE | DATA;

/** The bit of the key whose text (without quotes) is [start, end); 0 for a key the parser does not take. */
function keyBit(s: string, start: number, end: number): number {
  switch (end - start) {
    case 4:
      return s.startsWith('type', start) ? TYPE : s.startsWith('data', start) ? DATA : 0;
    case 5:
      return s.startsWith('value', start) ? VALUE : 0;
    case 6:
      return s.startsWith('source', start) ? SOURCE : s.startsWith('events', start) ? EVENTS : 0;
    case 7:
      return s.startsWith('sent_at', start) ? SENT_AT : 0;
    case 9:
      return s.startsWith('timestamp', start) ? TIMESTAMP : 0;
    case 15:
      return s.startsWith('idempotency_key', start) ? IDEMPOTENCY_KEY : 0;
    default:
      return 0;
  }
}

// Set by readKey: the index of the key's value. Set by readMember: the `data` text of the member read, if any.
let valueAt = 0;
let dataText: string | undefined;

/** The bit of the key at `i` (spelled without escapes, one the parser takes, else UNSURE); its value is at `valueAt`. */
function readKey(s: string, i: number): number {
  if (s.charCodeAt(i) !== QUOTE) throw UNSURE;
  escaped = false;
  const end = endOfString(s, i);
  const bit = escaped ? 0 : keyBit(s, i + 1, end - 1);
  if (bit === 0) throw UNSURE;
  i = skipSpace(s, end);
  if (s.charCodeAt(i) !== COLON) throw UNSURE;
  valueAt = skipSpace(s, i + 1);
  return bit;
}

/** Reads the value of an event member (`bit`) at `at` into `event`; returns the index after it. */
function readMember(s: string, bit: number, at: number, event: Record<string, unknown>, limits: DataTextLimits): number {
  const c = s.charCodeAt(at);
  if (bit & STRING_KEYS) {
    if (c !== QUOTE) throw UNSURE;
    escaped = false;
    const end = endOfString(s, at);
    // A string with escapes is valid JSON by now: JSON.parse decodes it exactly.
    const value = escaped ? (JSON.parse(s.slice(at, end)) as string) : s.slice(at + 1, end - 1);
    // Named stores, not event[name]: each site then sees one property name (measured: a tenth of the parse).
    if (bit === TYPE) event.type = value;
    else if (bit === SOURCE) event.source = value;
    else if (bit === TIMESTAMP) event.timestamp = value;
    else event.idempotency_key = value;
    return end;
  }
  if (bit === VALUE) {
    if (c !== MINUS && !isDigit(c)) throw UNSURE;
    const end = endOfNumber(s, at);
    // A JSON number literal is a decimal that Number() reads to the same double JSON.parse does.
    event.value = Number(s.slice(at, end));
    return end;
  }
  // data: an object whose text may be stored as sent.
  if (c !== OPEN_BRACE) throw UNSURE;
  plainNumbers = true;
  escaped = false;
  depthSeen = 0;
  const end = endOfValue(s, at);
  dataText = storableText(s.slice(at, end), { plainNumbers, maxDepth: depthSeen, escapedUnicode: escaped }, limits);
  if (dataText === undefined) throw UNSURE;
  event.data = DATA_AS_TEXT;
  return end;
}

/**
 * The members of the object whose opening brace is at `i` into `into`: event members, and with `batch` also
 * `events` (read by `readEvents`) and `sent_at`. Returns the index after the object; `seen` holds its key bits.
 */
let seen = 0;
function readObject(
  s: string,
  i: number,
  into: Record<string, unknown>,
  limits: DataTextLimits,
  texts: (string | undefined)[] | null,
): number {
  let keys = 0;
  let text: string | undefined;
  i = skipSpace(s, i + 1);
  if (s.charCodeAt(i) !== CLOSE_BRACE)
    for (;;) {
      const bit = readKey(s, i);
      if (keys & bit) throw UNSURE;
      keys |= bit;
      if (bit & EVENT_KEYS) {
        dataText = undefined;
        i = readMember(s, bit, valueAt, into, limits);
        if (bit === DATA) text = dataText;
      } else if (texts === null)
        throw UNSURE; // events and sent_at only at the top
      else if (bit === EVENTS) i = readEvents(s, valueAt, into, limits, texts);
      else {
        if (s.charCodeAt(valueAt) !== QUOTE) throw UNSURE;
        escaped = false;
        const end = endOfString(s, valueAt);
        into.sent_at = escaped ? (JSON.parse(s.slice(valueAt, end)) as string) : s.slice(valueAt + 1, end - 1);
        i = end;
      }
      i = skipSpace(s, i);
      const c = s.charCodeAt(i);
      if (c === CLOSE_BRACE) break;
      if (c !== COMMA) throw UNSURE;
      i = skipSpace(s, i + 1);
    }
  seen = keys;
  dataText = text;
  return i + 1;
}

/** The array of event objects at `i` into `body.events`, their data texts into `texts`; the index after it. */
function readEvents(s: string, i: number, body: Record<string, unknown>, limits: DataTextLimits, texts: (string | undefined)[]): number {
  if (s.charCodeAt(i) !== OPEN_BRACKET) throw UNSURE;
  const events: Record<string, unknown>[] = [];
  i = skipSpace(s, i + 1);
  if (s.charCodeAt(i) === CLOSE_BRACKET) i++;
  else
    for (;;) {
      if (s.charCodeAt(i) !== OPEN_BRACE) throw UNSURE;
      const event: Record<string, unknown> = {};
      i = skipSpace(s, readObject(s, i, event, limits, null));
      events.push(event);
      texts.push(dataText);
      const c = s.charCodeAt(i);
      if (c === CLOSE_BRACKET) {
        i++;
        break;
      }
      if (c !== COMMA) throw UNSURE;
      i = skipSpace(s, i + 1);
    }
  body.events = events;
  return i;
}

/**
 * `text` parsed as JSON.parse would (but for `data`, see above) when it is an event or a batch of the common
 * shape; undefined whenever it is not certain, for JSON.parse to decide.
 */
export function parseEventBody(text: string, limits: DataTextLimits): EventBody | undefined {
  try {
    const start = skipSpace(text, 0);
    if (text.charCodeAt(start) !== OPEN_BRACE) return undefined;
    const body: Record<string, unknown> = {};
    const texts: (string | undefined)[] = [];
    const end = readObject(text, start, body, limits, texts);
    if (skipSpace(text, end) !== text.length) return undefined;
    // A body is an event or a batch; both kinds of key in one is refused by the route, as JSON.parse's body would be.
    const batch = (seen & (EVENTS | SENT_AT)) !== 0;
    if (batch && seen & EVENT_KEYS) return undefined;
    return { value: body, texts: batch ? texts : [dataText] };
  } catch (err) {
    if (err === UNSURE) return undefined;
    throw err;
  }
}
