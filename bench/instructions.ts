// Instructions counted by valgrind's callgrind, for `npm run bench:profile -- --instructions`. The CPU time of a
// process on a shared machine moves by tens of percent between runs (and doubled once); the number of instructions
// it executes for the same requests does not depend on what else runs. A target runs under callgrind; its counters
// are zeroed before a measured window and dumped after it (`callgrind_control`), and the dump's total is the
// instructions of every thread of the process in that window. Only user-space instructions count: the kernel's
// share of a socket read or write does not (see docs/benchmarks.md for how the ratios compare with CPU time).
import { execFile, spawn } from 'node:child_process';
import { mkdir, readdir, readFile, rm, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { REPO_ROOT, type Child } from './processes.js';

const run = promisify(execFile);

/** A node process under callgrind whose instructions can be counted over windows. */
export interface CountedChild extends Child {
  /** Zeroes the counters: the next `count` covers what runs from now. */
  zero(): Promise<void>;
  /** Instructions executed since the last `zero`. */
  count(): Promise<number>;
}

/** Whether valgrind (with callgrind_control) is installed; the mode needs both. */
export async function callgrindAvailable(): Promise<boolean> {
  try {
    await run('valgrind', ['--version']);
    await run('callgrind_control', ['--version']);
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
      '--dump-instr=no',
      '--dump-line=no',
      process.execPath,
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
  const control = (command: string) => run('callgrind_control', [command, pid], { timeout: 60_000 });
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
      await control('-z');
    },
    async count() {
      const { stdout } = await control('-d');
      // The dump goes to callgrind.out.<pid> or callgrind.out.<pid>.<n> (callgrind numbers some dumps, not all),
      // and may still be being written when callgrind_control returns: wait for its totals line, written last.
      // Each dump is deleted once read, so the one non-empty file left is the dump just written.
      const deadline = Date.now() + 120_000;
      for (;;) {
        const names = (await readdir(dir)).filter((f) => f === `callgrind.out.${pid}` || f.startsWith(`callgrind.out.${pid}.`));
        for (const name of names) {
          if ((await stat(join(dir, name))).size === 0) continue;
          const text = await readFile(join(dir, name), 'utf8');
          const total = /^totals:\s+(\d+)/m.exec(text);
          if (!total) continue;
          await rm(join(dir, name));
          return Number(total[1]);
        }
        if (Date.now() > deadline) throw new Error(`no callgrind dump of ${pid} within 120 s: ${stdout}`);
        await new Promise((resolve) => setTimeout(resolve, 200));
      }
    },
  };
}
