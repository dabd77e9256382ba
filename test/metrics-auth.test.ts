import assert from 'node:assert/strict';
import { networkInterfaces } from 'node:os';
import { after, before, describe, it } from 'node:test';
import { createLogger } from '../lib/logger.js';
import { runWorker, type RunningWorker } from '../workers/run.js';
import { createTestEnv, envVars, eventually, freePort, spawnFloodgate, type FloodgateProcess, type TestEnv } from './support.js';

/** An address of this machine other than loopback: what another host on the network would connect to. */
function externalAddress(): string {
  const address = Object.values(networkInterfaces())
    .flat()
    .find((a) => a && a.family === 'IPv4' && !a.internal)?.address;
  if (!address) assert.fail('this machine has no non-loopback IPv4 address, so a metrics endpoint cannot be probed from outside');
  return address;
}

/** The status of GET /metrics at host:port, or the connection error's code. */
async function scrape(host: string, port: number, token?: string): Promise<number | string> {
  try {
    const res = await fetch(`http://${host}:${port}/metrics`, { headers: token ? { authorization: `Bearer ${token}` } : {} });
    await res.arrayBuffer();
    return res.status;
  } catch (err) {
    return ((err as Error).cause as { code?: string } | undefined)?.code ?? String(err);
  }
}

describe('metrics endpoints: their own bind address and an optional token', () => {
  let env: TestEnv;
  let worker: RunningWorker | undefined;
  let api: FloodgateProcess | undefined;
  before(async () => {
    env = await createTestEnv();
  });
  after(async () => {
    await worker?.close();
    if (api && api.child.exitCode === null) {
      api.child.kill('SIGTERM');
      await api.exited;
    }
    await env?.cleanup();
  });

  it('the worker listens on loopback by default even when HOST is every address', async () => {
    const port = await freePort();
    // METRICS_HOST left at its default.
    const config = Object.freeze({ ...env.config, host: '0.0.0.0', workerMetricsPort: port });
    worker = await runWorker(config, createLogger('silent', 'worker'));
    try {
      assert.equal(await scrape('127.0.0.1', port), 200);
      assert.equal(await scrape(externalAddress(), port), 'ECONNREFUSED', 'not reachable from the network');
    } finally {
      await worker.close();
      worker = undefined;
    }
  });

  it('the worker answers 401 without the METRICS_TOKEN, 200 with it', async () => {
    const port = await freePort();
    const config = Object.freeze({ ...env.config, workerMetricsPort: port, metricsHost: '0.0.0.0', metricsToken: 'scrape-secret' });
    worker = await runWorker(config, createLogger('silent', 'worker'));
    for (const host of ['127.0.0.1', externalAddress()]) {
      assert.equal(await scrape(host, port), 401, host);
      assert.equal(await scrape(host, port, 'not-it'), 401, host);
      assert.equal(await scrape(host, port, 'scrape-secret'), 200, host);
    }
  });

  it('the API cluster: loopback by default, and the token required when set', async () => {
    const [port, metricsPort] = [await freePort(), await freePort()];
    api = await spawnFloodgate(
      ['api'],
      envVars(env, {
        PORT: String(port),
        HOST: '0.0.0.0',
        API_PROCESSES: '2',
        METRICS_PORT: String(metricsPort),
        METRICS_TOKEN: 'api-secret',
      }),
    );
    await eventually(async () => (await fetch(`http://127.0.0.1:${port}/readyz`).catch(() => null))?.status === 200, 'api ready', 30_000);
    await eventually(async () => (await scrape('127.0.0.1', metricsPort, 'api-secret')) === 200, 'metrics endpoint up');
    assert.equal(await scrape('127.0.0.1', metricsPort), 401);
    assert.equal(await scrape(externalAddress(), metricsPort, 'api-secret'), 'ECONNREFUSED');
    const res = await fetch(`http://127.0.0.1:${metricsPort}/metrics`);
    assert.equal(res.headers.get('www-authenticate'), 'Bearer');
    await res.arrayBuffer();
  });
});
