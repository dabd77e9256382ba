import { existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

/** The checkout (or installed package) root: the nearest directory above this module holding package.json, so it is the same from cli/ and from dist/cli/. */
export function packageRoot(): string {
  let dir = dirname(fileURLToPath(import.meta.url));
  while (!existsSync(join(dir, 'package.json'))) {
    const parent = dirname(dir);
    if (parent === dir) throw new Error('cannot find the floodgate package root (no package.json above cli/)');
    dir = parent;
  }
  return dir;
}

/** Where `floodgate start` and `floodgate migrate` keep private PostgreSQL and Redis data (git-ignored). */
export function localDataDir(): string {
  return join(packageRoot(), '.data');
}
