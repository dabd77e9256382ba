import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { dataTexts } from '../lib/data-text.js';
import { DATA_AS_TEXT, parseEventBody } from '../lib/event-body.js';
import { dataTextLimits } from '../lib/event-schema.js';
import { createEventSource, seededRandom } from '../loadtest/events.js';

const LIMITS = dataTextLimits({ retentionDays: 30, maxEventDataBytes: 16_384 });

/** JSON.parse's value with every event's `data` replaced by DATA_AS_TEXT, as parseEventBody gives it. */
function withDataAsText(value: Record<string, unknown>): Record<string, unknown> {
  const replace = (e: unknown) => {
    const event = e as Record<string, unknown>;
    return Object.hasOwn(event, 'data') ? { ...event, data: DATA_AS_TEXT } : event;
  };
  if (Object.hasOwn(value, 'events')) return { ...value, events: (value.events as unknown[]).map(replace) };
  return replace(value);
}

/**
 * Checks parseEventBody against JSON.parse on `text`: it answers only for text JSON.parse accepts, with the same
 * value (same keys in the same order) but for `data`, and the data texts lib/data-text.ts finds. True when it answered.
 */
function agrees(text: string): boolean {
  let parsed: unknown;
  let refused = false;
  try {
    parsed = JSON.parse(text);
  } catch {
    refused = true;
  }
  const fast = parseEventBody(text, LIMITS);
  if (refused) {
    assert.equal(fast, undefined, `JSON.parse refuses ${JSON.stringify(text)}, the parser must not answer`);
    return false;
  }
  if (fast === undefined) return false;
  const value = parsed as Record<string, unknown>;
  assert.deepEqual(fast.value, withDataAsText(value), text);
  const batch = Object.hasOwn(value, 'events');
  const events = batch ? (value.events as unknown[]) : [value];
  assert.deepEqual(Object.keys(fast.value), Object.keys(value), 'keys in the order JSON.parse gives them');
  assert.deepEqual(fast.texts, dataTexts(text, batch, events.length, LIMITS), `data texts of ${text}`);
  events.forEach((e, i) => {
    const text = fast.texts[i];
    const data = (e as { data?: unknown }).data;
    if (text === undefined) assert.equal(data, undefined);
    else assert.deepEqual(JSON.parse(text), data);
  });
  return true;
}

const STRINGS = ['"a"', '"ü"', '"x\\"y"', '"{["', '"\\\\"', '"\\u00e9"', '"\\ud83d\\ude00"', '"tab\\t"', '"\\/"', '"e1"', '""'];
const NUMBERS = ['0', '-1', '12', '3.25', '1e3', '2.50', '0.1', '-0', '1234567890123456', '123456789012345', '5E-2', '-0.5'];

/** A random JSON value as text, with random whitespace; depth-bounded. */
function randomJson(random: () => number, depth: number): string {
  const pick = <T>(xs: readonly T[]) => xs[Math.floor(random() * xs.length)]!;
  const ws = () => pick([' ', '', '', '\n', '\t', '']);
  const r = random();
  if (depth <= 0 || r < 0.35) return pick([pick(STRINGS), pick(NUMBERS), pick(['true', 'false', 'null'])]);
  const items = Array.from({ length: Math.floor(random() * 4) }, () => randomJson(random, depth - 1));
  if (r < 0.6) return `[${ws()}${items.join(`${ws()},${ws()}`)}${ws()}]`;
  return `{${ws()}${items.map((v) => `${pick(['"k"', '"data"', '"a\\u0062"', '"k2"'])}${ws()}:${ws()}${v}`).join(`,${ws()}`)}${ws()}}`;
}

/** A random event object's text: schema fields of every type, sometimes a field the schema does not know. */
function randomEvent(random: () => number): string {
  const pick = <T>(xs: readonly T[]) => xs[Math.floor(random() * xs.length)]!;
  const fields = [
    `"type":${pick(['"page.view"', '"a\\u002eb"', '""', '7', 'null'])}`,
    `"source":${pick(['"web"', '"w\\teb"', '3'])}`,
    `"timestamp":${pick(['"2026-12-01T10:00:00Z"', '"x"'])}`,
    `"idempotency_key":${pick(['"k-1"', '"\\u0000"'])}`,
    `"value":${pick([...NUMBERS, '"1"', 'true'])}`,
    `"data":${random() < 0.8 ? `{"a":${randomJson(random, 3)}}` : randomJson(random, 2)}`,
    `"extra":1`,
    `"data":{"again":1}`,
  ];
  const chosen = fields.filter((_, i) => (i === 0 || i === 5 ? random() < 0.9 : random() < (i >= 6 ? 0.05 : 0.4)));
  return `{${chosen.join(',')}}`;
}

/** A random body: one event, or a batch with an optional sent_at. */
function randomBody(random: () => number): string {
  if (random() < 0.3) return randomEvent(random);
  const events = Array.from({ length: 1 + Math.floor(random() * 4) }, () => randomEvent(random));
  const sentAt = random() < 0.3 ? `,"sent_at":"2026-12-01T10:00:00Z"` : '';
  return random() < 0.5
    ? `{"events":[${events.join(',')}]${sentAt}}`
    : `{${sentAt.slice(1)}${sentAt ? ',' : ''}"events":[ ${events.join(' , ')} ]}`;
}

