import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { dataTexts, storableEscapes } from '../lib/data-text.js';
import { checkEvent, dataTextLimits } from '../lib/event-schema.js';
import { createEventSource, seededRandom } from '../loadtest/events.js';

const LIMITS = { retentionDays: 30, maxEventDataBytes: 16_384 };
const TEXT_LIMITS = dataTextLimits(LIMITS);

/** The texts for a body, with what JSON.parse makes of it. */
function scan(body: string) {
  const value = JSON.parse(body) as Record<string, unknown>;
  const batch = Object.hasOwn(value, 'events');
  const events = batch ? (value.events as unknown[]) : [value];
  return { events, texts: dataTexts(body, batch, events.length, TEXT_LIMITS) };
}

/** The one event's data text of a single-event body with `data` written as `data`. */
function textOf(data: string): string | undefined {
  return scan(`{"type":"t","data":${data}}`).texts?.[0];
}

/**
 * What the stored jsonb would hold: the text must denote exactly what JSON.stringify of the parsed data
 * denotes, number for number (compared after a parse of each, with keys in one order).
 */
function sameStored(text: string, data: unknown): void {
  const canonical = (v: unknown): unknown =>
    v !== null && typeof v === 'object' && !Array.isArray(v)
      ? Object.fromEntries(
          Object.entries(v)
            .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))
            .map(([k, x]) => [k, canonical(x)]),
        )
      : Array.isArray(v)
        ? v.map(canonical)
        : v;
  assert.deepEqual(canonical(JSON.parse(text)), canonical(JSON.parse(JSON.stringify(data))));
}

/** A random JSON value as text, with random whitespace, key escapes and duplicate keys; depth-bounded. */
function randomJson(random: () => number, depth: number): string {
  const ws = () => [' ', '', '', '\n', '\t', '  '][Math.floor(random() * 6)]!;
  const strings = ['a', 'ü', 'x\\"y', '{[', '\\\\', '\\u00e9', '\\ud83d\\ude00', 'tab\\t', '}]\\"', '\\/', 'e1', 'true'];
  const numbers = ['0', '-1', '12', '3.25', '1e3', '2.50', '0.1', '-0', '1234567890123456', '123456789012345', '5E-2'];
  const r = random();
  if (depth <= 0 || r < 0.35) {
    const k = Math.floor(random() * 4);
    if (k === 0) return `"${strings[Math.floor(random() * strings.length)]!}"`;
    if (k === 1) return numbers[Math.floor(random() * numbers.length)]!;
    return ['true', 'false', 'null'][Math.floor(random() * 3)]!;
  }
  const n = Math.floor(random() * 4);
  const items = Array.from({ length: n }, () => randomJson(random, depth - 1));
  if (r < 0.6) return `[${ws()}${items.join(`${ws()},${ws()}`)}${ws()}]`;
  const keys = ['k', 'data', 'events', 'd\\u0061ta', 'k'];
  return `{${ws()}${items.map((v) => `"${keys[Math.floor(random() * keys.length)]!}"${ws()}:${ws()}${v}`).join(`,${ws()}`)}${ws()}}`;
}

