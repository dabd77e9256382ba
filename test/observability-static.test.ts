import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { cp, mkdtemp, readFile, readdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { Registry, collectDefaultMetrics } from 'prom-client';
import { allDashboardQueries, prometheusDashboards, renderDashboards, sqlDashboards } from '../grafana/generate.js';
import { POSTGRES_PLUGIN } from '../grafana/sql.js';
import { withDashboardFilters } from '../grafana/promql-filters.js';
import { CONFIG_VARIABLES } from '../lib/config.js';
import { anchors } from './markdown.js';

/**
 * Static checks of the observability assets: Prometheus config, recording and alerting rules with their
 * promtool unit tests, the runbooks, and the generated Grafana dashboards. No Prometheus server is needed,
 * but promtool is: without it these checks fail rather than skip.
 */

const ROOT = new URL('../', import.meta.url);
const ROOT_PATH = fileURLToPath(ROOT);

/** Prometheus's own per-target series. */
const PROMETHEUS_SERIES = ['up'];

const HISTOGRAM_SUFFIXES = ['_bucket', '_sum', '_count'];

const read = (path: string) => readFile(new URL(path, ROOT), 'utf8');

async function yamlFiles(dir: string): Promise<string[]> {
  return (await readdir(new URL(dir, ROOT)))
    .filter((f) => f.endsWith('.yml'))
    .sort()
    .map((f) => `${dir}${f}`);
}

/** Runs promtool from the repository root; a missing binary is a failure, never a skip. */
function promtool(args: string[]): string {
  const run = spawnSync('promtool', args, { cwd: ROOT_PATH, encoding: 'utf8' });
  if (run.error) {
    assert.fail(
      `promtool could not be run (${run.error.message}). Install it (Debian/Ubuntu: apt-get install prometheus); these checks are never skipped.`,
    );
  }
  const output = `${run.stdout}${run.stderr}`;
  assert.equal(run.status, 0, `promtool ${args.join(' ')} failed:\n${output}`);
  return output;
}

interface Rule {
  readonly kind: 'record' | 'alert';
  readonly name: string;
  readonly expr: string;
  /** The rule's lines, for checking labels and annotations. */
  readonly text: string;
}

/** The rules of a Prometheus rule file, read line by line (block scalars `|`/`>` and plain one-line exprs). */
function parseRules(yaml: string): Rule[] {
  const rules: Rule[] = [];
  const lines = yaml.split('\n');
  const starts: number[] = [];
  lines.forEach((line, i) => {
    if (/^\s*- (record|alert):/.test(line)) starts.push(i);
  });
  starts.forEach((start, n) => {
    const end = n + 1 < starts.length ? starts[n + 1]! : lines.length;
    const block = lines.slice(start, end);
    const head = /^\s*- (record|alert):\s*(\S+)/.exec(block[0]!)!;
    let expr = '';
    for (let i = 1; i < block.length; i++) {
      const m = /^(\s*)expr:\s*(.*)$/.exec(block[i]!);
      if (!m) continue;
      const indent = m[1]!.length;
      const rest = m[2]!.trim();
      if (/^[|>][+-]?$/.test(rest)) {
        const body: string[] = [];
        for (let j = i + 1; j < block.length; j++) {
          const line = block[j]!;
          if (line.trim() !== '' && line.length - line.trimStart().length <= indent) break;
          body.push(line.trim());
        }
        expr = body.join('\n').trim();
      } else {
        expr = rest.replace(/^'(.*)'$/, '$1').replace(/^"(.*)"$/, '$1');
      }
      break;
    }
    rules.push({ kind: head[1] as 'record' | 'alert', name: head[2]!, expr, text: block.join('\n') });
  });
  return rules;
}

/** The value of `key:` inside a rule's text (one line, or a folded block scalar). */
function field(text: string, key: string): string | undefined {
  const lines = text.split('\n');
  for (let i = 0; i < lines.length; i++) {
    const m = new RegExp(`^(\\s*)${key}:\\s*(.*)$`).exec(lines[i]!);
    if (!m) continue;
    const rest = m[2]!.trim();
    if (!/^[|>][+-]?$/.test(rest)) return rest.replace(/^'(.*)'$/, '$1').replace(/^"(.*)"$/, '$1');
    const body: string[] = [];
    for (let j = i + 1; j < lines.length; j++) {
      const line = lines[j]!;
      if (line.trim() !== '' && line.length - line.trimStart().length <= m[1]!.length) break;
      body.push(line.trim());
    }
    return body.join(' ').trim();
  }
  return undefined;
}

const PROMQL_KEYWORDS = new Set([
  'by',
  'without',
  'on',
  'ignoring',
  'group_left',
  'group_right',
  'and',
  'or',
  'unless',
  'bool',
  'offset',
  'inf',
  'nan',
]);

/** Metric (and recording rule) names a PromQL expression selects. */
function metricNames(expr: string): string[] {
  const stripped = expr
    .replace(/"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*'|`[^`]*`/g, '""')
    .replace(/\{[^}]*\}/g, ' ')
    .replace(/\[[^\]]*\]/g, ' ')
    .replace(/\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)/g, ' ');
  const names = new Set<string>();
  for (const m of stripped.matchAll(/(?<![\w.])([a-zA-Z_:][a-zA-Z0-9_:]*)(?![\w])(\s*\()?/g)) {
    if (m[2] !== undefined) continue; // a function or aggregation
    if (PROMQL_KEYWORDS.has(m[1]!.toLowerCase())) continue;
    names.add(m[1]!);
  }
  return [...names];
}

