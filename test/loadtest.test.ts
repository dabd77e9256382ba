import assert from 'node:assert/strict';
import { mkdtemp, readFile, readdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { createApiKey } from '../lib/api-keys.js';
import type { Report } from '../loadtest/report.js';
import { runScenario, type LoadtestOptions } from '../loadtest/run-scenario.js';
import type { ScenarioName } from '../loadtest/scenarios.js';
import { createTestEnv, envVars, eventually, freePort, spawnFloodgate, type FloodgateProcess, type TestEnv } from './support.js';

/** Rows stored for a run. */
async function runRows(env: TestEnv, runId: string): Promise<number> {
  const { rows } = await env.pool.query<{ n: string }>("SELECT count(*) AS n FROM events WHERE data->>'run' = $1", [runId]);
  return Number(rows[0]!.n);
}

describe('floodgate loadtest against a live Floodgate', () => {
  let env: TestEnv;
  let api: FloodgateProcess;
  let worker: FloodgateProcess;
  let url: string;
  let key: string;
  let out: string;
  before(async () => {
    env = await createTestEnv();
    out = await mkdtemp(join(tmpdir(), 'floodgate-loadtest-'));
    const port = await freePort();
    url = `http://127.0.0.1:${port}`;
    api = await spawnFloodgate(['api'], envVars(env, { PORT: String(port), HOST: '127.0.0.1', API_PROCESSES: '1' }));
    worker = await spawnFloodgate(['worker'], envVars(env, { FLUSH_INTERVAL_MS: '50' }));
    key = (await createApiKey(env.pool, { tenant: 'lt' })).key;
    await eventually(async () => (await fetch(`${url}/readyz`).catch(() => null))?.status === 200, 'api ready', 30_000);
  });
  after(async () => {
    for (const p of [api, worker]) p?.child.kill('SIGTERM');
    await Promise.all([api?.exited, worker?.exited]);
    await rm(out, { recursive: true, force: true });
    await env?.cleanup();
  });

  const options = (scenario: ScenarioName, extra: Partial<LoadtestOptions> = {}): LoadtestOptions => ({
    scenario,
    url,
    key,
    seed: 7,
    databaseUrl: env.databaseUrl,
    timeoutSeconds: 10,
    sloP99Ms: 50,
    drainTimeoutMs: 20_000,
    progress: false,
    out,
    ...extra,
  });

  /** Fields every report carries, checked on the JSON written to --out. */
  async function assertReport(report: Report, scenario: string, tolerated: RegExp[] = []): Promise<Report> {
    const written = JSON.parse(await readFile(join(out, `${scenario}-${report.runId}.json`), 'utf8')) as Report;
    assert.equal(written.scenario, scenario);
    assert.equal(written.target, `${url}/v1/events`, 'only the given URL is targeted');
    assert.ok(written.samples.length >= 1, 'per-second samples');
    for (const s of written.samples) assert.ok(typeof s.t === 'number' && typeof s.total.latency.p99 === 'number' && s.segment);
    assert.ok(written.summary.total.requests > 0);
    assert.ok(written.summary.total.ok > 0, `${scenario}: some requests accepted: ${JSON.stringify(written.summary.total.status)}`);
    for (const field of ['requestsPerSec', 'eventsPerSec', 'shedPct', 'errors', 'timeouts', 'status'] as const)
      assert.ok(field in written.summary.total, field);
    for (const q of ['p50', 'p90', 'p99', 'p999'] as const) assert.ok(written.summary.total.latency[q] > 0, q);
    assert.ok('ok' in written.integrity, 'integrity checked');
    assert.equal(written.integrity.ok, true, `${scenario}: ${JSON.stringify(written.integrity)}`);
    assert.equal(written.integrity.missing, 0);
    assert.equal(written.integrity.duplicated, 0);
    assert.ok(written.integrity.acknowledged > 0);
    const files = await readdir(out);
    assert.ok(files.includes(`${scenario}-${report.runId}.md`), 'markdown report');
    assert.match(
      await readFile(join(out, `${scenario}-${report.runId}.svg`), 'utf8'),
      /^<svg[^>]+xmlns="http:\/\/www.w3.org\/2000\/svg"[\s\S]*<polyline/,
    );
    assert.deepEqual(
      written.problems.filter((p) => !tolerated.some((t) => t.test(p))),
      [],
    );
    return written;
  }

  it('smoke, steady (with the 20/30/50 mix), soak and batch run briefly and report every class, percentile and stored event', async () => {
    const smoke = await assertReport((await runScenario(options('smoke', { duration: 2 }))).report, 'smoke');
    assert.equal(
      smoke.integrity && 'ok' in smoke.integrity && smoke.integrity.acknowledged,
      smoke.summary.total.ok,
      'one event per request',
    );

    const steady = await assertReport(
      (
        await runScenario(
          options('steady', {
            duration: 2,
            rate: 20,
            mix: [
              { priority: 'critical', share: 20 },
              { priority: 'normal', share: 30 },
              { priority: 'low', share: 50 },
            ],
          }),
        )
      ).report,
      'steady',
    );
    assert.deepEqual(Object.keys(steady.summary.classes).sort(), ['critical', 'low', 'normal']);

    const soak = await assertReport((await runScenario(options('soak', { duration: 2, rate: 10 }))).report, 'soak');
    assert.ok(soak.drift && typeof soak.drift.lastP99Ms === 'number', 'soak reports drift');

    const batch = await assertReport((await runScenario(options('batch', { duration: 2, rate: 5, batchSize: 10 }))).report, 'batch');
    assert.equal(batch.summary.total.events, 10 * batch.summary.total.ok, 'ten events per accepted request');
    assert.ok('ok' in batch.integrity && batch.integrity.acknowledged === batch.summary.total.events);
  });

  it('ramp reports the capacity; spike and overload report recovery and per-level figures', async () => {
    const ramp = await assertReport(
      (await runScenario(options('ramp', { duration: 3, rate: 5, stepSeconds: 1, sloP99Ms: 60_000 }))).report,
      'ramp',
    );
    assert.equal(ramp.segments.length, 3, 'three one-second steps');
    assert.ok(ramp.capacity && ramp.capacity.capacity !== null && ramp.capacity.steps.length === 3);

    const spike = await assertReport((await runScenario(options('spike', { duration: 3, rate: 4 }))).report, 'spike');
    assert.deepEqual(
      spike.segments.map((s) => s.label),
      ['before', 'spike 5×', 'after'],
    );
    assert.ok(spike.spike && 'recoverySeconds' in spike.spike);

    const overload = await assertReport((await runScenario(options('overload', { duration: 2, capacity: 5 }))).report, 'overload');
    assert.deepEqual(
      overload.segments.map((s) => s.label),
      ['warm-up ½C', 'unloaded ½C', '2×C', '4×C', 'recovery ½C'],
    );
    assert.deepEqual(
      overload.overload?.levels.map((l) => [l.level, l.offered]),
      [
        ['2×C', 10],
        ['4×C', 20],
      ],
    );
    for (const l of overload.overload.levels) assert.ok(l.criticalSuccessPct >= 0 && typeof l.goodputOverC === 'number');
  });

  it('duplicates: a retry storm of repeated idempotency keys stores each event once', async () => {
    const { report } = await runScenario(options('duplicates', { duration: 2, rate: 20 }));
    const written = await assertReport(report, 'duplicates');
    assert.ok(written.retries > 0, 'some requests were retries');
    assert.ok('ok' in written.integrity);
    assert.ok(written.acknowledgedIds > written.integrity.acknowledged, 'retries were acknowledged again (with the ids answered first)');
    assert.equal(
      written.integrity.storedRows,
      written.integrity.acknowledged + written.integrity.unacknowledgedStored,
      'one row per event',
    );
  });

  it('noisy-neighbour, slow-upload and unauthenticated-flood run briefly and report each tenant', async () => {
    for (const [scenario, tenants] of [
      ['noisy-neighbour', ['a', 'b', 'c']],
      ['slow-upload', ['b', 'c', 'slow']],
      ['unauthenticated-flood', ['b', 'c', 'unauthenticated']],
    ] as const) {
      const { report } = await runScenario(options(scenario, { duration: 2, rate: 5 }));
      assert.deepEqual(
        report.segments.map((s) => s.label),
        ['before', report.tenants!.segment, 'after'],
      );
      assert.deepEqual(report.tenants!.tenants.map((t) => t.tenant).sort(), [...tenants].sort(), scenario);
      for (const t of report.tenants!.tenants)
        assert.ok(t.requestsPerSec > 0 && t.p99Ms > 0, `${scenario}: ${t.tenant} sent and was timed`);
      if (scenario === 'unauthenticated-flood') {
        assert.ok(
          (report.tenants!.tenants.find((t) => t.tenant === 'unauthenticated')!.status[401] ?? 0) > 0,
          'keys nobody issued get 401',
        );
      }
      // Whether the steady tenants kept the aim depends on how busy the machine is; the report must say which.
      const steady = report.tenants!.tenants.filter((t) => t.tenant === 'b' || t.tenant === 'c');
      assert.equal(
        report.tenants!.steadyMet,
        steady.every((t) => t.successPct >= 99 && t.p99Ms <= 50),
        JSON.stringify(report.tenants),
      );
      assert.equal(
        report.problems.some((p) => /steady tenants b and c/.test(p)),
        !report.tenants!.steadyMet,
      );
      await assertReport(report, scenario, [/steady tenants b and c/]);
    }
  });

  it('the integrity check catches an acknowledged event deleted behind its back and a duplicated row', async () => {
    const { report } = await runScenario(
      options('smoke', {
        duration: 2,
        drainTimeoutMs: 3000,
        async beforeIntegrity(runId) {
          await eventually(async () => (await runRows(env, runId)) >= 40, 'the run stored');
          await env.pool.query(
            "DELETE FROM events WHERE id = (SELECT id FROM events WHERE data->>'run' = $1 ORDER BY (data->>'seq')::int LIMIT 1)",
            [runId],
          );
          // The same event again under another id: the primary key (occurred_at, id) does not stop it.
          await env.pool.query(
            `INSERT INTO events (id, tenant, type, occurred_at, received_at, source, idempotency_key, priority, value, data)
             SELECT gen_random_uuid(), tenant, type, occurred_at, received_at, source, idempotency_key, priority, value, data
             FROM events WHERE data->>'run' = $1 ORDER BY (data->>'seq')::int DESC LIMIT 1`,
            [runId],
          );
        },
      }),
    );
    assert.ok('ok' in report.integrity);
    assert.equal(report.integrity.ok, false);
    assert.equal(report.integrity.missing, 1);
    assert.deepEqual(report.integrity.missingSample, [0]);
    assert.equal(report.integrity.duplicated, 1);
    assert.ok(
      report.problems.some((p) => /1 acknowledged events missing, 1 duplicated/.test(p)),
      report.problems.join('; '),
    );
  });

  it('floodgate loadtest smoke exits 0 and prints the table; compare exits 1 on a regression and 0 without', async () => {
    const vars = envVars(env);
    const run = await (
      await spawnFloodgate(
        ['loadtest', 'smoke', '--url', url, '--key', key, '--duration', '1', '--out', out, '--database-url', env.databaseUrl],
        vars,
      )
    ).exited;
    assert.equal(run.code, 0, run.stderr + run.stdout);
    assert.match(run.stdout, /class\s+req\/s\s+events\/s\s+p50 ms\s+p90 ms\s+p99 ms\s+p99\.9 ms/);
    assert.match(run.stdout, /integrity: OK — 20 events acknowledged/);
    assert.match(run.stderr, /^\s+1s\s+smoke\s+offered\s+20\/s/m, 'a progress line per second');
    const a = /reports: (\S+\.json)/.exec(run.stdout)![1]!;

    const worse = JSON.parse(await readFile(a, 'utf8')) as Report;
    worse.summary.total.requestsPerSec /= 2;
    worse.summary.total.latency = { ...worse.summary.total.latency, p99: worse.summary.total.latency.p99 + 100 };
    const b = join(out, 'worse.json');
    await writeFile(b, JSON.stringify(worse));
    const regressed = await (await spawnFloodgate(['loadtest', 'compare', a, b, '--threshold', '10%'], vars)).exited;
    assert.equal(regressed.code, 1, regressed.stderr);
    assert.match(regressed.stdout, /all req\/s .*-50%\s+REGRESSION/);
    assert.match(regressed.stdout, /all p99 ms .*REGRESSION/);
    const same = await (await spawnFloodgate(['loadtest', 'compare', a, a], vars)).exited;
    assert.equal(same.code, 0, same.stdout);
    assert.match(same.stdout, /no regression beyond 10%/);

    const noScenario = await (await spawnFloodgate(['loadtest', 'frobnicate'], {})).exited;
    assert.equal(noScenario.code, 2);
    assert.match(
      noScenario.stderr,
      /loadtest needs a scenario \(smoke, steady, ramp, spike, overload, soak, batch, duplicates, noisy-neighbour, slow-upload, unauthenticated-flood, clients\)/,
    );
  });
});
