import assert from 'node:assert/strict';
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { connect } from 'node:net';
import { promisify } from 'node:util';
import { after, before, describe, it } from 'node:test';
import pg from 'pg';
import { createApiKey, findApiKey } from '../lib/api-keys.js';
import { readMigrations } from '../lib/migrate.js';
import { SCENARIOS } from '../loadtest/scenarios.js';
import { partitionName } from '../lib/partitions.js';
import {
  countEvents,
  createTestEnv,
  envVars,
  eventually,
  FLOODGATE_COMMAND,
  freePort,
  spawnFloodgate,
  TEST_PG_ADMIN_URL,
  type TestEnv,
} from './support.js';

/** Direct children of `pid`, then theirs: the process tree a supervisor owns. */
async function descendants(pid: number): Promise<number[]> {
  const { stdout } = await promisify(execFile)('ps', ['-eo', 'pid=,ppid=']);
  const pairs = stdout
    .trim()
    .split('\n')
    .map((l) => l.trim().split(/\s+/).map(Number) as [number, number]);
  const out: number[] = [];
  const walk = (p: number) => {
    for (const [child, parent] of pairs) {
      if (parent !== p) continue;
      out.push(child);
      walk(child);
    }
  };
  walk(pid);
  return out;
}

const alive = (pid: number) => {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
};

/**
 * `floodgate …` as the leader of its own process group, so a test can do what Ctrl-C in a terminal does:
 * signal the whole group at once.
 */
function spawnGroup(args: string[], vars: Record<string, string>) {
  const child: ChildProcess = spawn(process.execPath, [...FLOODGATE_COMMAND, ...args], {
    env: { PATH: process.env.PATH ?? '', HOME: process.env.HOME ?? '', ...vars },
    stdio: ['ignore', 'pipe', 'pipe'],
    detached: true,
  });
  let output = '';
  child.stdout!.on('data', (d: Buffer) => (output += d.toString()));
  child.stderr!.on('data', (d: Buffer) => (output += d.toString()));
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) =>
    child.once('exit', (code, signal) => resolve({ code, signal })),
  );
  return {
    child,
    exited,
    output: () => output,
    ctrlC: () => process.kill(-child.pid!, 'SIGINT'),
    /** Test cleanup: whatever is left of the group, gone. */
    kill: () => {
      try {
        process.kill(-child.pid!, 'SIGKILL');
      } catch {
        // already gone
      }
    },
  };
}

