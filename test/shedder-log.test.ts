import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { Writable } from 'node:stream';
import { describe, it } from 'node:test';
import { pino } from 'pino';
import { Registry } from 'prom-client';
import type { ControllerState, ShedController } from '../app/shedding/controller.js';
import { createShedder } from '../app/shedding/shedder.js';
import { createLatencyWindow } from '../lib/latency-window.js';
import { loadConfig } from '../lib/config.js';
import { createRedis } from '../lib/redis.js';
import { TEST_REDIS_URL } from './support.js';

describe('shedder logs', () => {
  it("report the shed level as shedLevel, leaving pino's level field to mean the log level", async () => {
    const lines: Record<string, unknown>[] = [];
    const sink = new Writable({
      write(chunk: Buffer, _encoding, done) {
        for (const line of chunk.toString().split('\n').filter(Boolean)) lines.push(JSON.parse(line) as Record<string, unknown>);
        done();
      },
    });
    // A controller that is shedding, so that the first tick logs it.
    const state: ControllerState = {
      level: 1.5,
      pressure: 3,
      classPressure: { critical: 0, normal: 3, low: 0 },
      backlogFloor: 0,
      normalHeldOffSeconds: 0,
      shedProbability: { critical: 0, normal: 0.5, low: 1 },
      latencyCounted: true,
    };
    const controller: ShedController = { tick: () => state, probability: () => 0, overHardLimit: () => false, state: () => state };
    const redis = createRedis(TEST_REDIS_URL);
    const shedder = createShedder({
      config: loadConfig({ STREAM_KEY: `test:${randomUUID()}:events`, SHED_MODE: 'enforce' }),
      latency: createLatencyWindow(60),
      redis,
      registry: new Registry(),
      logger: pino({ level: 'info' }, sink),
      controller,
    });
    try {
      shedder.tick();
      await new Promise((resolve) => setImmediate(resolve));
      const shedding = lines.find((l) => l.msg === 'shedding non-critical traffic');
      assert.ok(shedding, JSON.stringify(lines));
      assert.equal(shedding.level, 40, 'pino warn');
      assert.equal(shedding.shedLevel, 1.5);
    } finally {
      await shedder.close();
      redis.disconnect();
    }
  });
});
