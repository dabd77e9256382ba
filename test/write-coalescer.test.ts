import assert from 'node:assert/strict';
import { setTimeout as sleep } from 'node:timers/promises';
import { describe, it } from 'node:test';
import { createWriteCoalescer } from '../app/write-coalescer.js';

/** A command that records the tick (a counter bumped by setImmediate) it was issued in, and answers `value`. */
function recorder() {
  let tick = 0;
  let ticking = true;
  const bump = () => {
    tick++;
    if (ticking) setImmediate(bump);
  };
  setImmediate(bump);
  const issued: number[] = [];
  const command =
    <T>(value: T, fail = false) =>
    () => {
      issued.push(tick);
      return fail ? Promise.reject(new Error(`failed ${String(value)}`)) : Promise.resolve(value);
    };
  return { issued, command, stop: () => (ticking = false) };
}

describe('the write coalescer', () => {
  it('issues a command at once after a quiet spell, and holds those that follow closely to issue them together', async () => {
    const coalescer = createWriteCoalescer(200);
    const r = recorder();
    try {
      const first = coalescer.run(r.command('a'));
      assert.equal(r.issued.length, 1, 'the first command of a quiet spell runs at once');
      const held = [coalescer.run(r.command('b')), coalescer.run(r.command('c'))];
      await sleep(2);
      const last = coalescer.run(r.command('d'));
      assert.equal(r.issued.length, 1, 'the others wait for the window');
      assert.deepEqual(await Promise.all([first, ...held, last]), ['a', 'b', 'c', 'd']);
      assert.equal(new Set(r.issued.slice(1)).size, 1, `held commands are issued in one tick: ${r.issued.join(',')}`);
    } finally {
      r.stop();
    }
  });

  it('never holds an urgent (critical) command, and sends the held ones with it', async () => {
    const coalescer = createWriteCoalescer(60_000);
    const r = recorder();
    try {
      const first = coalescer.run(r.command('a'));
      const held = [coalescer.run(r.command('b')), coalescer.run(r.command('c'))];
      assert.equal(r.issued.length, 1, 'b and c wait for the window');
      const urgent = coalescer.run(r.command('critical'), true);
      assert.equal(r.issued.length, 4, 'the urgent command is issued at once, and the held ones with it');
      assert.equal(new Set(r.issued.slice(1)).size, 1, `in one tick: ${r.issued.join(',')}`);
      // Another urgent command takes along what was held since.
      void coalescer.run(r.command('held'));
      const alone = coalescer.run(r.command('critical alone'), true);
      assert.equal(r.issued.length, 6);
      assert.deepEqual(await Promise.all([first, ...held, urgent, alone]), ['a', 'b', 'c', 'critical', 'critical alone']);
    } finally {
      r.stop();
    }
  });

  it('answers each command with its own outcome: one failing fails no other', async () => {
    const coalescer = createWriteCoalescer(5);
    const r = recorder();
    try {
      const results = await Promise.allSettled([
        coalescer.run(r.command(1)),
        coalescer.run(r.command(2, true)),
        coalescer.run(r.command(3)),
        coalescer.run(() => {
          throw new Error('thrown');
        }),
      ]);
      assert.deepEqual(
        results.map((s) => (s.status === 'fulfilled' ? s.value : (s.reason as Error).message)),
        [1, 'failed 2', 3, 'thrown'],
      );
    } finally {
      r.stop();
    }
  });

  it('issues a full batch without waiting for the window, and holds nothing when turned off', async () => {
    const coalescer = createWriteCoalescer(10_000, 3);
    const r = recorder();
    try {
      const started = Date.now();
      const answers = await Promise.all([1, 2, 3, 4].map((n) => coalescer.run(r.command(n))));
      assert.deepEqual(answers, [1, 2, 3, 4]);
      assert.ok(Date.now() - started < 5_000, 'a full batch does not wait for its 10 s window');
      const off = createWriteCoalescer(0);
      const before = r.issued.length;
      void off.run(r.command(5));
      void off.run(r.command(6));
      assert.equal(r.issued.length, before + 2);
    } finally {
      r.stop();
    }
  });
});
