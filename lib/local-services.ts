import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { existsSync, readdirSync } from 'node:fs';
import { chmod, mkdir, writeFile } from 'node:fs/promises';
import { connect } from 'node:net';
import { dirname, join, resolve } from 'node:path';
import { promisify } from 'node:util';

const run = promisify(execFile);

/** A server this process started, and how to stop it. */
export interface LocalService {
  readonly name: string;
  stop(): Promise<void>;
}

/** Whether something accepts TCP connections at the URL's host and port. */
export function isReachable(url: string, timeoutMs = 1000): Promise<boolean> {
  const { hostname, port, protocol } = new URL(url);
  const defaultPort = protocol.startsWith('redis') ? 6379 : 5432;
  return new Promise((done) => {
    const socket = connect({ host: hostname, port: Number(port || defaultPort) });
    const finish = (ok: boolean) => {
      socket.destroy();
      done(ok);
    };
    socket.setTimeout(timeoutMs, () => finish(false));
    socket.once('connect', () => finish(true));
    socket.once('error', () => finish(false));
  });
}

function findPostgresBin(name: string): string {
  const base = '/usr/lib/postgresql';
  if (existsSync(base)) {
    const versions = readdirSync(base).sort((a, b) => Number(b) - Number(a));
    for (const v of versions) if (existsSync(join(base, v, 'bin', name))) return join(base, v, 'bin', name);
  }
  return name; // on PATH, or the spawn fails with a clear ENOENT
}

/** Postgres refuses to run as root; as root, run its binaries as the `postgres` user. */
async function asPostgresUser(dir: string): Promise<{ wrap: (cmd: string[]) => string[] }> {
  if (process.getuid?.() !== 0) return { wrap: (cmd) => cmd };
  await run('chown', ['-R', 'postgres:postgres', dir]);
  // The postgres user must be able to reach its directory through our data root.
  await chmod(dirname(dir), 0o755);
  return { wrap: (cmd) => ['runuser', '-u', 'postgres', '--', ...cmd] };
}

async function exec(cmd: string[]): Promise<void> {
  await run(cmd[0]!, cmd.slice(1), { maxBuffer: 16 * 1024 * 1024 });
}

/** Starts a private PostgreSQL (trust auth) with its data in `dataDir`, listening on the URL's port. */
export async function startLocalPostgres(url: string, dataDir: string): Promise<LocalService> {
  const port = new URL(url).port || '5432';
  const dir = resolve(dataDir);
  const data = join(dir, 'data');
  await mkdir(dir, { recursive: true });
  const user = await asPostgresUser(dir);
  if (!existsSync(join(data, 'PG_VERSION'))) {
    await exec(user.wrap([findPostgresBin('initdb'), '-D', data, '-U', 'postgres', '--auth=trust', '-E', 'UTF8', '--no-sync']));
  }
  const pgCtl = findPostgresBin('pg_ctl');
  const options = `-p ${port} -k ${dir} -c listen_addresses=127.0.0.1 -c shared_buffers=128MB -c fsync=on`;
  await exec(user.wrap([pgCtl, '-D', data, '-o', options, '-l', join(dir, 'postgres.log'), '-w', '-t', '60', 'start']));
  let stopped: Promise<void> | undefined;
  return {
    name: `PostgreSQL on 127.0.0.1:${port} (data in ${data})`,
    stop() {
      stopped ??= exec(user.wrap([pgCtl, '-D', data, '-m', 'fast', '-w', 'stop'])).catch(() => {});
      return stopped;
    },
  };
}

/** Starts a private Redis with AOF on, its data in `dataDir`, listening on the URL's port. */
export async function startLocalRedis(url: string, dataDir: string): Promise<LocalService> {
  const port = new URL(url).port || '6379';
  const dir = resolve(dataDir);
  await mkdir(dir, { recursive: true });
  await writeFile(join(dir, 'README'), 'Data of the private Redis started by `floodgate start`.\n');
  const child: ChildProcess = spawn(
    'redis-server',
    ['--port', port, '--bind', '127.0.0.1', '--dir', dir, '--appendonly', 'yes', '--save', '', '--logfile', join(dir, 'redis.log')],
    { stdio: 'ignore' },
  );
  const exited = new Promise<void>((r) => child.once('exit', () => r()));
  const failed = new Promise<never>((_, reject) => child.once('error', reject));
  const deadline = Date.now() + 10_000;
  while (!(await isReachable(`redis://127.0.0.1:${port}`, 200))) {
    if (child.exitCode !== null || Date.now() > deadline) throw new Error(`redis-server did not start on port ${port}; see ${join(dir, 'redis.log')}`);
    await Promise.race([new Promise((r) => setTimeout(r, 100)), failed]);
  }
  let stopped: Promise<void> | undefined;
  return {
    name: `Redis on 127.0.0.1:${port} (AOF in ${dir})`,
    stop() {
      stopped ??= (async () => {
        if (child.exitCode === null) child.kill('SIGTERM');
        await exited;
      })();
      return stopped;
    },
  };
}

/**
 * Makes sure PostgreSQL and Redis answer. When one does not and its URL is the default, starts a private
 * one under `dataDir`; when the URL was chosen by the operator, fails with a message saying what to do.
 */
export async function ensureServices(options: {
  databaseUrl: string;
  redisUrl: string;
  databaseUrlIsDefault: boolean;
  redisUrlIsDefault: boolean;
  dataDir: string;
  say: (line: string) => void;
}): Promise<LocalService[]> {
  const started: LocalService[] = [];
  try {
    if (!(await isReachable(options.databaseUrl))) {
      if (!options.databaseUrlIsDefault) {
        throw new Error(`nothing answers at DATABASE_URL=${options.databaseUrl}: start PostgreSQL there, or set DATABASE_URL to a running server`);
      }
      const pg = await startLocalPostgres(options.databaseUrl, join(options.dataDir, 'postgres'));
      started.push(pg);
      options.say(`nothing answered at ${options.databaseUrl}; started a private ${pg.name}`);
    }
    if (!(await isReachable(options.redisUrl))) {
      if (!options.redisUrlIsDefault) {
        throw new Error(`nothing answers at REDIS_URL=${options.redisUrl}: start Redis there, or set REDIS_URL to a running server`);
      }
      const redis = await startLocalRedis(options.redisUrl, join(options.dataDir, 'redis'));
      started.push(redis);
      options.say(`nothing answered at ${options.redisUrl}; started a private ${redis.name}`);
    }
  } catch (err) {
    await Promise.all(started.map((s) => s.stop()));
    throw err;
  }
  return started;
}
