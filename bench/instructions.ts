// Instructions counted by valgrind's callgrind, for `npm run bench:profile -- --instructions`. The CPU time of a
// process on a shared machine moves by tens of percent between runs (and doubled once); the number of instructions
// it executes for the same requests does not depend on what else runs. A target runs under callgrind; its counters
// are zeroed before a measured window and dumped after it, and the dump's total is the
// instructions of every thread of the process in that window. Only user-space instructions count: the kernel's
// share of a socket read or write does not (see docs/benchmarks.md for how the ratios compare with CPU time).
// The dumps are triggered by SIGUSR2, not by callgrind_control: vgdb, which callgrind_control talks through,
// answered but never got the API process to dump while it waited in epoll. A module preloaded into the target
// calls a libuv function no Floodgate code calls (uv_os_getpriority, through os.getPriority) on SIGUSR2, and
// callgrind dumps before entering it (--dump-before); each dump holds what ran since the previous one.
import { execFile, spawn } from 'node:child_process';
import { mkdir, readdir, readFile, rm, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { REPO_ROOT, type Child } from './processes.js';

const run = promisify(execFile);

/** The function whose entry triggers a dump, and the preload that enters it on SIGUSR2. */
const DUMP_FUNCTION = 'uv_os_getpriority';
const DUMP_ON_SIGNAL = 'data:text/javascript,import os from "node:os"; process.on("SIGUSR2", () => os.getPriority());';

/** A node process under callgrind whose instructions can be counted over windows. */
export interface CountedChild extends Child {
  /** Zeroes the counters: the next `count` covers what runs from now. */
  zero(): Promise<void>;
  /** Instructions executed since the last `zero`. */
  count(): Promise<number>;
}

/** Whether valgrind is installed. */
export async function callgrindAvailable(): Promise<boolean> {
  try {
    await run('valgrind', ['--version']);
    return true;
  } catch {
    return false;
  }
}

/** Starts `node <args>` under callgrind, its dumps in `dir`; counting is on from the start and zeroed by `zero`. */
export async function startCounted(dir: string, args: string[], env: Record<string, string>): Promise<CountedChild> {
  await mkdir(dir, { recursive: true });
  const child = spawn(
    'valgrind',
    [
      '--tool=callgrind',
      `--callgrind-out-file=${join(dir, 'callgrind.out.%p')}`,
      `--dump-before=${DUMP_FUNCTION}`,
      '--dump-instr=no',
      '--dump-line=no',
      process.execPath,
      '--import',
      DUMP_ON_SIGNAL,
      ...args,
    ],
    { cwd: REPO_ROOT, env: { ...process.env, ...env }, stdio: ['ignore', 'ignore', 'pipe'] },
  );
  let stderr = '';
  child.stderr.on('data', (chunk: Buffer) => {
    stderr = (stderr + chunk.toString()).slice(-4000);
  });
  child.once('exit', (code, signal) => {
    if (code !== 0 && code !== null && signal === null) process.stderr.write(`valgrind node ${args.join(' ')} exited ${code}\n${stderr}\n`);
  });
  const pid = String(child.pid);
  /** Has the target dump what ran since its last dump, and returns that dump's total. */
  async function dump(): Promise<number> {
    child.kill('SIGUSR2');
    // The dump goes to callgrind.out.<pid>.<n>, and may still be being written when found: its totals line is
    // written last. Each dump is deleted once read, so the one non-empty file left is the dump just written.
    const deadline = Date.now() + 120_000;
    for (;;) {
      const names = (await readdir(dir)).filter((f) => f.startsWith(`callgrind.out.${pid}.`));
      for (const name of names) {
        if ((await stat(join(dir, name))).size === 0) continue;
        const text = await readFile(join(dir, name), 'utf8');
        const total = /^totals:\s+(\d+)/m.exec(text);
        if (!total) continue;
        await rm(join(dir, name));
        return Number(total[1]);
      }
      if (Date.now() > deadline) throw new Error(`no callgrind dump of ${pid} within 120 s`);
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
  }
  return {
    process: child,
    stop: () =>
      new Promise<void>((resolve) => {
        if (child.exitCode !== null || child.signalCode !== null) return resolve();
        const kill = setTimeout(() => child.kill('SIGKILL'), 30_000);
        child.once('exit', () => {
          clearTimeout(kill);
          resolve();
        });
        child.kill('SIGTERM');
      }),
    async zero() {
      await dump();
    },
    count: dump,
  };
}