/** Every .ts file under `dir`, recursively, as repository paths. */
async function sourceFiles(dir: string): Promise<string[]> {
  const entries = await readdir(new URL(dir, ROOT), { recursive: true });
  return entries.filter((f) => f.endsWith('.ts')).map((f) => `${dir}${f}`);
}

/** Metric names the code registers, found by their `name: '...'` in each metric definition; histograms add suffixes. */
async function metricsDefinedInCode(): Promise<Set<string>> {
  const files = [...(await sourceFiles('app/')), ...(await sourceFiles('lib/')), ...(await sourceFiles('workers/'))];
  const names = new Set<string>();
  for (const file of files) {
    const source = await read(file);
    let kind = '';
    for (const m of source.matchAll(/\bnew\s+(?:Fast)?(Counter|Gauge|Histogram|Summary)\b|\bname:\s*['"]([a-z_:][a-z0-9_:]*)['"]/g)) {
      if (m[1]) {
        kind = m[1];
        continue;
      }
      const name = m[2]!;
      names.add(name);
      if (kind === 'Histogram' || kind === 'Summary') for (const suffix of HISTOGRAM_SUFFIXES) names.add(name + suffix);
    }
  }
  return names;
}

/** prom-client's default process metrics, straight from the installed version. */
async function defaultMetricNames(): Promise<Set<string>> {
  const registry = new Registry();
  collectDefaultMetrics({ register: registry });
  const names = new Set<string>();
  for (const metric of await registry.getMetricsAsJSON()) {
    names.add(metric.name);
    const type = String(metric.type);
    if (type === 'histogram' || type === 'summary') for (const suffix of HISTOGRAM_SUFFIXES) names.add(metric.name + suffix);
  }
  registry.clear();
  return names;
}

const ruleFiles = await yamlFiles('prometheus/rules/');
const testFiles = await yamlFiles('prometheus/tests/');
const rules = (await Promise.all(ruleFiles.map(read))).flatMap(parseRules);
const alerts = rules.filter((r) => r.kind === 'alert');
const recorded = new Set(rules.filter((r) => r.kind === 'record').map((r) => r.name));
const unitTests = (await Promise.all(testFiles.map(read))).join('\n');

describe('Prometheus configuration and rules', () => {
  it('promtool accepts prometheus.yml', () => {
    promtool(['check', 'config', 'prometheus/prometheus.yml']);
  });

  it('promtool accepts every rule file', () => {
    assert.ok(ruleFiles.length >= 2, 'expected recording.yml and alerts.yml');
    promtool(['check', 'rules', ...ruleFiles]);
  });

  it('every promtool unit test passes', () => {
    assert.ok(testFiles.length > 0, 'no promtool tests found in prometheus/tests/');
    const output = promtool(['test', 'rules', ...testFiles]);
    assert.doesNotMatch(output, /FAILED/);
  });

  it('scrapes the API on api:9464 and the worker on worker:9465, and loads the rule files', async () => {
    const config = await read('prometheus/prometheus.yml');
    assert.match(config, /job_name: floodgate-api[\s\S]*?targets: \["api:9464"\]/);
    assert.match(config, /job_name: floodgate-worker[\s\S]*?targets: \["worker:9465"\]/);
    assert.match(config, /rule_files:\s*\n\s*- rules\/\*\.yml/);
  });

  it("scrapes the cluster profile's API and workers through Docker's DNS (no target, hence no alert, without the profile)", async () => {
    const config = await read('prometheus/prometheus.yml');
    assert.match(config, /job_name: floodgate-api-cluster[\s\S]*?names: \["api-cluster"\]\s*\n\s*type: A\s*\n\s*port: 9464/);
    assert.match(config, /job_name: floodgate-worker-cluster[\s\S]*?names: \["worker-cluster"\]\s*\n\s*type: A\s*\n\s*port: 9465/);
    // The ports scraped are the ones the profile's services serve their metrics on.
    const compose = await read('docker-compose.yml');
    const service = (name: string) =>
      compose.slice(compose.indexOf(`\n  ${name}:\n`), compose.indexOf('\n\n', compose.indexOf(`\n  ${name}:\n`)));
    assert.match(service('api-cluster'), /METRICS_PORT: "9464"/);
    assert.match(service('worker-cluster'), /WORKER_METRICS_PORT: "9465"/);
  });

  it('recording rules are named level:metric:operations', () => {
    for (const name of recorded) assert.match(name, /^[a-z_]+:[a-z0-9_]+:[a-z0-9_]+$/, name);
  });
});

describe('alerts', () => {
  it('are all found', () => {
    assert.ok(alerts.length >= 15, `only ${alerts.length} alerts parsed`);
  });

  it('each has a severity, a summary, a description showing the live value, and a runbook link', () => {
    for (const alert of alerts) {
      assert.match(field(alert.text, 'severity') ?? '', /^(critical|warning)$/, `${alert.name}: severity`);
      assert.ok(field(alert.text, 'summary'), `${alert.name}: summary`);
      assert.match(field(alert.text, 'description') ?? '', /\{\{ \$value/, `${alert.name}: description must show {{ $value }}`);
      assert.match(
        field(alert.text, 'runbook_url') ?? '',
        /^https?:\/\/[^\s#]+\/operations\.md#[a-z0-9-]+$/,
        `${alert.name}: runbook_url (absolute)`,
      );
    }
  });

  it('all runbook links share one base, which scripts/set-runbook-base-url.sh changes without breaking the promtool tests', async () => {
    const bases = new Set(alerts.map((a) => field(a.text, 'runbook_url')!.split('#')[0]));
    assert.equal(bases.size, 1, `runbook_url bases: ${[...bases].join(', ')}`);
    const copy = await mkdtemp(join(tmpdir(), 'floodgate-runbooks-'));
    try {
      await cp(new URL('prometheus/', ROOT), copy, { recursive: true });
      const base = 'https://wiki.example.org/ops/floodgate/operations.md';
      const run = spawnSync('scripts/set-runbook-base-url.sh', [base, copy], { cwd: ROOT_PATH, encoding: 'utf8' });
      assert.equal(run.status, 0, run.stderr);
      const rewritten = (await readFile(join(copy, 'rules/alerts.yml'), 'utf8')).split('\n').filter((l) => l.includes('runbook_url:'));
      assert.equal(rewritten.length, alerts.length);
      for (const line of rewritten)
        assert.match(line, /runbook_url: https:\/\/wiki\.example\.org\/ops\/floodgate\/operations\.md#floodgate[a-z]+$/);
      const tests = (await readdir(join(copy, 'tests'))).map((f) => join(copy, 'tests', f));
      const promtoolRun = spawnSync('promtool', ['test', 'rules', ...tests], { cwd: copy, encoding: 'utf8' });
      assert.equal(promtoolRun.status, 0, `${promtoolRun.stdout}${promtoolRun.stderr}`);
      const refused = spawnSync('scripts/set-runbook-base-url.sh', ['not a url', copy], { cwd: ROOT_PATH, encoding: 'utf8' });
      assert.equal(refused.status, 2);
      assert.match(refused.stderr, /BASE_URL must be an absolute http\(s\) URL/);
    } finally {
      await rm(copy, { recursive: true, force: true });
    }
  });

  it('each runbook link points at an existing section of docs/operations.md', async () => {
    const sections = anchors(await read('docs/operations.md'));
    for (const alert of alerts) {
      const anchor = field(alert.text, 'runbook_url')!.split('#')[1]!;
      assert.ok(sections.has(anchor), `${alert.name}: docs/operations.md has no section #${anchor}`);
      assert.equal(anchor, alert.name.toLowerCase(), `${alert.name}: the runbook section is named after the alert`);
    }
  });

  it('each has a promtool test named after it that expects it to fire', () => {
    const groups = unitTests.split(/^\s*- name: /m).slice(1);
    for (const alert of alerts) {
      const fires = new RegExp(`alertname: ${alert.name}\\s*\\n\\s*exp_alerts:\\s*\\n\\s*- exp_labels`);
      assert.ok(
        groups.some((g) => g.startsWith(`${alert.name} `) && fires.test(g)),
        `${alert.name}: no promtool test group named "${alert.name} …" that expects it to fire`,
      );
    }
  });
});

describe('dashboards', () => {
  it('committed JSON equals the generator output (run: npm run dashboards)', async () => {
    const rendered = renderDashboards();
    assert.deepEqual([...rendered.keys()].sort(), [
      'business-events.json',
      'ingest-overview.json',
      'live-view.json',
      'load-shedding.json',
      'pipeline.json',
      'postgres.json',
    ]);
    const committed = (await readdir(new URL('grafana/dashboards/', ROOT))).filter((f) => f.endsWith('.json')).sort();
    assert.deepEqual(committed, [...rendered.keys()].sort(), 'grafana/dashboards/ holds exactly the generated files');
    for (const [file, text] of rendered) {
      assert.equal(await read(`grafana/dashboards/${file}`), text, `grafana/dashboards/${file} is stale: regenerate it`);
    }
  });

  it('panels that need pg_stat_statements say so when they are empty', () => {
    for (const [file, text] of renderDashboards()) {
      const model = JSON.parse(text) as {
        panels: { title: string; targets?: { expr: string }[]; fieldConfig?: { defaults: { noValue?: string } } }[];
      };
      for (const panel of model.panels.filter((p) => (p.targets ?? []).some((t) => /floodgate_pg_statement_/.test(t.expr)))) {
        assert.match(panel.fieldConfig?.defaults.noValue ?? '', /pg_stat_statements is not installed/, `${file} / ${panel.title}`);
      }
    }
  });

  it('every panel has a description and at least one query', () => {
    for (const [file, text] of renderDashboards()) {
      const model = JSON.parse(text) as { panels: { type: string; title: string; description?: string; targets?: unknown[] }[] };
      for (const panel of model.panels.filter((p) => p.type !== 'row')) {
        assert.ok((panel.description ?? '').length > 40, `${file} / ${panel.title}: description`);
        assert.ok((panel.targets ?? []).length > 0, `${file} / ${panel.title}: queries`);
      }
    }
  });

  it('import into any Grafana: a datasource variable (no hard-coded uid), job and instance variables (and shard on Pipeline)', () => {
    const prometheus = new Set(prometheusDashboards().map((d) => d.file));
    for (const [file, text] of [...renderDashboards()].filter(([f]) => prometheus.has(f))) {
      const model = JSON.parse(text) as {
        templating: { list: { name: string; type: string; query: unknown; includeAll?: boolean; datasource?: { uid: string } }[] };
        panels: { type: string; title: string; datasource?: { uid: string }; targets?: { datasource: { uid: string } }[] }[];
      };
      const variables = new Map(model.templating.list.map((v) => [v.name, v]));
      const sharded = file === 'pipeline.json';
      assert.deepEqual([...variables.keys()], ['datasource', 'job', 'instance', ...(sharded ? ['shard'] : [])], file);
      assert.equal(variables.get('datasource')!.type, 'datasource');
      assert.equal(variables.get('datasource')!.query, 'prometheus');
      // Only panels over per-shard series select the shard, and only where the variable exists.
      assert.equal(text.includes('$shard'), sharded, `${file}: $shard used exactly where the variable is defined`);
      for (const name of ['job', 'instance', ...(sharded ? ['shard'] : [])]) {
        assert.equal(variables.get(name)!.datasource?.uid, '${datasource}', `${file} $${name}`);
        assert.equal(variables.get(name)!.includeAll, true, `${file} $${name}`);
      }
      const uids = new Set<string>();
      for (const panel of model.panels.filter((p) => p.type !== 'row')) {
        uids.add(panel.datasource!.uid);
        for (const target of panel.targets ?? []) uids.add(target.datasource.uid);
      }
      assert.deepEqual([...uids], ['${datasource}'], `${file}: every panel and query reads the datasource variable`);
      assert.doesNotMatch(text, /"uid": "prometheus"/, `${file}: a hard-coded datasource uid`);
    }
  });

  it('dashboards over PostgreSQL import into any Grafana too, and the stack provisions their data source', async () => {
    const sql = new Set(sqlDashboards().map((d) => d.file));
    assert.ok(sql.size > 0, 'the Business events dashboard');
    for (const [file, text] of [...renderDashboards()].filter(([f]) => sql.has(f))) {
      const model = JSON.parse(text) as {
        templating: {
          list: { name: string; type: string; query: unknown; includeAll?: boolean; datasource?: { type: string; uid: string } }[];
        };
        panels: {
          type: string;
          title: string;
          datasource?: { type: string; uid: string };
          targets?: { datasource: { uid: string }; rawSql?: string; format?: string }[];
        }[];
      };
      const [datasource, ...variables] = model.templating.list;
      assert.equal(datasource!.type, 'datasource', file);
      assert.equal(datasource!.query, POSTGRES_PLUGIN, file);
      for (const v of variables) {
        assert.deepEqual(v.datasource, { type: POSTGRES_PLUGIN, uid: '${datasource}' }, `${file} $${v.name}`);
        assert.equal(v.includeAll, true, `${file} $${v.name}`);
      }
      for (const panel of model.panels.filter((p) => p.type !== 'row')) {
        assert.deepEqual(panel.datasource, { type: POSTGRES_PLUGIN, uid: '${datasource}' }, `${file} / ${panel.title}`);
        for (const target of panel.targets ?? []) {
          assert.equal(target.datasource.uid, '${datasource}');
          assert.ok(target.rawSql && /^(time_series|table)$/.test(target.format ?? ''), `${file} / ${panel.title}: raw SQL and a format`);
          assert.doesNotMatch(target.rawSql, /\bFROM\s+events\b/i, `${file} / ${panel.title}: reads the rollups, never the events table`);
        }
      }
    }
    const provisioned = await read('grafana/provisioning/datasources/postgres.yml');
    assert.match(provisioned, new RegExp(`type: ${POSTGRES_PLUGIN}`));
    for (const variable of provisioned.matchAll(/\$(FLOODGATE_PG_[A-Z]+)/g)) {
      assert.match(await read('docker-compose.yml'), new RegExp(`${variable[1]}:`), `docker-compose.yml gives Grafana ${variable[1]}`);
    }
  });

  it('every series selector is narrowed by $job, and raw series by $instance too', () => {
    for (const query of allDashboardQueries()) {
      for (const name of metricNames(query.expr)) {
        const selectors = [
          ...query.template.matchAll(new RegExp(`(?<![\\w:])${name.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}\\{([^}]*)\\}`, 'g')),
        ];
        assert.ok(selectors.length > 0, `${query.dashboard} / ${query.panel}: ${name} has no matchers in ${query.template}`);
        for (const [, matchers] of selectors) {
          assert.match(matchers!, /job=~"\$job"/, `${query.dashboard} / ${query.panel}: ${name}`);
          if (!name.includes(':')) assert.match(matchers!, /instance=~"\$instance"/, `${query.dashboard} / ${query.panel}: ${name}`);
        }
      }
    }
  });

  it('the filter rewrite keeps existing matchers, functions, grouping labels, ranges and keywords', () => {
    assert.equal(
      withDashboardFilters('sum by (state) (a_total{route="/x"}) / on (job) group_left b:c:d > bool 2 or topk(3, e[5m] offset 1m)'),
      'sum by (state) (a_total{job=~"$job",instance=~"$instance",route="/x"}) / on (job) group_left b:c:d{job=~"$job"} > bool 2 or topk(3, e{job=~"$job",instance=~"$instance"}[5m] offset 1m)',
    );
  });

  it('panels read rates and percentiles from recording rules, not raw rate() or histogram_quantile()', () => {
    for (const query of allDashboardQueries()) {
      assert.doesNotMatch(
        query.expr,
        /\b(rate|irate|increase|histogram_quantile)\s*\(/,
        `${query.dashboard} / ${query.panel}: ${query.expr}`,
      );
    }
  });
});

describe('metric names in rules and dashboards', () => {
  it('are defined by the code, prom-client defaults, Prometheus, or a recording rule', async () => {
    const known = new Set([...(await metricsDefinedInCode()), ...(await defaultMetricNames()), ...PROMETHEUS_SERIES]);

    const uses = [
      ...rules.map((r) => ({ where: `${r.kind} ${r.name}`, expr: r.expr })),
      ...allDashboardQueries().map((q) => ({ where: `${q.dashboard} / ${q.panel}`, expr: q.expr })),
    ];
    assert.ok(
      uses.every((u) => u.expr.length > 0),
      'a rule without an expr was parsed',
    );
    const unknown: string[] = [];
    for (const use of uses) {
      for (const name of metricNames(use.expr)) {
        const ok = name.includes(':') ? recorded.has(name) : known.has(name);
        if (!ok) unknown.push(`${use.where}: ${name}`);
      }
    }
    assert.deepEqual(unknown, [], 'metric names nobody defines');
  });

  it('the name extractor sees through functions, matchers, ranges and grouping', () => {
    assert.deepEqual(
      metricNames(
        'sum by (route, le) (rate(a_bucket{route="/v1/events",le="0.05"}[5m])) / on (x) group_left(y) b:c:d or vector(0) > bool 2',
      ),
      ['a_bucket', 'b:c:d'],
    );
  });
});

/** Runs Debian's docker-compose (v1) against the repository's compose file; a missing binary fails, never skips. */
function dockerCompose(args: string[]): string {
  const run = spawnSync('docker-compose', ['-f', 'docker-compose.yml', ...args], { cwd: ROOT_PATH, encoding: 'utf8' });
  if (run.error) {
    assert.fail(
      `docker-compose could not be run (${run.error.message}). Install it (Debian/Ubuntu: apt-get install docker-compose); this check is never skipped.`,
    );
  }
  assert.equal(run.status, 0, `docker-compose ${args.join(' ')} failed:\n${run.stdout}${run.stderr}`);
  return run.stdout;
}

describe('docker-compose.yml', () => {
  it('docker-compose config -q accepts it', () => {
    dockerCompose(['config', '-q']);
  });

  it('defines the whole stack, a healthcheck on every long-running service, Redis with AOF and the provisioning mounted', async () => {
    const services = dockerCompose(['config', '--services']).trim().split('\n').sort();
    const clusterProfile = ['api-cluster', 'redis-cluster-init', ...[1, 2, 3, 4, 5, 6].map((n) => `redis-node-${n}`), 'worker-cluster'];
    assert.deepEqual(services, ['api', 'grafana', 'migrate', 'postgres', 'prometheus', 'redis', 'worker', ...clusterProfile].sort());
    const resolved = dockerCompose(['config']);
    const blocks = new Map<string, string>();
    const body = `\n${resolved}`.slice(`\n${resolved}`.indexOf('\nservices:\n'));
    for (const m of body.matchAll(/^ {2}([a-z0-9-]+):\n((?: {4}.*\n|\n)*)/gm)) blocks.set(m[1]!, m[2]!);
    for (const name of services.filter((s) => s !== 'migrate' && s !== 'redis-cluster-init')) {
      assert.match(blocks.get(name) ?? '', /^ {4}healthcheck:/m, `${name} has no healthcheck`);
    }
    assert.match(blocks.get('redis')!, /--appendonly[\s\S]*yes/, 'Redis keeps an append-only file');
    assert.match(blocks.get('grafana')!, /grafana\/provisioning/);
    assert.match(blocks.get('prometheus')!, /prometheus/);
    assert.match(blocks.get('api')!, /condition: service_completed_successfully/, 'the API waits for migrations');
  });

  /** Each service's block of the resolved configuration. */
  function serviceBlocks(): Map<string, string> {
    const resolved = `\n${dockerCompose(['config'])}`;
    const body = resolved.slice(resolved.indexOf('\nservices:\n'));
    return new Map([...body.matchAll(/^ {2}([a-z0-9-]+):\n((?: {4}.*\n|\n)*)/gm)].map((m) => [m[1]!, m[2]!]));
  }

  it("gives the API and the worker longer to stop than SHUTDOWN_TIMEOUT_MS, so Docker's SIGKILL never cuts the final flush", () => {
    // The API's primary waits 2 s past the timeout for its processes; the worker acknowledges and closes after its flush.
    const marginMs = 5000;
    for (const [name, block] of serviceBlocks()) {
      if (!['api', 'worker', 'api-cluster', 'worker-cluster'].includes(name)) continue;
      const grace = /^ {4}stop_grace_period: (\d+)s$/m.exec(block);
      assert.ok(grace, `${name}: stop_grace_period in seconds`);
      const shutdownMs = Number(/SHUTDOWN_TIMEOUT_MS: '?(\d+)'?/.exec(block)?.[1] ?? CONFIG_VARIABLES.shutdownTimeoutMs.defaultValue);
      assert.ok(
        Number(grace[1]) * 1000 >= shutdownMs + marginMs,
        `${name}: stop_grace_period ${grace[1]}s vs SHUTDOWN_TIMEOUT_MS ${shutdownMs}`,
      );
    }
  });

  it('keeps Prometheus data on a volume and publishes no lifecycle or admin API; only the API listens beyond loopback', () => {
    const blocks = serviceBlocks();
    const prometheus = blocks.get('prometheus')!;
    assert.match(prometheus, /- promdata:\/prometheus:rw/);
    assert.match(prometheus, /--storage\.tsdb\.path=\/prometheus/);
    assert.doesNotMatch(prometheus, /--web\.enable-(lifecycle|admin-api)/);
    const published: string[] = [];
    for (const [name, block] of blocks) {
      const ports = /^ {4}ports:\n((?: {4}- .*\n(?: {6}.*\n)*)+)/m.exec(block)?.[1] ?? '';
      // Items come short (`- 127.0.0.1:9090:9090/tcp`) or long (`- published: 8080` / `target: 8080` / `host_ip: …`).
      for (const item of ports.split(/^ {4}- /m).filter(Boolean)) {
        published.push(name);
        if (name === 'api' || name === 'api-cluster') continue;
        assert.match(item, /^127\.0\.0\.1:|host_ip: 127\.0\.0\.1/m, `${name} publishes ${item.trim()} on every interface`);
      }
    }
    assert.deepEqual(published.sort(), ['api', 'api-cluster', 'grafana', 'prometheus']);
  });

  it('the cluster profile: 3 masters and 3 replicas with AOF, created once, and an API and worker pointed at them', () => {
    const blocks = serviceBlocks();
    const profile = (name: string) => /^ {4}profiles:\n {4}- cluster$/m.test(blocks.get(name) ?? '');
    const nodes = [1, 2, 3, 4, 5, 6].map((n) => `redis-node-${n}`);
    for (const name of [...nodes, 'redis-cluster-init', 'api-cluster', 'worker-cluster']) {
      assert.ok(profile(name), `${name} runs only with --profile cluster`);
    }
    for (const name of ['api', 'worker', 'redis', 'postgres']) assert.ok(!profile(name), `${name} runs without a profile`);
    for (const name of nodes) {
      const block = blocks.get(name)!;
      assert.match(block, /- --cluster-enabled\n {4}- ['"]yes['"]/, `${name} is a cluster node`);
      assert.match(block, /- --appendonly\n {4}- ['"]yes['"]/, `${name} keeps an append-only file`);
      assert.match(block, new RegExp(`- ${name}:/data:rw`), `${name} keeps its data and nodes.conf on its own volume`);
    }
    const init = blocks.get('redis-cluster-init')!;
    assert.match(init, /redis-cli --cluster create [\s\S]*--cluster-replicas 1 --cluster-yes/);
    for (const name of nodes) assert.match(init, new RegExp(`${name}:\\n {8}condition: service_healthy`), `init waits for ${name}`);
    for (const name of ['api-cluster', 'worker-cluster']) {
      const block = blocks.get(name)!;
      assert.match(block, /REDIS_CLUSTER_NODES: redis-node-1:6379,redis-node-2:6379,redis-node-3:6379/);
      assert.match(block, /STREAM_SHARDS: '\d+'/);
      assert.match(block, /redis-cluster-init:\n {8}condition: service_completed_successfully/, `${name} waits for the cluster`);
    }
  });
});
