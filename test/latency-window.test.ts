import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { createLatencyWindow } from '../lib/latency-window.js';

describe('latency window', () => {
  it('reports percentiles within the histogram precision (6.25 %)', () => {
    let t = 1_000_000;
    const w = createLatencyWindow(60, () => t);
    for (let i = 1; i <= 10_000; i++) w.record(i / 100); // 0.01 … 100 ms, uniform
    const s = w.snapshot(10);
    assert.equal(s.count, 10_000);
    for (const [got, want] of [
      [s.p50, 50],
      [s.p90, 90],
      [s.p99, 99],
      [s.p999, 99.9],
    ] as const) {
      assert.ok(Math.abs(got - want) / want <= 0.0625, `got ${got}, want ≈ ${want}`);
    }
    assert.ok(s.max >= 100 && s.max <= 106.25);
    t += 1;
  });

  it('forgets samples older than the window', () => {
    let t = 5_000_000;
    const w = createLatencyWindow(60, () => t);
    for (let i = 0; i < 100; i++) w.record(500);
    t += 11_000;
    for (let i = 0; i < 100; i++) w.record(2);
    assert.ok(w.snapshot(10).p99 < 3, 'the 10 s window no longer sees the slow second');
    assert.ok(w.snapshot(60).p99 >= 480, 'the 60 s window still does');
    t += 61_000;
    assert.equal(w.snapshot(60).count, 0);
  });

  it('handles zero, sub-microsecond and huge values', () => {
    const w = createLatencyWindow(10, () => 0);
    w.record(0);
    w.record(0.0004);
    w.record(3_600_000);
    const s = w.snapshot(10);
    assert.equal(s.count, 3);
    assert.equal(s.p50, 0);
    assert.ok(s.max >= 3_600_000 * 0.93);
  });
});
