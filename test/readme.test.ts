import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import { describe, it } from 'node:test';
import { CONFIG_VARIABLES } from '../lib/config.js';
import { ERROR_CATALOGUE } from '../lib/errors.js';

const readme = await readFile(new URL('../README.md', import.meta.url), 'utf8');
const rows = readme.split('\n').filter((line) => line.startsWith('|'));

describe('README', () => {
  it('documents every error code of the catalogue with its status', () => {
    for (const [code, { status }] of Object.entries(ERROR_CATALOGUE)) {
      assert.ok(
        rows.some((row) => row.includes(`\`${code}\``) && row.includes(`| ${status} |`)),
        `README error table lacks ${status} ${code}`,
      );
    }
  });

  it('documents every configuration variable with its default', () => {
    for (const variable of Object.values(CONFIG_VARIABLES)) {
      const row = rows.find((r) => r.startsWith(`| \`${variable.name}\` |`));
      assert.ok(row, `README configuration table lacks ${variable.name}`);
      if (variable.defaultValue !== undefined) assert.ok(row.includes(`\`${variable.defaultValue}\``), `${variable.name}: default not shown`);
    }
  });

  it('gives the test command', () => {
    assert.match(readme, /npm test/);
  });
});
