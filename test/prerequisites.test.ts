import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { chmod, mkdtemp, rm, symlink } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';

const SCRIPT = fileURLToPath(new URL('../scripts/test-prerequisites.sh', import.meta.url));
const NOBODY = 65534;

/** `which`, without a shell. */
function which(program: string): string {
  const found = spawnSync('bash', ['-c', `command -v ${program}`], { encoding: 'utf8' }).stdout.trim();
  assert.ok(found, `${program} is not on PATH`);
  return found;
}

describe('scripts/test-prerequisites.sh (run first by npm test)', () => {
  let bin: string;

  before(async () => {
    // A PATH with the shell tools the script uses but none of the programs it checks for.
    bin = await mkdtemp(join(tmpdir(), 'floodgate-prereq-'));
    await chmod(bin, 0o755); // readable by the unprivileged user below
    for (const program of ['node', 'bash', 'timeout', 'id', 'dirname']) await symlink(which(program), join(bin, program));
  });

  after(async () => {
    if (bin) await rm(bin, { recursive: true, force: true });
  });

  it('passes on this machine, which has everything the tests need', () => {
    const run = spawnSync('bash', [SCRIPT], { encoding: 'utf8' });
    assert.equal(run.status, 0, run.stderr);
  });

  it('without root, fails naming the apt-get command that installs what is missing', () => {
    // As root the script would install the packages, so the check runs as an unprivileged user.
    const asUser = process.getuid?.() === 0 ? ['setpriv', `--reuid=${NOBODY}`, `--regid=${NOBODY}`, '--clear-groups'] : [];
    const command = [...asUser, 'env', `PATH=${bin}`, 'bash', SCRIPT];
    const run = spawnSync(command[0]!, command.slice(1), { encoding: 'utf8', cwd: tmpdir() });
    assert.equal(run.status, 1);
    assert.match(run.stderr, /missing programs the tests need/);
    assert.match(run.stderr, /sudo apt-get install -y --no-install-recommends prometheus docker-compose redis-server/);
  });
});
