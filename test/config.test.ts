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
});
