#!/usr/bin/env node
// `npm start` runs this first: it rebuilds dist/ when a shipped source is newer than the last build, so
// `npm start` never runs stale JavaScript. Without TypeScript installed (`npm ci --omit=dev`), it runs the
// existing build as it is, and says so if the sources look newer; without a build at all it fails, naming
// the commands to run.
import { spawnSync } from 'node:child_process';
import { existsSync, readdirSync, statSync } from 'node:fs';
import { createRequire } from 'node:module';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = fileURLToPath(new URL('../', import.meta.url));
// What tsconfig.build.json compiles, what `npm run build` copies, and what configures the build.
const INPUTS = ['app', 'workers', 'lib', 'cli', 'loadtest', 'client', 'db', 'tsconfig.json', 'tsconfig.build.json', 'package.json'];
const OUTPUT = join(root, 'dist', 'cli', 'main.js');

/** Newest modification time of a file, or of any file below a directory. */
function newest(path) {
  if (!existsSync(path)) return 0;
  const stats = statSync(path);
  if (!stats.isDirectory()) return stats.mtimeMs;
  return readdirSync(path).reduce((max, entry) => Math.max(max, newest(join(path, entry))), stats.mtimeMs);
}

function typescriptInstalled() {
  try {
    // The compiler `npm run build` runs (TypeScript 7); `typescript` itself is the TypeScript 6 API ESLint needs.
    createRequire(join(root, 'package.json')).resolve('@typescript/native/package.json');
    return true;
  } catch {
    return false;
  }
}

const built = existsSync(OUTPUT) ? statSync(OUTPUT).mtimeMs : 0;
const stale = built === 0 || INPUTS.some((input) => newest(join(root, input)) > built);
if (!stale) process.exit(0);

if (!typescriptInstalled()) {
  if (built === 0) {
    process.stderr.write('floodgate: dist/ is missing and TypeScript is not installed: run `npm ci` then `npm run build`.\n');
    process.exit(1);
  }
  process.stderr.write(
    'floodgate: the sources are newer than dist/, but TypeScript is not installed (npm ci --omit=dev): running the existing build.\n',
  );
  process.exit(0);
}

const npm = process.platform === 'win32' ? 'npm.cmd' : 'npm';
const build = spawnSync(npm, ['run', '--silent', 'build'], { cwd: root, stdio: 'inherit' });
process.exit(build.status ?? 1);
