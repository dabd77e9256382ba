import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import { describe, it } from 'node:test';
import { CONFIG_VARIABLES } from '../lib/config.js';
import { ERROR_CATALOGUE } from '../lib/errors.js';

const readme = await readFile(new URL('../README.md', import.meta.url), 'utf8');
const tableRows = (text: string) => text.split('\n').filter((line) => line.startsWith('|'));
const errorRows = tableRows(await readFile(new URL('../docs/api.md', import.meta.url), 'utf8'));
const configRows = tableRows(await readFile(new URL('../docs/configuration.md', import.meta.url), 'utf8'));

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

  it('gives the test command', () => {
    assert.match(readme, /npm test/);
  });
});
