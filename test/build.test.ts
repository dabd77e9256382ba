import assert from 'node:assert/strict';
import { readFile, readdir } from 'node:fs/promises';
import { builtinModules } from 'node:module';
import { describe, it } from 'node:test';

/** What ships: compiled by tsconfig.build.json into dist/, run by bin/floodgate.js and the Docker image. */
const SHIPPED = ['app', 'workers', 'lib', 'cli', 'loadtest', 'client/src'];

const ROOT = new URL('../', import.meta.url);
const read = (path: string) => readFile(new URL(path, ROOT), 'utf8');

/** Every .ts file of the shipped directories, as repository paths. */
async function shippedSources(): Promise<string[]> {
  const files: string[] = [];
  for (const dir of SHIPPED) {
    for (const entry of await readdir(new URL(`${dir}/`, ROOT), { recursive: true }))
      if (entry.endsWith('.ts')) files.push(`${dir}/${entry}`);
  }
  return files;
}

/** The package a bare import specifier names (`@scope/name/sub` → `@scope/name`). */
function packageName(specifier: string): string {
  const parts = specifier.split('/');
  return specifier.startsWith('@') ? `${parts[0]}/${parts[1]}` : parts[0]!;
}

describe('build and image', () => {
  it('tsconfig.build.json compiles exactly the shipped directories (no test/, no bench/)', async () => {
    // JSON with comments: drop whole-line // comments before parsing.
    const text = (await read('tsconfig.build.json')).replace(/^\s*\/\/.*$/gm, '');
    const config = JSON.parse(text) as { extends: string; include: string[]; compilerOptions: { outDir: string; noEmit: boolean } };
    assert.deepEqual([...config.include].sort(), [...SHIPPED].sort());
    assert.equal(config.compilerOptions.outDir, 'dist');
    assert.equal(config.compilerOptions.noEmit, false);
  });

  it('shipped code imports only production dependencies and Node built-ins, so `npm ci --omit=dev` can run it', async () => {
    const pkg = JSON.parse(await read('package.json')) as { dependencies: Record<string, string>; devDependencies: Record<string, string> };
    assert.equal(pkg.dependencies.tsx, undefined, 'tsx is a dev dependency');
    assert.ok(pkg.devDependencies.tsx && pkg.devDependencies.typescript);
    const builtins = new Set(builtinModules);
    const offending: string[] = [];
    for (const file of [...(await shippedSources()), 'bin/floodgate.js']) {
      const source = await read(file);
      for (const m of source.matchAll(/(?:^|\n)\s*(?:import|export)\s(?!type\s)[^;]*?from\s+'([^']+)'|import\(\s*'([^']+)'\s*\)/g)) {
        const specifier = (m[1] ?? m[2])!;
        if (specifier.startsWith('.') || specifier.startsWith('node:') || builtins.has(specifier)) continue;
        if (!Object.hasOwn(pkg.dependencies, packageName(specifier))) offending.push(`${file}: ${specifier}`);
      }
    }
    assert.deepEqual(offending, []);
  });

  it('the Docker image builds on a supported Node LTS and copies neither test/ nor bench/', async () => {
    const dockerfile = await read('Dockerfile');
    const bases = [...dockerfile.matchAll(/^FROM\s+(\S+)/gm)].map((m) => m[1]!);
    assert.ok(bases.length >= 2, 'a build stage and a runtime stage');
    for (const base of bases) assert.match(base, /^node:(22|24)-bookworm-slim$/);
    const copied = [...dockerfile.matchAll(/^COPY\s+(?:--\S+\s+)*(.+?)\s+\S+$/gm)].flatMap((m) => m[1]!.split(/\s+/));
    for (const path of copied) assert.doesNotMatch(path, /^(\.\/)?(test|bench)(\/|$)|\/app\/(test|bench)/, `Dockerfile copies ${path}`);
    const ignored = (await read('.dockerignore')).split('\n').map((l) => l.trim());
    assert.ok(ignored.includes('test') && ignored.includes('bench'), '.dockerignore keeps test/ and bench/ out of the build context');
    assert.match(dockerfile, /npm prune --omit=dev/);
  });
});