/** `text` with one random character deleted, inserted or replaced by a character JSON gives meaning to. */
function mutate(random: () => number, text: string): string {
  const at = Math.floor(random() * text.length);
  const c = '{}[]",:\\ 0-.eE+tfnu\u0001\u001f\t'[Math.floor(random() * 25)]!;
  const kind = random();
  if (kind < 0.33) return text.slice(0, at) + text.slice(at + 1);
  if (kind < 0.66) return text.slice(0, at) + c + text.slice(at);
  return text.slice(0, at) + c + text.slice(at + 1);
}

describe('parsing an ingest body without building data', () => {
  it('gives what JSON.parse gives, and the data texts, for generated load-test batches and single events', () => {
    for (const batchSize of [1, 100]) {
      const source = createEventSource({ seed: 5, runId: 'body', batchSize });
      for (let n = 0; n < 30; n++) assert.ok(agrees(source.next().body), 'the common shape is parsed here');
    }
  });

  it('never answers for a text JSON.parse refuses, and agrees with it wherever it answers (random and mutated bodies)', () => {
    const random = seededRandom(17);
    let answered = 0;
    let refused = 0;
    for (let n = 0; n < 20_000; n++) {
      const body = randomBody(random);
      if (agrees(body)) answered++;
      for (let m = 0, text = body; m < 3; m++) {
        text = mutate(random, text);
        agrees(text);
        try {
          JSON.parse(text);
        } catch {
          refused++;
        }
      }
    }
    assert.ok(answered > 3000, `a fair share of random bodies is parsed here (${answered})`);
    assert.ok(refused > 20_000, `most mutations are invalid JSON (${refused})`);
  });

  it('refuses what the JSON grammar refuses', () => {
    const bad = [
      '{"type":"a","value":01}',
      '{"type":"a","value":1.}',
      '{"type":"a","value":.5}',
      '{"type":"a","value":+1}',
      '{"type":"a","value":1e}',
      '{"type":"a","value":-}',
      '{"type":"a","data":{"x":tru}}',
      '{"type":"a","data":{"x":nul}}',
      '{"type":"a","data":{"x":[1,]}}',
      '{"type":"a","data":{"x":1,}}',
      '{"type":"a",}',
      '{"events":[{"type":"a"},]}',
      '{"type":"a\\x"}',
      '{"type":"a\\u12"}',
      '{"type":"a\u0001"}',
      '{"type":"a","data":{"s":"\u001f"}}',
      '{"type":"a","data":{"x":1}',
      '{"type":"a"} x',
      '\ufeff{"type":"a"}',
      '{"type":"a","data":{"x" 1}}',
      '{"type":"a","data":{1:2}}',
      '{"type":"a","data":{"x":[}]}}',
      '{"type":"a","data":{"x":{]}}',
      "{'type':'a'}",
    ];
    for (const text of bad) {
      assert.throws(() => JSON.parse(text), text);
      assert.equal(parseEventBody(text, LIMITS), undefined, text);
    }
  });

  it('leaves to JSON.parse what it is not certain of', () => {
    const unsure = [
      '{"type":"a","extra":1}',
      '{"type":"a","type":"b"}',
      '{"typ\\u0065":"a"}',
      '{"type":"a","data":{"n":1e3}}',
      '{"type":"a","data":{"n":2.50}}',
      '{"type":"a","data":{"s":"\\u0000"}}',
      '{"type":"a","data":[1]}',
      '{"type":"a","data":null}',
      '{"type":5}',
      '{"events":[{"type":"a"}],"type":"b"}',
      '{"events":[{"type":"a"}],"events":[]}',
      '{"events":[3]}',
      '{"events":{}}',
      '{"events":[{"type":"a","sent_at":"x"}]}',
      '[{"type":"a"}]',
      '{"__proto__":{"type":"a"}}',
      `{"type":"a","data":${'{"a":'.repeat(33)}1${'}'.repeat(33)}}`,
    ];
    for (const text of unsure) {
      JSON.parse(text);
      assert.equal(parseEventBody(text, LIMITS), undefined, text);
    }
  });

  it('decodes escaped strings and numbers exactly as JSON.parse does', () => {
    for (const text of [
      '{"type":"a\\u002eb\\n","source":"\\ud83d\\ude00\\/","value":-12.5}',
      ' {\n"events" : [ {"type":"x","value":0.1,"data":{"s":"\\u00e9\\"","n":[1,-2.5,{}]}} ] , "sent_at":"2026-12-01T10:00:00Z" } \n',
      '{"type":"a","value":1e400}',
      '{"type":"a","value":-0}',
      '{"type":"a","value":123456789012345678901234567890}',
      '{"events":[]}',
      '{}',
    ])
      assert.ok(agrees(text), text);
    assert.ok(Object.is((parseEventBody('{"type":"a","value":-0}', LIMITS)?.value as { value: number }).value, -0));
  });
});
