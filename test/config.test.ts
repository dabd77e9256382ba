import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { ConfigError, loadConfig } from '../lib/config.js';

describe('loadConfig', () => {
  it('applies the defaults and freezes the result', () => {
    const config = loadConfig({});
    assert.equal(config.port, 8080);
    assert.equal(config.redisUrl, 'redis://127.0.0.1:6379/0');
    assert.equal(config.maxBatchEvents, 1000);
    assert.ok(config.apiProcesses >= 1);
    assert.ok(Object.isFrozen(config));
  });

  it('lists every problem at once', () => {
    try {
      loadConfig({ PORT: 'abc', API_PROCESSES: '0', REDIS_URL: 'http://x', LOG_LEVEL: 'loud' });
      assert.fail('expected a ConfigError');
    } catch (err) {
      assert.ok(err instanceof ConfigError);
      assert.equal(err.problems.length, 4);
      for (const name of ['PORT', 'API_PROCESSES', 'REDIS_URL', 'LOG_LEVEL']) assert.match(err.message, new RegExp(name));
    }
  });

  it('refuses a decompressed limit below the wire limit', () => {
    assert.throws(() => loadConfig({ MAX_BODY_BYTES: '2048', MAX_DECOMPRESSED_BYTES: '1024' }), /MAX_DECOMPRESSED_BYTES/);
  });

  it('gives critical traffic a tighter latency target than the rest, and refuses inverted class targets', async () => {
    const { classTargets } = await import('../app/shedding/controller.js');
    assert.deepEqual(classTargets(loadConfig({})), { critical: 25, normal: 50, low: 50 }, 'critical takes half by default');
    assert.deepEqual(
      classTargets(loadConfig({ SHED_TARGET_P99_MS: '80', SHED_TARGET_P99_CRITICAL_MS: '10', SHED_TARGET_P99_LOW_MS: '200' })),
      {
        critical: 10,
        normal: 80,
        low: 200,
      },
    );
    assert.throws(
      () => loadConfig({ SHED_TARGET_P99_CRITICAL_MS: '60' }),
      /SHED_TARGET_P99_CRITICAL_MS must be at most SHED_TARGET_P99_MS/,
    );
    assert.throws(() => loadConfig({ SHED_TARGET_P99_LOW_MS: '20' }), /SHED_TARGET_P99_LOW_MS must be at least SHED_TARGET_P99_MS/);
    assert.throws(() => loadConfig({ SHED_NONCRITICAL_MAX_IN_FLIGHT: '-1' }), /SHED_NONCRITICAL_MAX_IN_FLIGHT/);
    assert.throws(() => loadConfig({ SHED_QUEUE_TIMEOUT_MS: '0' }), /SHED_QUEUE_TIMEOUT_MS/);
    assert.equal(loadConfig({ SHED_NONCRITICAL_MAX_IN_FLIGHT: '0' }).shedNoncriticalMaxInFlight, 0, '0 turns the limit off');
  });
});
