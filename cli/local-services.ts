import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { accessSync, constants, existsSync, readdirSync, realpathSync } from 'node:fs';
import { chmod, chown, mkdir, readFile, stat, writeFile } from 'node:fs/promises';
import { connect } from 'node:net';
import { delimiter, dirname, join, resolve } from 'node:path';
import { promisify } from 'node:util';

const execFileAsync = promisify(execFile);

/** A server this process started, and how to stop it. */
export interface LocalService {
  readonly name: string;
  /** The server's main process, so callers (and tests) can check it is really gone after stop(). */
  readonly pid: number;
  /** Stops the server and waits until its process has exited; idempotent. */
  stop(): Promise<void>;
}

/** Where private servers keep their files, and how to tell the operator what happened. */
export interface LocalServiceOptions {
  /** Root of the private data (`.data/` in the checkout for `floodgate start`; a temp dir in tests). */
  readonly dataDir: string;
  /** One human line per server started (the CLI writes these to stderr). */
  readonly say: (line: string) => void;
}

/** Whether something accepts connections at the URL's host and port (or its `?host=/socket/dir`). */
export function isReachable(url: string, timeoutMs = 1000): Promise<boolean> {
  const parsed = new URL(url);
  const isRedis = parsed.protocol.startsWith('redis');
  const port = Number(parsed.port || (isRedis ? 6379 : 5432));
  const socketDir = parsed.searchParams.get('host');
  // libpq-style URLs may name a unix socket directory instead of a TCP host.
  const target =
    !isRedis && socketDir?.startsWith('/')
      ? { path: join(socketDir, `.s.PGSQL.${port}`) }
      : { host: parsed.hostname.replace(/^\[|\]$/g, '') || '127.0.0.1', port };
  return new Promise((done) => {
    const socket = connect(target);
    const finish = (ok: boolean) => {
      socket.destroy();
      done(ok);
    };
    socket.setTimeout(timeoutMs, () => finish(false));
    socket.once('connect', () => finish(true));
    socket.once('error', () => finish(false));
  });
}

function isExecutable(path: string): boolean {
  try {
    accessSync(path, constants.X_OK);
    return true;
  } catch {
    return false;
  }
}

function pathDirs(): string[] {
  // PATH is the operating system's program search path, not a Floodgate setting, so lib/config.ts does not own it.
  return (process.env.PATH ?? '').split(delimiter).filter(Boolean);
}

/**
 * The directory holding initdb, pg_ctl and postgres of one PostgreSQL version: PATH first (resolved through
 * symlinks so all three come from the same version), then /usr/lib/postgresql/<newest>/bin (Debian keeps
 * them off PATH).
 */
export function findPostgresBinDir(): string | undefined {
  const has = (dir: string) => ['initdb', 'pg_ctl', 'postgres'].every((b) => isExecutable(join(dir, b)));
  for (const dir of pathDirs()) {
    const initdb = join(dir, 'initdb');
    if (!isExecutable(initdb)) continue;
    const real = dirname(realpathSync(initdb));
    if (has(real)) return real;
  }
  const base = '/usr/lib/postgresql';
  if (!existsSync(base)) return undefined;
  const versions = readdirSync(base).sort((a, b) => Number(b) - Number(a));
  return versions.map((v) => join(base, v, 'bin')).find(has);
}

/** The redis-server on PATH, if any. */
export function findRedisServer(): string | undefined {
  return pathDirs()
    .map((d) => join(d, 'redis-server'))
    .find(isExecutable);
}

interface RunAs {
  readonly uid?: number;
  readonly gid?: number;
}

/** PostgreSQL refuses to run as root; as root, its programs run as the `postgres` system user instead. */
async function postgresIdentity(): Promise<RunAs> {
  if (process.getuid?.() !== 0) return {};
  try {
    const [{ stdout: uid }, { stdout: gid }] = await Promise.all([
      execFileAsync('id', ['-u', 'postgres']),
      execFileAsync('id', ['-g', 'postgres']),
    ]);
    return { uid: Number(uid.trim()), gid: Number(gid.trim()) };
  } catch {
    throw new Error(
      'PostgreSQL will not run as root and there is no "postgres" user to run it as: create one (useradd --system postgres), run floodgate as a non-root user, or set DATABASE_URL to a running server',
    );
  }
}

async function runAs(identity: RunAs, file: string, args: string[], cwd: string): Promise<void> {
  // Node drops supplementary groups when uid/gid are set (libuv setgroups), so this is a clean switch of user.
  await execFileAsync(file, args, { ...identity, cwd, maxBuffer: 16 * 1024 * 1024 });
}

