import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { CLASS_INDEX, createFairShare, type FairShare } from '../app/shedding/fair-share.js';
import type { Priority } from '../lib/event-schema.js';

/** Feeds `perSecond` requests of each tenant and class for `seconds` in 250 ms ticks under fixed class probabilities. */
function run(
  fair: FairShare,
  demand: Record<string, Partial<Record<Priority, number>>>,
  p: Partial<Record<Priority, number>>,
  seconds = 10,
): void {
  for (let t = 0; t < seconds * 4; t++) {
    for (const [tenant, classes] of Object.entries(demand)) {
      const load = fair.load(tenant);
      for (const [priority, perSecond] of Object.entries(classes)) load.offered[CLASS_INDEX[priority as Priority]]! += perSecond / 4;
    }
    fair.update(0.25, (priority) => p[priority] ?? 0);
  }
}

const shed = (fair: FairShare, tenant: string, priority: Priority) => fair.load(tenant).shed[CLASS_INDEX[priority]]!;

/** Requests per second admitted over every tenant and class. */
function admitted(fair: FairShare, demand: Record<string, Partial<Record<Priority, number>>>): number {
  let sum = 0;
  for (const [tenant, classes] of Object.entries(demand)) {
    for (const [priority, perSecond] of Object.entries(classes)) sum += perSecond * (1 - shed(fair, tenant, priority as Priority));
  }
  return sum;
}

describe('weighted fair shedding', () => {
  it('sheds nothing while the controller sheds nothing', () => {
    const fair = createFairShare();
    run(fair, { a: { low: 1000 }, b: { low: 10 } }, {});
    assert.equal(shed(fair, 'a', 'low'), 0);
    assert.equal(shed(fair, 'b', 'low'), 0);
  });

  it('sheds a class a tenant has not sent lately as the class law does once its share is used up (no low request slips past shed normal traffic)', () => {
    const fair = createFairShare();
    run(fair, { a: { normal: 100 }, b: { critical: 10 } }, { normal: 0.5, low: 1 });
    assert.ok(shed(fair, 'a', 'normal') > 0, 'its normal traffic is being shed');
    assert.equal(shed(fair, 'a', 'low'), 1, 'so its first low request is shed too');
    assert.equal(shed(fair, 'b', 'low'), 0, 'a tenant with room left in its share is not');
  });

  it('with equal tenants, is the class law: the same probabilities for each, low before normal', () => {
    const fair = createFairShare();
    const demand = { a: { critical: 20, normal: 30, low: 50 }, b: { critical: 20, normal: 30, low: 50 } };
    run(fair, demand, { low: 0.6 });
    for (const tenant of ['a', 'b']) {
      assert.ok(Math.abs(shed(fair, tenant, 'low') - 0.6) < 0.01, `${tenant} low shed ${shed(fair, tenant, 'low')}`);
      assert.equal(shed(fair, tenant, 'normal'), 0);
      assert.equal(shed(fair, tenant, 'critical'), 0);
    }
  });

  it('sheds a tenant flooding at 10× before quiet tenants of the same class, and sheds what the class law asks in total', () => {
    const fair = createFairShare();
    const demand = { noisy: { low: 1000 }, quiet1: { low: 100 }, quiet2: { low: 100 } };
    run(fair, demand, { low: 0.7 });
    assert.equal(shed(fair, 'quiet1', 'low'), 0);
    assert.equal(shed(fair, 'quiet2', 'low'), 0);
    assert.ok(shed(fair, 'noisy', 'low') > 0.8, `noisy shed ${shed(fair, 'noisy', 'low')}`);
    const expected = 0.3 * 1200;
    assert.ok(
      Math.abs(admitted(fair, demand) - expected) < 1,
      `admitted ${admitted(fair, demand)} of the ${expected}/s the class law admits`,
    );
  });

  it("sheds a flooding tenant's normal traffic before a quiet tenant's low traffic, and its low before its normal", () => {
    const fair = createFairShare();
    const demand = { noisy: { critical: 200, normal: 300, low: 500 }, quiet: { critical: 20, normal: 30, low: 50 } };
    // Every low request shed, by the class law: 550 requests per second to shed.
    run(fair, demand, { low: 1 });
    assert.equal(shed(fair, 'quiet', 'low'), 0, 'the quiet tenant keeps its low traffic');
    assert.equal(shed(fair, 'noisy', 'low'), 1, "the noisy tenant's low goes first");
    assert.ok(
      shed(fair, 'noisy', 'normal') > 0 && shed(fair, 'noisy', 'normal') < 1,
      `then part of its normal: ${shed(fair, 'noisy', 'normal')}`,
    );
    assert.ok(Math.abs(admitted(fair, demand) - 550) < 1);
    assert.equal(fair.classFullyShed('low'), false, "the low gate stays closed: a quiet tenant's low is admitted");
  });

  it('never sheds the critical requests of a tenant within its share, alone or among equals', () => {
    const alone = createFairShare();
    run(alone, { only: { critical: 900, normal: 100, low: 100 } }, { low: 1, normal: 1 });
    assert.equal(shed(alone, 'only', 'critical'), 0);
    const equals = createFairShare();
    run(equals, { a: { critical: 500, low: 100 }, b: { critical: 500, low: 100 } }, { low: 1, normal: 1 });
    assert.equal(shed(equals, 'a', 'critical'), 0);
    assert.equal(shed(equals, 'b', 'critical'), 0);
    assert.equal(equals.classFullyShed('low'), true, 'everything non-critical is shed: the low gate may open');
  });

  it("sheds a tenant's flood of critical requests beyond its share before a quiet tenant's traffic", () => {
    const fair = createFairShare();
    // Everything non-critical shed, by the class law: the budget is the critical demand, 1000/s.
    run(fair, { noisy: { critical: 1000, low: 100 }, quiet: { normal: 5, low: 5 } }, { low: 1, normal: 1 });
    assert.equal(shed(fair, 'quiet', 'low'), 0, 'the quiet tenant is served');
    assert.equal(shed(fair, 'quiet', 'normal'), 0);
    assert.equal(shed(fair, 'noisy', 'low'), 1);
    assert.ok(
      Math.abs(shed(fair, 'noisy', 'critical') - 0.01) < 0.001,
      `only the noisy tenant's excess critical: ${shed(fair, 'noisy', 'critical')}`,
    );
    assert.equal(fair.classFullyShed('low'), false);
    assert.equal(fair.classFullyShed('normal'), false, "no gate opens on the quiet tenant's normal traffic either");
  });

  it('gives a tenant of weight 2 twice the share of one of weight 1', () => {
    const fair = createFairShare((tenant) => (tenant === 'big' ? 2 : 1));
    const demand = { big: { low: 1000 }, small: { low: 1000 } };
    run(fair, demand, { low: 0.7 });
    const big = 1000 * (1 - shed(fair, 'big', 'low'));
    const small = 1000 * (1 - shed(fair, 'small', 'low'));
    assert.ok(Math.abs(big - 2 * small) < 1, `admitted big ${big}/s, small ${small}/s`);
  });

  it('forgets tenants that went quiet, and bounds how many it tracks', () => {
    const fair = createFairShare();
    run(fair, { once: { low: 10 } }, {}, 1);
    run(fair, {}, {}, 30);
    assert.equal(fair.counts().tenants, 0);
    for (let i = 0; i < 20_000; i++) fair.load(`t${i}`);
    assert.ok(fair.counts().tenants <= 10_001, `${fair.counts().tenants} tenants tracked`);
  });
});
