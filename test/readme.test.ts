import assert from 'node:assert/strict';
import { access, readFile, readdir } from 'node:fs/promises';
import { dirname, join, normalize } from 'node:path';
import { describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { CONFIG_VARIABLES } from '../lib/config.js';
import { ERROR_CATALOGUE } from '../lib/errors.js';
import { anchors, prose } from './markdown.js';

const ROOT = fileURLToPath(new URL('../', import.meta.url));
const read = (path: string) => readFile(join(ROOT, path), 'utf8');
const exists = (path: string) =>
  access(join(ROOT, path)).then(
    () => true,
    () => false,
  );

const readme = await read('README.md');
const tableRows = (text: string) => text.split('\n').filter((line) => line.startsWith('|'));
const errorRows = tableRows(await read('docs/api.md'));
const configRows = tableRows(await read('docs/configuration.md'));

/** The manual: README.md and every Markdown file in docs/, by path from the repository root. */
const manual = new Map<string, string>([['README.md', readme]]);
for (const file of (await readdir(join(ROOT, 'docs'))).filter((f) => f.endsWith('.md')).sort()) {
  manual.set(`docs/${file}`, await read(`docs/${file}`));
}

/**
 * Documents linked from the README's index while they are being written on other branches. A link to one of
 * them is checked like any other once the file exists; until then its absence is tolerated. Empty the list
 * once they have all landed.
 */
const DOCS_IN_PROGRESS = new Set(['docs/fairness.md', 'docs/analytics.md', 'docs/live.md', 'docs/sdk.md', 'docs/development.md']);

/** Relative Markdown links of a document: `[text](target)` with no scheme. */
function relativeLinks(markdown: string): string[] {
  return [...prose(markdown).matchAll(/\]\(([^)\s]+)\)/g)].map((m) => m[1]!).filter((target) => !/^[a-z]+:/i.test(target));
}

describe('README and docs', () => {
  it('docs/api.md documents every error code of the catalogue with its status', () => {
    for (const [code, { status }] of Object.entries(ERROR_CATALOGUE)) {
      assert.ok(
        errorRows.some((row) => row.includes(`\`${code}\``) && row.includes(`| ${status} |`)),
        `docs/api.md error table lacks ${status} ${code}`,
      );
    }
  });

  it('docs/configuration.md documents every configuration variable with its default', () => {
    for (const variable of Object.values(CONFIG_VARIABLES)) {
      const row = configRows.find((r) => r.startsWith(`| \`${variable.name}\` |`));
      assert.ok(row, `docs/configuration.md table lacks ${variable.name}`);
      if (variable.defaultValue) assert.ok(row.includes(`\`${variable.defaultValue}\``), `${variable.name}: default not shown`);
    }
  });

  it('gives the two commands: run the platform and run every test', () => {
    assert.match(readme, /npm ci && npm start/);
    assert.match(readme, /npm test/);
  });

  it('keeps the README a manual of at most 250 lines', () => {
    const lines = readme.split('\n').length;
    assert.ok(lines <= 250, `README.md has ${lines} lines; move detail into docs/`);
  });

  it('links every document in docs/ from the README', () => {
    for (const path of manual.keys()) {
      if (path !== 'README.md') assert.ok(readme.includes(`](${path}`), `README.md does not link ${path}`);
    }
  });

  it('every relative link in README.md and docs/ points at an existing file and heading', async () => {
    for (const [path, text] of manual) {
      for (const link of relativeLinks(text)) {
        const [file, anchor] = link.split('#') as [string, string | undefined];
        const target = file === '' ? path : normalize(join(dirname(path), file));
        if (!(await exists(target))) {
          assert.ok(DOCS_IN_PROGRESS.has(target), `${path}: link ${link} points at a missing file ${target}`);
          continue;
        }
        if (anchor === undefined) continue;
        const body = manual.get(target) ?? (target.endsWith('.md') ? await read(target) : undefined);
        assert.ok(body !== undefined, `${path}: link ${link} has an anchor into a file that is not Markdown`);
        assert.ok(anchors(body).has(anchor), `${path}: link ${link}: ${target} has no heading #${anchor}`);
      }
    }
  });

  it('names only files and directories that exist', async () => {
    const roots = 'app|bench|bin|cli|client|db|docs|grafana|lib|loadtest|prometheus|test|workers';
    const pathLike = new RegExp(`\`((?:${roots})/[A-Za-z0-9_./-]*)\``, 'g');
    // Where runs write their reports: created on first use, never committed.
    const generated = (await read('.gitignore'))
      .split('\n')
      .map((line) => line.trim().replace(/\/$/, ''))
      .filter(Boolean);
    for (const [path, text] of manual) {
      for (const m of prose(text).matchAll(pathLike)) {
        const named = m[1]!;
        if (DOCS_IN_PROGRESS.has(named) || generated.includes(named.replace(/\/$/, ''))) continue;
        assert.ok(await exists(named), `${path} names ${named}, which does not exist`);
      }
    }
  });

  it('speaks only of Floodgate: no issue numbers, no work sessions, no local machine paths', () => {
    for (const [path, text] of manual) {
      for (const [pattern, what] of [
        [/\bissues? #?\d+/i, 'an issue number'],
        [/\bthis session\b/i, 'a work session'],
        [/(^|[\s`(])\/(tmp|work|home|root)\//m, 'a local machine path'],
      ] as const) {
        const found = pattern.exec(text);
        assert.ok(!found, `${path} mentions ${what}: "${found?.[0]}"`);
      }
    }
  });
});