async function processExists(pid: number): Promise<boolean> {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

const shellQuote = (s: string) => `'${s.replace(/'/g, `'\\''`)}'`;

/**
 * Starts a private PostgreSQL (trust auth, superuser `postgres`) from the installed binaries: cluster in
 * `<dataDir>/postgres`, unix socket in `<dataDir>/run`, log in `<dataDir>/postgres.log`, TCP on the URL's host
 * and port. Re-uses the cluster when it was initialised before. `settings` are extra `name=value` server settings.
 */
export async function startLocalPostgres(url: string, dataDir: string, settings: readonly string[] = []): Promise<LocalService> {
  const bin = findPostgresBinDir();
  if (!bin)
    throw new Error(
      'no PostgreSQL server binaries (initdb, pg_ctl) on PATH or in /usr/lib/postgresql/*/bin: install PostgreSQL or set DATABASE_URL',
    );
  const parsed = new URL(url);
  const port = parsed.port || '5432';
  const host = parsed.hostname.replace(/^\[|\]$/g, '') || '127.0.0.1';
  const root = resolve(dataDir);
  const pgdata = join(root, 'postgres');
  const socketDir = join(root, 'run');
  const logFile = join(root, 'postgres.log');
  const identity = await postgresIdentity();

  await mkdir(root, { recursive: true });
  // Made here rather than by initdb, which (as the postgres user) may not write into the data root.
  await mkdir(pgdata, { recursive: true, mode: 0o700 });
  await mkdir(socketDir, { recursive: true });
  if (!existsSync(logFile)) await writeFile(logFile, '');
  if (identity.uid !== undefined) {
    // The postgres user needs to pass through the data root (search only, not list) and own its own files.
    await chmod(root, ((await stat(root)).mode & 0o7777) | 0o011);
    for (const p of [pgdata, socketDir, logFile]) await chown(p, identity.uid, identity.gid!);
    await assertReachableBy(identity, socketDir);
  }

  if (!existsSync(join(pgdata, 'PG_VERSION'))) {
    // C collation: no dependency on which locales the machine has installed, and faster sorts.
    await runAs(identity, join(bin, 'initdb'), ['-D', pgdata, '-U', 'postgres', '--auth=trust', '-E', 'UTF8', '--locale=C'], root).catch(
      (err: Error) => {
        throw new Error(`initdb into ${pgdata} failed: ${err.message}`);
      },
    );
  }
  const pgCtl = join(bin, 'pg_ctl');
  // pg_ctl hands -o to a shell, so each setting is quoted.
  const options = [`port=${port}`, `listen_addresses=${host}`, `unix_socket_directories=${socketDir}`, ...settings]
    .map((s) => `-c ${shellQuote(s)}`)
    .join(' ');
  await runAs(identity, pgCtl, ['-D', pgdata, '-o', options, '-l', logFile, '-w', '-t', '60', 'start'], root).catch((err: Error) => {
    throw new Error(`PostgreSQL did not start on ${host}:${port} (${err.message.split('\n')[0]}); see ${logFile}`);
  });
  const pid = Number((await readFile(join(pgdata, 'postmaster.pid'), 'utf8')).split('\n')[0]);

  let stopped: Promise<void> | undefined;
  return {
    name: `PostgreSQL on ${host}:${port} (data in ${pgdata}, log ${logFile})`,
    pid,
    stop() {
      stopped ??= (async () => {
        // fast: roll back open sessions and shut down cleanly (a checkpoint), without waiting for clients.
        await runAs(identity, pgCtl, ['-D', pgdata, '-m', 'fast', '-w', '-t', '60', 'stop'], root).catch(() => {});
        for (let i = 0; i < 100 && (await processExists(pid)); i++) await new Promise((r) => setTimeout(r, 100));
      })();
      return stopped;
    },
  };
}

async function assertReachableBy(identity: RunAs, dir: string): Promise<void> {
  try {
    await execFileAsync('test', ['-w', dir, '-a', '-x', dir], { ...identity, cwd: '/' });
  } catch {
    throw new Error(
      `PostgreSQL runs as the "postgres" user (it refuses root), and that user cannot reach ${dir}: make its parent directories searchable (chmod o+x) or set DATABASE_URL to a running server`,
    );
  }
}

/** Starts a private Redis (AOF on) from the installed redis-server: files in `<dataDir>/redis`, log in `<dataDir>/redis.log`. */
export async function startLocalRedis(url: string, dataDir: string): Promise<LocalService> {
  const redisServer = findRedisServer();
  if (!redisServer) throw new Error('no redis-server on PATH: install Redis or set REDIS_URL');
  const parsed = new URL(url);
  const port = parsed.port || '6379';
  const host = parsed.hostname.replace(/^\[|\]$/g, '') || '127.0.0.1';
  const root = resolve(dataDir);
  const dir = join(root, 'redis');
  const logFile = join(root, 'redis.log');
  await mkdir(dir, { recursive: true });
  const child: ChildProcess = spawn(
    redisServer,
    [
      '--port',
      port,
      '--bind',
      host,
      '--dir',
      dir,
      '--appendonly',
      'yes',
      '--appendfsync',
      'everysec',
      '--save',
      '',
      '--daemonize',
      'no',
      '--logfile',
      logFile,
    ],
    // Its own process group: a Ctrl-C meant for `floodgate start` must not stop Redis before the worker's final flush.
    { stdio: 'ignore', detached: true },
  );
  const exited = new Promise<void>((r) => child.once('exit', () => r()));
  const spawnFailed = new Promise<never>((_, reject) => child.once('error', reject));
  const deadline = Date.now() + 10_000;
  while (!(await isReachable(`redis://${host}:${port}`, 200))) {
    if (child.exitCode !== null || Date.now() > deadline) {
      child.kill('SIGKILL');
      throw new Error(`redis-server did not start on ${host}:${port}; see ${logFile}`);
    }
    await Promise.race([new Promise((r) => setTimeout(r, 100)), spawnFailed]);
  }
  let stopped: Promise<void> | undefined;
  return {
    name: `Redis on ${host}:${port} (append-only file in ${dir}, log ${logFile})`,
    pid: child.pid!,
    stop() {
      stopped ??= (async () => {
        if (child.exitCode !== null || child.signalCode !== null) return;
        // SIGTERM: Redis fsyncs the append-only file and exits; SIGKILL only if it hangs.
        child.kill('SIGTERM');
        const killer = setTimeout(() => child.kill('SIGKILL'), 15_000);
        await exited;
        clearTimeout(killer);
      })();
      return stopped;
    },
  };
}

