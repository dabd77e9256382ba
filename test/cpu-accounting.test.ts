import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { cpuShares, createCpuMeter, fitApiCosts, goodputCeiling, leastSquares, processCpuMicros, type CpuSecond } from '../bench/cpu.js';

const second = (segment: string, admitted: number, refused: number, apiMicros: number): CpuSecond => ({
  segment,
  admitted,
  refused,
  elapsedMicros: 1e6,
  cpu: { api: apiMicros, generator: 400_000, worker: 100_000, redis: 30_000, postgres: 50_000 },
});

describe('benchmark CPU accounting', () => {
  it('reads the CPU a process spends from /proc, and a meter attributes it to its role', () => {
    const before = processCpuMicros(process.pid);
    assert.ok(before !== null && before > 0);
    const meter = createCpuMeter({ api: process.pid });
    // At least 50 ms of CPU and of wall time: a wall-clock spin alone gets less CPU on a busy machine, and CPU
    // time alone (every thread of the process) can pass 50 ms in less wall time on an idle one.
    const start = process.cpuUsage();
    const until = performance.now() + 50;
    const cpuSpent = () => process.cpuUsage(start).user + process.cpuUsage(start).system;
    while (performance.now() < until || cpuSpent() < 50_000);
    const { cpu, elapsedMicros } = meter.tick();
    assert.ok(elapsedMicros >= 50_000);
    // /proc counts in clock ticks (10 ms): the spin shows up as 40 ms or more.
    assert.ok(cpu.api >= 40_000, `api ${cpu.api} µs`);
    assert.ok(cpu.generator >= 40_000, `generator ${cpu.generator} µs`);
    assert.equal(processCpuMicros(2 ** 22 + 1), null, 'a process that does not exist has no CPU');
  });

  it('recovers what an admitted and a refused request cost from seconds of mixed load', () => {
    const A = 240;
    const R = 90;
    // Seconds as a run produces them: admitted-only, then more and more refused, with ±3 % noise.
    const noise = [1.02, 0.97, 1.01, 0.99, 1.03, 0.98, 1, 1.02, 0.97, 1.01];
    const seconds = noise.map((n, i) => {
      const admitted = 3000 - i * 200;
      const refused = i * 600;
      return second('2×C', admitted, refused, (admitted * A + refused * R) * n);
    });
    const costs = fitApiCosts(seconds)!;
    assert.ok(Math.abs(costs.admittedMicros - A) / A < 0.1, `A ${costs.admittedMicros}`);
    assert.ok(costs.refusedMicros !== null && Math.abs(costs.refusedMicros - R) / R < 0.15, `R ${costs.refusedMicros}`);
    assert.equal(costs.seconds, noise.length);
  });

  it('fits only the admission cost when nothing was refused, and nothing from no answers', () => {
    const costs = fitApiCosts([second('2×C', 4000, 0, 960_000), second('2×C', 3800, 10, 913_000)])!;
    assert.equal(costs.refusedMicros, null);
    assert.ok(Math.abs(costs.admittedMicros - 240) < 2);
    assert.equal(fitApiCosts([second('pause', 0, 0, 20_000)]), null);
  });

  it('bounds goodput by what one core can admit after refusing the rest', () => {
    const costs = { admittedMicros: 200, refusedMicros: 50, seconds: 10 };
    // 2000 offered: 2000 × 50 µs = 0.1 core refusing all, and each admission instead of a refusal costs 150 µs more.
    assert.equal(Math.round(goodputCeiling(costs, 2000)), 2000, 'below capacity everything can be admitted');
    assert.equal(Math.round(goodputCeiling(costs, 10_000)), Math.round((1e6 - 10_000 * 50) / 150));
    assert.equal(goodputCeiling(costs, 30_000), 0, 'refusals alone fill the core');
    assert.equal(leastSquares([[1, 2]], [3]), null, 'fewer equations than unknowns');
  });

  it('reports each role’s share of a core over a segment', () => {
    const seconds = [second('2×C', 100, 0, 900_000), second('2×C', 100, 0, 700_000), second('4×C', 1, 0, 10_000)];
    const shares = cpuShares(seconds, '2×C');
    assert.equal(shares.api, 0.8);
    assert.equal(shares.generator, 0.4);
    assert.equal(shares.total, 1.38);
  });
});
