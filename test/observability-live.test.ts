import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { after, before, describe, it } from 'node:test';
import { createApiKey } from '../lib/api-keys.js';
import { startLocalPostgres, type LocalService } from '../cli/local-services.js';
import { allDashboardQueries } from '../grafana/generate.js';
import { TARGET_METRIC } from '../grafana/variables.js';
import { createTestEnv, envVars, eventually, freePort, spawnFloodgate, type FloodgateProcess, type TestEnv } from './support.js';

const RULES_DIR = fileURLToPath(new URL('../prometheus/rules/', import.meta.url));

async function recordingRules(): Promise<{ record: string; expr: string }[]> {
  const text = await readFile(join(RULES_DIR, 'recording.yml'), 'utf8');
  const rules: { record: string; expr: string }[] = [];
  // The rules file is plain YAML written by us: `- record: name` followed by `expr: …` (one line or a `|` block).
  const lines = text.split('\n');
  for (let i = 0; i < lines.length; i++) {
    const record = /^\s*- record:\s*(\S+)/.exec(lines[i]!);
    if (!record) continue;
    const exprLine = lines[i + 1]!;
    const inline = /^\s*expr:\s*(.+)$/.exec(exprLine);
    if (inline && !/^[|>]-?$/.test(inline[1]!.trim())) {
      rules.push({ record: record[1]!, expr: inline[1]!.trim().replace(/^'(.*)'$/, '$1') });
    }
  }
  return rules;
}