/**
 * PostgreSQL at `url`: nothing to do when something answers; a private server when nothing does and the URL is
 * Floodgate's default (a fresh machine); otherwise an error naming the URL, because the operator chose it.
 */
export async function ensurePostgres(url: string, isDefault: boolean, options: LocalServiceOptions): Promise<LocalService | undefined> {
  if (await isReachable(url)) return undefined;
  if (!isDefault)
    throw new Error(`nothing answers at DATABASE_URL=${url}: start PostgreSQL there, or set DATABASE_URL to a running server`);
  const service = await startLocalPostgres(url, options.dataDir);
  options.say(`nothing answered at ${url}; started a private ${service.name}`);
  return service;
}

/** Redis at `url`, with the same rules as ensurePostgres. */
export async function ensureRedis(url: string, isDefault: boolean, options: LocalServiceOptions): Promise<LocalService | undefined> {
  if (await isReachable(url)) return undefined;
  if (!isDefault) throw new Error(`nothing answers at REDIS_URL=${url}: start Redis there, or set REDIS_URL to a running server`);
  const service = await startLocalRedis(url, options.dataDir);
  options.say(`nothing answered at ${url}; started a private ${service.name}`);
  return service;
}

/** Both servers `floodgate start` needs; if the second cannot be had, the first one started here is stopped again. */
export async function ensureServices(
  /** No `redis` (QUEUE=postgres): Redis is neither probed nor started. */
  services: { postgres: { url: string; isDefault: boolean }; redis?: { url: string; isDefault: boolean } },
  options: LocalServiceOptions,
): Promise<LocalService[]> {
  const started: LocalService[] = [];
  try {
    const pg = await ensurePostgres(services.postgres.url, services.postgres.isDefault, options);
    if (pg) started.push(pg);
    const redis = services.redis && (await ensureRedis(services.redis.url, services.redis.isDefault, options));
    if (redis) started.push(redis);
  } catch (err) {
    await stopServices(started);
    throw err;
  }
  return started;
}

/** Stops services in reverse start order, every one even when another fails. */
export async function stopServices(services: readonly LocalService[]): Promise<void> {
  for (const s of [...services].reverse()) await s.stop().catch(() => {});
}
