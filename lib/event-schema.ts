import { Ajv2020, type ErrorObject } from 'ajv/dist/2020.js';
import * as addFormatsModule from 'ajv-formats';
import { DAY_MS } from './partitions.js';
import type { DataTextLimits } from './data-text.js';
import { uuidv7 } from './uuid7.js';

// ajv-formats is CommonJS with `exports.default`; under NodeNext the default import is the module object.
type AddFormats = (ajv: Ajv2020, formats: string[]) => Ajv2020;
const addFormats = (addFormatsModule as unknown as { default: AddFormats }).default;

export const PRIORITIES = ['critical', 'normal', 'low'] as const;
export type Priority = (typeof PRIORITIES)[number];

/** Checks a header or key default against the three priority classes. */
export function isPriority(value: unknown): value is Priority {
  return value === 'critical' || value === 'normal' || value === 'low';
}

/** JSON Schema (2020-12) of one event: compiled for validation and served in the OpenAPI document. */
export const EVENT_SCHEMA = {
  $id: 'https://floodgate.dev/schemas/event.json',
  title: 'Event',
  type: 'object',
  additionalProperties: false,
  required: ['type'],
  properties: {
    type: {
      type: 'string',
      minLength: 1,
      maxLength: 128,
      pattern: '^[A-Za-z0-9_.:-]+$',
      description: 'What happened, e.g. `checkout.completed`.',
    },
    timestamp: {
      type: 'string',
      format: 'date-time',
      maxLength: 64,
      description:
        'RFC 3339 time the event occurred; defaults to the time received. At most 24 h ahead and no older than the retention. A leap second (`23:59:60Z`) is stored as the following second.',
    },
    source: { type: 'string', minLength: 1, maxLength: 255, description: 'Free-form origin, e.g. `web` or a service name.' },
    idempotency_key: {
      type: 'string',
      minLength: 1,
      maxLength: 255,
      description: 'Events of one tenant with the same key are stored once within the dedup window.',
    },
    value: { type: 'number', description: 'A finite number attached to the event.' },
    data: { type: 'object', description: 'Arbitrary JSON object, at most MAX_EVENT_DATA_BYTES serialised.' },
  },
} as const;

/** `sent_at` of a batch: the RFC 3339 time the client sent the request, by its own clock. */
export const SENT_AT_SCHEMA = {
  type: 'string',
  format: 'date-time',
  maxLength: 64,
  description:
    "RFC 3339 time the client sent this request, by the client's clock; corrects client clock skew (see CLOCK_SKEW_THRESHOLD_MS).",
} as const;

/**
 * JSON Schema of a batch request body, served in the OpenAPI document with `eventRef` pointing at the Event
 * schema. The API does not validate a batch against it as a whole: it checks this shape, then each event on its
 * own, so that the valid events of a batch are accepted.
 */
export function batchSchema(maxBatchEvents: number, eventRef: string) {
  return {
    title: 'Batch',
    type: 'object',
    additionalProperties: false,
    required: ['events'],
    properties: { events: { type: 'array', minItems: 1, maxItems: maxBatchEvents, items: { $ref: eventRef } }, sent_at: SENT_AT_SCHEMA },
  } as const;
}

/**
 * Below this difference between the server's receive time and a batch's `sent_at`, the client's clock is taken
 * as right and timestamps are kept. Above it, every timestamp of the batch moves by received_at − sent_at.
 * 30 s is above any transit time a well-synchronised client sees (clients time requests out after ~10 s), so
 * the correction never shifts a correct client's events by its network delay; clock errors that matter to
 * analytics (minutes, a wrong time zone, a device clock hours off) are well above it.
 */
export const CLOCK_SKEW_THRESHOLD_MS = 30_000;

/** What to add to a batch's event timestamps: received_at − sent_at when it exceeds the threshold, else 0. */
export function clockCorrectionMs(sentAt: number, receivedAt: number): number {
  const skew = receivedAt - sentAt;
  return Math.abs(skew) > CLOCK_SKEW_THRESHOLD_MS ? skew : 0;
}

/** An event that passed validation, with its server-assigned id. */
export interface ValidEvent {
  readonly id: string;
  readonly type: string;
  readonly occurredAt: number;
  readonly source: string | null;
  readonly idempotencyKey: string | null;
  readonly value: number | null;
  /** `data` serialised once here, reused when the stream entry is built. */
  readonly dataJson: string | null;
}

export interface FieldError {
  readonly path: string;
  readonly message: string;
}