describe('the data texts of a request body', () => {
  it('are found for every event of generated load-test batches and single events, and store what serialising would', () => {
    for (const batchSize of [1, 100]) {
      const source = createEventSource({ seed: 3, runId: 'texts', batchSize });
      for (let n = 0; n < 30; n++) {
        const { events, texts } = scan(source.next().body);
        assert.ok(texts, 'the body is scanned');
        assert.equal(texts.length, events.length);
        texts.forEach((text, i) => {
          assert.ok(text !== undefined, 'plain data is stored as sent');
          sameStored(text, (events[i] as { data: unknown }).data);
        });
      }
    }
  });

  it('take the last of repeated keys, as JSON.parse does, and keys spelled with escapes', () => {
    assert.equal(scan('{"type":"t","data":{"a":1},"data":{"b":2}}').texts?.[0], '{"b":2}');
    assert.equal(scan('{"type":"t","d\\u0061ta":{"a":1}}').texts?.[0], '{"a":1}');
    const twice = scan('{"events":[{"type":"a","data":{"x":1}}],"events":[{"type":"b","data":{"y":[2]}},{"type":"c"}]}');
    assert.deepEqual(twice.texts, ['{"y":[2]}', undefined]);
  });

  it('span strings holding brackets, quotes and backslashes', () => {
    assert.equal(textOf('{"s":"}]\\"{[\\\\","t":["\\\\\\""]}'), '{"s":"}]\\"{[\\\\","t":["\\\\\\""]}');
    assert.equal(textOf(' {\n\t"a" : [ 1 , {"b":null} ] }'), '{\n\t"a" : [ 1 , {"b":null} ] }');
  });

  it('leave to serialising the numbers it would write differently', () => {
    for (const n of ['1e3', '1E3', '2.50', '1.0', '1234567890123456', '5e-2', '1e400', '-0', '-0.0'])
      assert.equal(textOf(`{"n":${n}}`), undefined, n);
    for (const n of ['0', '-1', '3.25', '123456789012345', '0.001', '-0.5']) assert.equal(textOf(`{"n":${n}}`), `{"n":${n}}`, n);
    assert.equal(textOf('{"s":"1e3 and 2.50 in a string"}'), '{"s":"1e3 and 2.50 in a string"}');
  });

  it('leave to the checks what they could refuse: NUL, unpaired surrogates, depth, size, a non-object', () => {
    assert.equal(textOf('{"s":"\\u0000"}'), undefined);
    assert.equal(textOf('{"s":"\\ud800"}'), undefined);
    assert.equal(textOf('{"s":"\\udc00\\ud800"}'), undefined);
    assert.equal(textOf('{"s":"\\ud83d\\ude00 \\u00e9"}'), '{"s":"\\ud83d\\ude00 \\u00e9"}');
    assert.equal(textOf('{"s":"\\\\u0000"}'), '{"s":"\\\\u0000"}', 'an escaped backslash before u0000 is not an escape');
    const nested = (depth: number) => '{"a":'.repeat(depth - 1) + '{}' + '}'.repeat(depth - 1);
    assert.ok(textOf(nested(32)));
    assert.equal(textOf(nested(33)), undefined);
    assert.ok(textOf(`{"s":"${'é'.repeat(8000)}"}`), 'within 16,384 bytes');
    assert.equal(textOf(`{"s":"${'é'.repeat(8200)}"}`), undefined, '16,408 bytes of UTF-8');
    assert.equal(textOf('[1]'), undefined);
    assert.equal(textOf('"x"'), undefined);
    assert.equal(storableEscapes('"\\u0000"'), false);
    assert.equal(storableEscapes('"\\ud83d\\ude00"'), true);
  });

  it('are not given for a body whose events are not all objects', () => {
    assert.equal(scan('{"events":[{"type":"a"},3]}').texts, undefined);
    assert.equal(scan('{"events":{"type":"a"}}').texts, undefined);
  });

  it('store what serialising would, and are accepted as the serialised data would be, for random data', () => {
    const random = seededRandom(11);
    let found = 0;
    for (let n = 0; n < 3000; n++) {
      const data = `{"a":${randomJson(random, 4)},"b":${randomJson(random, 3)}}`;
      const body = `{"events":[{"type":"x","data":${data}},{"data":${data},"type":"y","data":${data}}]}`;
      const { events, texts } = scan(body);
      assert.ok(texts);
      for (let i = 0; i < 2; i++) {
        const text = texts[i];
        const raw = (events[i] as { data: object }).data;
        const serialised = checkEvent(events[i], Date.now(), LIMITS);
        if (text === undefined) continue;
        found++;
        sameStored(text, raw);
        const asSent = checkEvent(events[i], Date.now(), LIMITS, undefined, 0, text);
        assert.equal(asSent.ok, serialised.ok, `same verdict for ${data}`);
      }
    }
    assert.ok(found > 1000, `most random data is stored as sent (${found})`);
  });
});