describe('dashboards and recording rules against a real Prometheus scraping a loaded Floodgate', () => {
  let env: TestEnv;
  let api: FloodgateProcess;
  let worker: FloodgateProcess;
  let prometheus: ChildProcess;
  let promUrl: string;
  let dir: string;
  let pgDir: string;
  let postgres: LocalService;

  before(async () => {
    // A private PostgreSQL with pg_stat_statements preloaded, so the statement panels have data too.
    pgDir = await mkdtemp(join(tmpdir(), 'floodgate-pg-'));
    const pgAdminUrl = `postgres://postgres@127.0.0.1:${await freePort()}/postgres`;
    postgres = await startLocalPostgres(pgAdminUrl, pgDir, ['shared_preload_libraries=pg_stat_statements']);
    env = await createTestEnv({}, pgAdminUrl);
    await env.pool.query('CREATE EXTENSION pg_stat_statements');
    const [port, metricsPort, workerMetricsPort, promPort] = [await freePort(), await freePort(), await freePort(), await freePort()];
    api = await spawnFloodgate(
      ['api'],
      envVars(env, { PORT: String(port), HOST: '127.0.0.1', API_PROCESSES: '2', METRICS_PORT: String(metricsPort) }),
    );
    worker = await spawnFloodgate(['worker'], envVars(env, { HOST: '127.0.0.1', WORKER_METRICS_PORT: String(workerMetricsPort) }));
    const url = `http://127.0.0.1:${port}`;
    await eventually(async () => (await fetch(`${url}/readyz`).catch(() => null))?.status === 200, 'api ready', 30_000);

    dir = await mkdtemp(join(tmpdir(), 'floodgate-prom-'));
    await writeFile(
      join(dir, 'prometheus.yml'),
      [
        'global: { scrape_interval: 1s, evaluation_interval: 1s }',
        `rule_files: ['${RULES_DIR}*.yml']`,
        'scrape_configs:',
        `  - job_name: floodgate-api\n    static_configs: [{ targets: ['127.0.0.1:${metricsPort}'] }]`,
        `  - job_name: floodgate-worker\n    static_configs: [{ targets: ['127.0.0.1:${workerMetricsPort}'] }]`,
      ].join('\n'),
    );
    prometheus = spawn(
      'prometheus',
      [
        `--config.file=${join(dir, 'prometheus.yml')}`,
        `--storage.tsdb.path=${join(dir, 'data')}`,
        `--web.listen-address=127.0.0.1:${promPort}`,
      ],
      {
        stdio: 'ignore',
      },
    );
    prometheus.once('error', (err) => assert.fail(`prometheus could not start: ${err.message} (apt-get install prometheus)`));
    promUrl = `http://127.0.0.1:${promPort}`;

    // Load: every priority, batches, duplicates, some invalid events and some errors, for several scrapes.
    const { key } = await createApiKey(env.pool, { tenant: 'observed' });
    const headers = (priority: string) => ({ 'content-type': 'application/json', authorization: `Bearer ${key}`, 'x-priority': priority });
    const deadline = Date.now() + 12_000;
    let i = 0;
    while (Date.now() < deadline) {
      const priority = ['critical', 'normal', 'low'][i % 3]!;
      await Promise.all([
        fetch(`${url}/v1/events`, {
          method: 'POST',
          headers: headers(priority),
          body: JSON.stringify({ events: [{ type: 'seen', idempotency_key: `k${i % 50}` }, { type: 'bad type' }] }),
        }),
        fetch(`${url}/v1/events`, { method: 'POST', headers: headers(priority), body: JSON.stringify({ type: 'single', data: { i } }) }),
        fetch(`${url}/v1/events`, { method: 'POST', headers: headers(priority), body: '{"type":' }),
        fetch(`${url}/v1/nope`),
      ]).then((all) => Promise.all(all.map((r) => r.arrayBuffer())));
      i++;
      await new Promise((r) => setTimeout(r, 20));
    }
    await eventually(
      async () => {
        const res = await fetch(`${promUrl}/api/v1/query?query=${encodeURIComponent('count(up == 1)')}`).catch(() => null);
        const body = res ? ((await res.json()) as { data?: { result?: { value: [number, string] }[] } }) : null;
        return body?.data?.result?.[0]?.value[1] === '2';
      },
      'prometheus scraping both targets',
      30_000,
    );
  });

  after(async () => {
    prometheus?.kill('SIGTERM');
    for (const p of [api, worker]) p?.child.kill('SIGTERM');
    await Promise.all([
      api?.exited,
      worker?.exited,
      prometheus ? new Promise((r) => (prometheus.exitCode !== null ? r(null) : prometheus.once('exit', r))) : null,
    ]);
    if (dir) await rm(dir, { recursive: true, force: true });
    await env?.cleanup();
    await postgres?.stop();
    if (pgDir) await rm(pgDir, { recursive: true, force: true });
  });

  async function query(expr: string): Promise<{ status: string; error?: string; data?: { result: unknown[] } }> {
    const res = await fetch(`${promUrl}/api/v1/query?query=${encodeURIComponent(expr)}`);
    return (await res.json()) as { status: string; error?: string; data?: { result: unknown[] } };
  }

  it('every dashboard panel query parses and returns data', async () => {
    const queries = allDashboardQueries();
    assert.ok(queries.length > 40);
    const empty: string[] = [];
    await eventually(
      async () => {
        empty.length = 0;
        for (const q of queries) {
          const answer = await query(q.expr);
          assert.equal(answer.status, 'success', `${q.dashboard} / ${q.panel}: ${q.expr}: ${answer.error}`);
          const hasData = (answer.data?.result.length ?? 0) > 0;
          // No excuses: a panel without data on a loaded system is a bug.
          if (!hasData) empty.push(`${q.dashboard} / ${q.panel}: ${q.expr}`);
        }
        return empty.length === 0;
      },
      'every panel to show data',
      60_000,
    ).catch(() => assert.fail(`panels with no data:\n${empty.join('\n')}`));
  });

  it("the job and instance variables list the API's and the worker's targets", async () => {
    const answer = (await query(`count by (job, instance) (${TARGET_METRIC})`)) as { data?: { result: { metric: { job: string } }[] } };
    assert.deepEqual(answer.data?.result.map((r) => r.metric.job).sort(), ['floodgate-api', 'floodgate-worker']);
  });

  it('every recording rule evaluates and returns data', async () => {
    const rules = await recordingRules();
    assert.ok(rules.length > 20, `parsed ${rules.length} recording rules`);
    const empty: string[] = [];
    await eventually(
      async () => {
        empty.length = 0;
        for (const rule of rules) {
          const answer = await query(rule.record);
          assert.equal(answer.status, 'success');
          if ((answer.data?.result.length ?? 0) === 0) empty.push(`${rule.record}: ${rule.expr}`);
        }
        return empty.length === 0;
      },
      'every recording rule to have data',
      60_000,
    ).catch(() => assert.fail(`recording rules with no data:\n${empty.join('\n')}`));
  });
});