export type EventCheck = { ok: true; event: ValidEvent } | { ok: false; errors: FieldError[] };

export interface ValidationLimits {
  readonly retentionDays: number;
  readonly maxEventDataBytes: number;
}

const MAX_FUTURE_MS = DAY_MS;
const MAX_DATA_DEPTH = 32;
// NUL cannot be stored in Postgres text or jsonb, and a lone surrogate is not Unicode; either would make the
// row unwritable later, so both are refused at the edge. JSON.stringify escapes exactly these (and only
// these) as \u0000 / \udXXX, so one search of the serialised data finds them.
const UNSTORABLE_IN_JSON = /(?<!\\)(?:\\\\)*\\u(?:0000|d[89a-f][0-9a-f]{2})/;
// eslint-disable-next-line no-control-regex -- NUL is exactly what this looks for
const UNSTORABLE_IN_TEXT = /\u0000|[\ud800-\udbff](?![\udc00-\udfff])|(?<![\ud800-\udbff])[\udc00-\udfff]/;

function compileValidators() {
  const ajv = new Ajv2020({ allErrors: true, strict: true, messages: true });
  addFormats(ajv, ['date-time']);
  return { event: ajv.compile(EVENT_SCHEMA), sentAt: ajv.compile(SENT_AT_SCHEMA) };
}

const validators = compileValidators();
const validateShape = validators.event;

/** A batch's `sent_at` in epoch ms, or null when it is not an RFC 3339 time (the same rule as `timestamp`). */
export function parseSentAt(value: unknown): number | null {
  if (!validators.sentAt(value)) return null;
  const ms = parseTimestamp(value);
  return Number.isNaN(ms) ? null : ms;
}

function toFieldErrors(errors: ErrorObject[] | null | undefined): FieldError[] {
  return (errors ?? []).map((e) => {
    if (e.keyword === 'additionalProperties') {
      const field = (e.params as { additionalProperty: string }).additionalProperty;
      return { path: `/${field}`, message: 'unknown field' };
    }
    if (e.keyword === 'required') {
      return { path: `/${(e.params as { missingProperty: string }).missingProperty}`, message: 'is required' };
    }
    return { path: e.instancePath || '/', message: e.message ?? 'is invalid' };
  });
}

/** Deepest nesting of arrays/objects in a JSON text (strings skipped). */
function jsonDepth(json: string): number {
  let depth = 0;
  let max = 0;
  let inString = false;
  for (let i = 0; i < json.length; i++) {
    const c = json.charCodeAt(i);
    if (inString) {
      if (c === 92 /* \ */) i++;
      else if (c === 34 /* " */) inString = false;
    } else if (c === 34) inString = true;
    else if (c === 123 /* { */ || c === 91 /* [ */) {
      if (++depth > max) max = depth;
    } else if (c === 125 || c === 93) depth--;
  }
  return max;
}

/** JSON.stringify, or null when the value nests so deep that serialising it overflows the stack. */
function stringifyBounded(value: object): string | null {
  try {
    return JSON.stringify(value);
  } catch (err) {
    if (err instanceof RangeError) return null;
    throw err;
  }
}

/**
 * Epoch milliseconds of an RFC 3339 date-time the schema's `date-time` format already accepted, or NaN.
 * A leap second (`23:59:60`, at the end of a UTC day, which RFC 3339 allows) is stored as the second that
 * follows it, as POSIX time does: epoch milliseconds have no 61st second, and Date.parse refuses it.
 */
export function parseTimestamp(text: string): number {
  // Validated shape: YYYY-MM-DDTHH:MM:SS…, so the seconds sit at offsets 17-18.
  if (text.slice(17, 19) !== '60') return Date.parse(text);
  return Date.parse(`${text.slice(0, 17)}59${text.slice(19)}`) + 1000;
}

const TYPE_PATTERN = new RegExp(EVENT_SCHEMA.properties.type.pattern);

/**
 * Whether `raw` certainly passes EVENT_SCHEMA, checked by hand: ajv's generated code costs more than the rest
 * of an event's checks (it counts code points to check lengths). Answers false whenever it is unsure (a length
 * that code points might still bring within bounds, anything unusual), and ajv then decides and names the errors.
 */