describe('floodgate CLI', () => {
  let env: TestEnv;
  const groups: ReturnType<typeof spawnGroup>[] = [];
  const extraDatabases: string[] = [];
  before(async () => {
    env = await createTestEnv();
  });
  after(async () => {
    for (const g of groups) g.kill();
    const admin = new pg.Client({ connectionString: TEST_PG_ADMIN_URL });
    await admin.connect();
    for (const db of extraDatabases) await admin.query(`DROP DATABASE IF EXISTS ${db} WITH (FORCE)`);
    await admin.end();
    await env?.cleanup();
  });

  const run = async (args: string[], vars: Record<string, string> = envVars(env)) => (await spawnFloodgate(args, vars)).exited;

  it('lists every configuration problem at once and exits 1', async () => {
    const result = await run(['migrate'], { ...envVars(env), PORT: 'abc', API_PROCESSES: '0' });
    assert.equal(result.code, 1);
    assert.match(result.stderr, /PORT must be a whole number, got "abc"/);
    assert.match(result.stderr, /API_PROCESSES must be between 1 and 256, got 0/);
    assert.equal(result.stdout, '');
  });

  it('exits 2 with the usage on an unknown command, a missing command or bad arguments, before reading config', async () => {
    const brokenConfig = { PORT: 'abc' };
    for (const args of [
      ['frobnicate'],
      [],
      ['keys', 'create'],
      ['keys', 'create', '--tenant', 'acme', '--priority', 'urgent'],
      ['keys', 'create', '--tenant', 'acme', '--bogus'],
      ['keys', 'create', '--tenant', 'acme', '--rate-limit', 'fast'],
      ['keys', 'create', '--tenant', 'acme', '--burst', '0'],
      ['keys', 'create', '--tenant', 'acme', '--scopes', 'ingest,root'],
      ['keys', 'create', '--tenant', 'acme', '--max-priority', 'low', '--priority', 'critical'],
      ['keys', 'create', '--tenant', 'acme', '--expires-in', '30 days'],
      ['keys'],
      ['keys', 'revoke'],
      ['keys', 'rotate'],
      ['keys', 'rotate', '1', '--grace', 'soon'],
      ['migrate', 'now'],
    ]) {
      const result = await run(args, brokenConfig);
      assert.equal(result.code, 2, `floodgate ${args.join(' ')}: ${result.stderr}`);
      assert.match(result.stderr, /usage: floodgate/);
    }
    for (const args of [['loadtest'], ['loadtest', 'smoke', '--rate', 'fast'], ['loadtest', 'compare', 'a.json']]) {
      const result = await run(args, brokenConfig);
      assert.equal(result.code, 2, `floodgate ${args.join(' ')}: ${result.stderr}`);
      assert.match(result.stderr, /usage: floodgate/);
    }
  });

  it('prints the usage on help and --help and exits 0', async () => {
    for (const args of [['help'], ['--help']]) {
      const result = await run(args, {});
      assert.equal(result.code, 0);
      assert.match(result.stdout, /usage: floodgate <command>/);
      for (const command of [
        'start',
        'api',
        'worker',
        'migrate',
        'keys create',
        'keys list',
        'keys revoke',
        'keys rotate',
        'loadtest <scenario>',
        'loadtest compare',
      ])
        assert.ok(result.stdout.includes(command), command);
    }
  });

  it('--version prints the version from package.json and exits 0, without reading config', async () => {
    const { version } = JSON.parse(await readFile(new URL('../package.json', import.meta.url), 'utf8')) as { version: string };
    const result = await run(['--version'], { PORT: 'abc' });
    assert.equal(result.code, 0, result.stderr);
    assert.equal(result.stdout, `${version}\n`);
  });

  it("<command> --help prints that command's usage and exits 0 for every command, without reading config or connecting", async () => {
    const brokenConfig = { PORT: 'abc', DATABASE_URL: 'postgres://nobody@127.0.0.1:1/none' };
    const expected: [string[], RegExp[]][] = [
      [
        ['start', '--help'],
        [/^usage: floodgate start\n/, /private PostgreSQL and Redis/],
      ],
      [
        ['api', '--help'],
        [/^usage: floodgate api\n/, /API_PROCESSES/],
      ],
      [
        ['worker', '--help'],
        [/^usage: floodgate worker\n/, /WORKER_METRICS_PORT/],
      ],
      [
        ['migrate', '-h'],
        [/^usage: floodgate migrate\n/, /advisory lock/],
      ],
      [
        ['keys', '--help'],
        [/^usage: floodgate keys create\|list\|revoke/, /keys revoke <id\|prefix>/],
      ],
      [
        ['keys', 'create', '--help'],
        [/^usage: floodgate keys create --tenant NAME/, /--rate-limit PER_SECOND/, /--burst N/, /--admin/, /--priority CLASS/],
      ],
      [['keys', 'create', '--tenant', 'acme', '--help'], [/^usage: floodgate keys create --tenant NAME/]],
      [['keys', 'list', '--help'], [/^usage: floodgate keys list\n/]],
      [['keys', 'revoke', '--help'], [/^usage: floodgate keys revoke <id\|prefix>/]],
      [
        ['loadtest', '--help'],
        [/^usage: floodgate loadtest <scenario>/, /^ {2}overload {3}/m, /--retry-share F/, /--no-integrity/],
      ],
      [['loadtest', 'smoke', '--help'], [/^usage: floodgate loadtest <scenario>/]],
      [
        ['loadtest', 'compare', '--help'],
        [/^usage: floodgate loadtest compare A\.json B\.json/, /--threshold/],
      ],
      [
        ['tenants', 'set-quota', '--help'],
        [/^usage: floodgate tenants set-quota TENANT/, /^ {2}--events-per-second N\|none {2,}accepted/m],
      ],
    ];
    for (const [args, patterns] of expected) {
      const result = await run(args, brokenConfig);
      assert.equal(result.code, 0, `floodgate ${args.join(' ')}: ${result.stderr}`);
      assert.equal(result.stderr, '', `floodgate ${args.join(' ')}`);
      for (const pattern of patterns) assert.match(result.stdout, pattern, `floodgate ${args.join(' ')}`);
      assert.match(result.stdout, /Exit status: 0 done, 1 failure or invalid configuration, 2 wrong usage\./);
    }
    const scenarios = (await run(['loadtest', '--help'], brokenConfig)).stdout;
    for (const name of SCENARIOS)
      assert.match(scenarios, new RegExp(`^ {2}${name} {2,}\\S`, 'm'), `loadtest --help: "${name}" stands apart from its question`);
    const viaHelp = await run(['help', 'keys', 'create'], brokenConfig);
    const viaFlag = await run(['keys', 'create', '--help'], brokenConfig);
    assert.equal(viaHelp.stdout, viaFlag.stdout, 'floodgate help keys create = floodgate keys create --help');
  });

  it("a usage mistake in a subcommand prints that subcommand's usage", async () => {
    const result = await run(['keys', 'create', '--tenant', 'acme', '--bogus'], { PORT: 'abc' });
    assert.equal(result.code, 2);
    assert.match(result.stderr, /^floodgate: Unknown option '--bogus'/);
    assert.match(result.stderr, /usage: floodgate keys create --tenant NAME/);
    assert.doesNotMatch(result.stderr, /loadtest compare/, 'not the whole overview');
  });

  it('creates the database and migrates it when two starters run at once: each migration recorded once', async () => {
    const dbName = `floodgate_test_${randomUUID().replace(/-/g, '').slice(0, 12)}`;
    extraDatabases.push(dbName);
    const vars = { ...envVars(env), DATABASE_URL: `postgres://postgres@127.0.0.1:5432/${dbName}` };
    const [a, b] = await Promise.all([run(['migrate'], vars), run(['migrate'], vars)]);
    assert.equal(a.code, 0, a.stderr);
    assert.equal(b.code, 0, b.stderr);
    const files = await readMigrations();
    assert.match(a.stdout + b.stdout, new RegExp(`applied migration ${files[0]!.name}`));

    const client = new pg.Client({ connectionString: vars.DATABASE_URL });
    await client.connect();
    try {
      const { rows } = await client.query<{ version: number; n: string }>(
        'SELECT version, count(*) AS n FROM schema_migrations GROUP BY version ORDER BY version',
      );
      assert.deepEqual(
        rows.map((r) => [r.version, Number(r.n)]),
        files.map((m) => [m.version, 1]),
      );
      const today = partitionName(Date.now());
      assert.equal((await client.query('SELECT to_regclass($1) IS NOT NULL AS ok', [today])).rows[0].ok, true, "today's partition exists");
    } finally {
      await client.end();
    }
    const again = await run(['migrate'], vars);
    assert.equal(again.code, 0, again.stderr);
    assert.match(again.stdout, /migrations up to date/);
  });

  it('creates a key printed as the last line, lists it without the secret, and revokes it by prefix', async () => {
    const created = await run(['keys', 'create', '--tenant', 'acme', '--priority', 'critical']);
    assert.equal(created.code, 0, created.stderr);
    const key = created.stdout.trim().split('\n').at(-1)!;
    const grant = await findApiKey(env.pool, key);
    assert.equal(grant?.tenant, 'acme');
    assert.equal(grant?.defaultPriority, 'critical');
    assert.deepEqual(grant?.scopes, ['ingest']);
    assert.equal(grant?.maxPriority, 'critical');
    assert.equal(grant?.expiresAt, null);

    const listed = await run(['keys', 'list']);
    assert.equal(listed.code, 0, listed.stderr);
    const [header, ...rows] = listed.stdout.trim().split('\n');
    assert.deepEqual(header!.split(/\s+/), [
      'id',
      'tenant',
      'prefix',
      'scopes',
      'priority',
      'max_priority',
      'created',
      'expires',
      'revoked',
      'old_secret_until',
      'rate_limit',
    ]);
    const row = rows.map((r) => r.split(/\s+/)).find((cells) => cells[0] === String(grant.keyId));
    assert.ok(row, listed.stdout);
    assert.deepEqual(
      [row[1], row[3], row[4], row[5], row[7], row[8], row[9], row[10]],
      ['acme', 'ingest', 'critical', 'critical', '-', '-', '-', 'default'],
    );
    assert.ok(key.startsWith(row[2]!), 'the prefix is the start of the key');
    assert.ok(!listed.stdout.includes(key), 'the secret is never listed');

    const revoked = await run(['keys', 'revoke', row[2]!]);
    assert.equal(revoked.code, 0, revoked.stderr);
    assert.equal(await findApiKey(env.pool, key), null);
    const relisted = await run(['keys', 'list']);
    assert.match(
      relisted.stdout.split('\n').find((l) => l.startsWith(`${grant.keyId} `))!,
      /\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ\s+-\s+default$/,
    );

    const twice = await run(['keys', 'revoke', String(grant.keyId)]);
    assert.equal(twice.code, 1);
    assert.match(twice.stderr, /no active key/);

    const admin = await run(['keys', 'create', '--tenant', 'ops', '--admin']);
    assert.deepEqual((await findApiKey(env.pool, admin.stdout.trim().split('\n').at(-1)!))?.scopes, ['ingest', 'admin']);

    const scoped = await run([
      'keys',
      'create',
      '--tenant',
      'reader',
      '--scopes',
      'read,admin',
      '--max-priority',
      'low',
      '--expires-in',
      '30d',
    ]);
    assert.equal(scoped.code, 0, scoped.stderr);
    const scopedGrant = await findApiKey(env.pool, scoped.stdout.trim().split('\n').at(-1)!);
    assert.deepEqual(scopedGrant?.scopes, ['read', 'admin']);
    assert.equal(scopedGrant?.maxPriority, 'low');
    assert.equal(scopedGrant?.defaultPriority, 'low', 'without --priority the default is lowered to the ceiling');
    const days = (scopedGrant.expiresAt!.getTime() - Date.now()) / 86_400_000;
    assert.ok(days > 29.9 && days <= 30, `expires in 30 days, got ${days}`);
    const scopedRow = (await run(['keys', 'list'])).stdout
      .split('\n')
      .find((l) => l.startsWith(`${scopedGrant.keyId} `))!
      .split(/\s+/);
    assert.deepEqual([scopedRow[3], scopedRow[4], scopedRow[5]], ['read,admin', 'low', 'low']);
    assert.equal(scopedRow[7], scopedGrant.expiresAt!.toISOString().replace(/\.\d{3}Z$/, 'Z'));

    const limited = await run(['keys', 'create', '--tenant', 'metered', '--rate-limit', '2.5', '--burst', '10']);
    assert.equal(limited.code, 0, limited.stderr);
    assert.deepEqual((await findApiKey(env.pool, limited.stdout.trim().split('\n').at(-1)!))?.rateLimit, { perSecond: 2.5, burst: 10 });
    assert.match((await run(['keys', 'list'])).stdout, /metered .* 2\.5\/s,burst=10$/m);
  });

  it('api: Ctrl-C lets in-flight requests finish, then every process exits 0; a crashed process is restarted', async () => {
    const port = await freePort();
    const url = `http://127.0.0.1:${port}`;
    const { key } = await createApiKey(env.pool, { tenant: 'cluster' });
    const api = spawnGroup(['api'], envVars(env, { PORT: String(port), HOST: '127.0.0.1', API_PROCESSES: '2', LOG_LEVEL: 'info' }));
    groups.push(api);
    await eventually(async () => (await fetch(`${url}/readyz`).catch(() => null))?.status === 200, 'api ready', 30_000);
    await eventually(async () => (await descendants(api.child.pid!)).length === 2, 'two api processes');

    const [victim] = await descendants(api.child.pid!);
    process.kill(victim!, 'SIGKILL');
    await eventually(async () => {
      const now = await descendants(api.child.pid!);
      return now.length === 2 && !now.includes(victim!);
    }, 'the killed api process replaced');

    // A request whose body is still arriving when Ctrl-C comes.
    const body = JSON.stringify({ type: 'slow', data: { n: 1 } });
    const socket = connect(port, '127.0.0.1');
    let response = '';
    socket.on('data', (d: Buffer) => (response += d.toString()));
    await new Promise<void>((r) => socket.once('connect', () => r()));
    socket.write(
      `POST /v1/events HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${key}\r\nContent-Type: application/json\r\nContent-Length: ${body.length}\r\nConnection: close\r\n\r\n${body.slice(0, 5)}`,
    );
    await new Promise((r) => setTimeout(r, 300));
    const tree = await descendants(api.child.pid!);
    api.ctrlC();
    await new Promise((r) => setTimeout(r, 500));
    socket.write(body.slice(5));
    await new Promise<void>((r) => socket.once('close', () => r()));
    assert.match(response, /^HTTP\/1\.1 202/, `the in-flight request was answered, got: ${response.slice(0, 200)}`);

    const { code } = await api.exited;
    assert.equal(code, 0, api.output());
    assert.doesNotMatch(api.output(), /exiting now/);
    for (const pid of tree) assert.equal(alive(pid), false, `api process ${pid} exited`);
  });

  it('start: runs api and worker, restarts a crashed worker, and on Ctrl-C stops the API, then flushes, then exits 0', async () => {
    const port = await freePort();
    const url = `http://127.0.0.1:${port}`;
    const { key } = await createApiKey(env.pool, { tenant: 'started' });
    // The worker holds events for 5 s, so they are still in its hands when Ctrl-C comes right after they are
    // accepted. (Not longer: its blocking read lasts up to FLUSH_INTERVAL_MS, and stopping waits for it.)
    const start = spawnGroup(
      ['start'],
      envVars(env, {
        PORT: String(port),
        HOST: '127.0.0.1',
        API_PROCESSES: '2',
        FLUSH_INTERVAL_MS: '5000',
        FLUSH_BATCH_EVENTS: '100000',
        LOG_LEVEL: 'info',
      }),
    );
    groups.push(start);
    await eventually(async () => (await fetch(`${url}/readyz`).catch(() => null))?.status === 200, 'api ready', 40_000);
    const children = async () => {
      const { stdout } = await promisify(execFile)('ps', ['-o', 'pid=,args=', '--ppid', String(start.child.pid)]);
      return stdout
        .trim()
        .split('\n')
        .map((l) => ({ pid: Number(l.trim().split(/\s+/)[0]), role: l.trim().split(/\s+/).at(-1) }));
    };
    await eventually(async () => (await children()).length === 2, 'api and worker children');
    const worker = (await children()).find((c) => c.role === 'worker')!;
    process.kill(worker.pid, 'SIGKILL');
    await eventually(async () => (await children()).some((c) => c.role === 'worker' && c.pid !== worker.pid), 'the worker restarted');
    const restarted = (await children()).find((c) => c.role === 'worker' && c.pid !== worker.pid)!;
    // The new worker joins the group before events arrive: wait for it to say so (starting can take seconds on a
    // busy machine, and a worker still loading has no signal handlers yet).
    const ready = new RegExp(`"pid":${restarted.pid},[^\\n]*"msg":"flush worker started"`);
    await eventually(async () => ready.test(start.output()), 'the restarted worker started', 60_000);

    const res = await fetch(`${url}/v1/events`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', authorization: `Bearer ${key}` },
      body: JSON.stringify({ events: [{ type: 'a' }, { type: 'b' }, { type: 'c' }] }),
    });
    assert.equal(res.status, 202);
    assert.equal(await countEvents(env, 'started'), 0, 'held by the worker, not yet written');

    const tree = await descendants(start.child.pid!);
    start.ctrlC();
    const { code } = await start.exited;
    assert.equal(code, 0, start.output());
    assert.equal(await countEvents(env, 'started'), 3, `the worker's final flush wrote what it held\n${start.output()}`);
    for (const pid of tree) assert.equal(alive(pid), false, `child ${pid} exited`);
    assert.doesNotMatch(start.output(), /exiting now|killing/);
  });
});