function plainlyValid(raw: unknown): boolean {
  if (typeof raw !== 'object' || raw === null || Array.isArray(raw)) return false;
  const e = raw as Record<string, unknown>;
  let typed = false;
  for (const key in e) {
    const v = e[key];
    switch (key) {
      case 'type':
        if (typeof v !== 'string' || v.length === 0 || v.length > 128 || !TYPE_PATTERN.test(v)) return false;
        typed = true;
        break;
      case 'timestamp':
        // Its schema is SENT_AT_SCHEMA's, word for word.
        if (!validators.sentAt(v)) return false;
        break;
      case 'source':
      case 'idempotency_key':
        if (typeof v !== 'string' || v.length === 0 || v.length > 255) return false;
        break;
      case 'value':
        if (typeof v !== 'number' || !Number.isFinite(v)) return false;
        break;
      case 'data':
        if (typeof v !== 'object' || v === null || Array.isArray(v)) return false;
        break;
      default:
        return false;
    }
  }
  return typed;
}

/** Limits of `data` as lib/data-text.ts applies them to a text stored as sent. */
export function dataTextLimits(limits: ValidationLimits): DataTextLimits {
  return { maxBytes: limits.maxEventDataBytes, maxDepth: MAX_DATA_DEPTH };
}

/** `data` serialised, or the errors that refuse it. */
function checkData(data: object, limits: ValidationLimits): string | FieldError {
  const dataJson = stringifyBounded(data);
  if (dataJson === null) return { path: '/data', message: `must not nest deeper than ${MAX_DATA_DEPTH} levels` };
  if (Buffer.byteLength(dataJson) > limits.maxEventDataBytes) {
    return { path: '/data', message: `must be at most ${limits.maxEventDataBytes} bytes as JSON` };
  }
  if (UNSTORABLE_IN_JSON.test(dataJson)) return { path: '/data', message: 'must not contain NUL characters or unpaired surrogates' };
  if (jsonDepth(dataJson) > MAX_DATA_DEPTH) return { path: '/data', message: `must not nest deeper than ${MAX_DATA_DEPTH} levels` };
  return dataJson;
}

/**
 * Validates one raw event and assigns its id; `headerKey` is the request's Idempotency-Key for single events,
 * `correctionMs` the batch's clock correction (see clockCorrectionMs), applied before the time bounds are checked.
 * `dataText` is the JSON text of the event's `data` as sent, when lib/data-text.ts found that it may be stored
 * as it is (within the limits of `dataTextLimits`): it is then not serialised again.
 */
export function checkEvent(
  raw: unknown,
  receivedAt: number,
  limits: ValidationLimits,
  headerKey?: string,
  correctionMs = 0,
  dataText?: string,
): EventCheck {
  if (!plainlyValid(raw) && !validateShape(raw)) return { ok: false, errors: toFieldErrors(validateShape.errors) };
  const e = raw as { type: string; timestamp?: string; source?: string; idempotency_key?: string; value?: number; data?: object };
  let errors: FieldError[] | undefined;

  let occurredAt = receivedAt;
  if (e.timestamp !== undefined) {
    occurredAt = parseTimestamp(e.timestamp) + correctionMs;
    if (Number.isNaN(occurredAt)) (errors ??= []).push({ path: '/timestamp', message: 'is not a valid RFC 3339 time' });
    else if (occurredAt > receivedAt + MAX_FUTURE_MS)
      (errors ??= []).push({ path: '/timestamp', message: 'is more than 24 h in the future' });
    else if (occurredAt < receivedAt - limits.retentionDays * DAY_MS) {
      (errors ??= []).push({ path: '/timestamp', message: `is older than the ${limits.retentionDays}-day retention` });
    }
  }
  if (e.value !== undefined && !Number.isFinite(e.value)) (errors ??= []).push({ path: '/value', message: 'must be a finite number' });
  if (e.source !== undefined && UNSTORABLE_IN_TEXT.test(e.source)) {
    (errors ??= []).push({ path: '/source', message: 'must not contain NUL or unpaired surrogates' });
  }
  const key = e.idempotency_key ?? headerKey ?? null;
  if (key !== null && (key.length > 255 || UNSTORABLE_IN_TEXT.test(key))) {
    (errors ??= []).push({ path: '/idempotency_key', message: 'must be 1-255 characters without NUL or unpaired surrogates' });
  }

  let dataJson: string | null = null;
  if (e.data !== undefined) {
    const checked = dataText ?? checkData(e.data, limits);
    if (typeof checked === 'string') dataJson = checked;
    else (errors ??= []).push(checked);
  }
  if (errors !== undefined) return { ok: false, errors };
  return {
    ok: true,
    event: {
      id: uuidv7(receivedAt),
      type: e.type,
      occurredAt,
      source: e.source ?? null,
      idempotencyKey: key,
      value: e.value ?? null,
      dataJson,
    },
  };
}