describe('floodgate start with WORKERS=2', () => {
  let env: TestEnv;
  let start: ReturnType<typeof spawnGroup> | undefined;
  before(async () => {
    env = await createTestEnv();
  });
  after(async () => {
    start?.kill();
    await env?.cleanup();
  });

  it('runs two worker processes, each with its own metrics port, and stores every event exactly once', async () => {
    const [port, workerMetricsPort] = [await freePort(), await freePort()];
    const url = `http://127.0.0.1:${port}`;
    const { key } = await createApiKey(env.pool, { tenant: 'twoworkers' });
    start = spawnGroup(
      ['start'],
      envVars(env, {
        PORT: String(port),
        HOST: '127.0.0.1',
        API_PROCESSES: '1',
        WORKERS: '2',
        WORKER_METRICS_PORT: String(workerMetricsPort),
        FLUSH_INTERVAL_MS: '50',
        LOG_LEVEL: 'info',
      }),
    );
    const group = start;
    await eventually(async () => (await fetch(`${url}/readyz`).catch(() => null))?.status === 200, 'api ready', 40_000);
    const workers = async () => {
      const { stdout } = await promisify(execFile)('ps', ['-o', 'args=', '--ppid', String(group.child.pid)]);
      return stdout.split('\n').filter((l) => l.trim().endsWith(' worker')).length;
    };
    await eventually(async () => (await workers()) === 2, 'two worker children');
    // Each worker got its own metrics port (the second would otherwise fail to listen and crash-loop); a worker
    // serves it only once its flusher has joined the consumer group.
    for (const p of [workerMetricsPort, workerMetricsPort + 1]) {
      await eventually(async () => (await fetch(`http://127.0.0.1:${p}/metrics`).catch(() => null))?.status === 200, `metrics on ${p}`);
    }

    const sent = 20;
    for (let i = 0; i < sent; i++) {
      const res = await fetch(`${url}/v1/events`, {
        method: 'POST',
        headers: { 'content-type': 'application/json', authorization: `Bearer ${key}` },
        body: JSON.stringify({ events: [{ type: 'w', idempotency_key: `k${i}` }, { type: 'w' }] }),
      });
      assert.equal(res.status, 202);
    }
    await eventually(async () => (await countEvents(env, 'twoworkers')) === sent * 2, 'every event stored');
    group.ctrlC();
    const { code } = await group.exited;
    assert.equal(code, 0, group.output());
    assert.equal(await countEvents(env, 'twoworkers'), sent * 2, 'stored exactly once: no event written twice');
  });
});
