import assert from 'node:assert/strict';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { parseLoadtestArgs } from '../cli/loadtest-command.js';
import { clientBacklogSeconds, clientRecoverySeconds } from '../loadtest/client-figures.js';
import type { ClientSecond } from '../loadtest/client-model.js';
import type { ClientsReport } from '../loadtest/run-clients.js';
import { startSdkFloodgate, type SdkFloodgate } from './sdk-floodgate.js';
import { envVars, spawnFloodgate } from './support.js';

describe('floodgate loadtest clients: overload with simulated SDK clients', () => {
  let fg: SdkFloodgate;
  let out: string;
  before(async () => {
    fg = await startSdkFloodgate();
    out = await mkdtemp(join(tmpdir(), 'floodgate-clients-'));
  });
  after(async () => {
    await fg?.close();
    if (out) await rm(out, { recursive: true, force: true });
  });

  it('parses its flags', () => {
    const action = parseLoadtestArgs(['clients', '--clients', '20', '--capacity', '500', '--delivery-slo', '1500']);
    assert.ok(action.action === 'run');
    assert.deepEqual([action.scenario, action.clients, action.capacity, action.deliverySloMs], ['clients', 20, 500, 1500]);
  });

  it('runs ½C, 2×C, 4×C and ½C through the SDK, and every delivered event is stored exactly once', async () => {
    const key = await fg.key('loadtest-clients');
    const run = await (
      await spawnFloodgate(
        [
          'loadtest',
          'clients',
          '--url',
          fg.api.url,
          '--key',
          key,
          '--clients',
          '8',
          '--capacity',
          '150',
          '--duration',
          '2',
          '--out',
          out,
          '--quiet',
        ],
        envVars(fg.env),
      )
    ).exited;
    assert.equal(run.code, 0, `${run.stdout}\n${run.stderr}`);
    const file = /reports: (\S+\.json)/.exec(run.stdout)![1]!;
    const report = JSON.parse(await readFile(file, 'utf8')) as ClientsReport;
    assert.deepEqual(
      report.phases.map((p) => [p.label, p.offeredPerSec]),
      [
        ['warm-up ½C', 75],
        ['unloaded ½C', 75],
        ['2×C', 300],
        ['4×C', 600],
        ['recovery ½C', 75],
      ],
    );
    assert.ok('ok' in report.integrity && report.integrity.ok, JSON.stringify(report.integrity));
    assert.equal(report.integrity.acknowledged, report.totals.delivered);
    assert.equal(report.deliveredTwice, 0);
    const t = report.totals;
    assert.equal(
      t.tracked,
      t.delivered + t.dropped.critical + t.dropped.normal + t.dropped.low + t.failed + t.undeliveredAtClose,
      'every tracked event accounted for',
    );
    assert.ok(report.overload && report.overload.levels.length === 5);
    assert.match(run.stdout, /critical events tracked at 2×C and 4×C delivered within 10 s/);
    assert.match(await readFile(file.replace(/\.json$/, '.md'), 'utf8'), /^# floodgate loadtest clients/);
  });

  it('recovery: back to normal when 503s stop and critical is fast again; backlog when the clients hold what they held unloaded', () => {
    const second = (phase: string, shed: number, criticalP99: number, held: number): ClientSecond => {
      const p = (p99: number) => ({ count: 1, p50: p99, p90: p99, p99, p999: p99, max: p99 });
      const zero = { critical: 0, normal: 0, low: 0 };
      return {
        t: 0,
        phase,
        offeredPerSec: 1,
        tracked: zero,
        delivered: { critical: 1, normal: 1, low: 1 },
        dropped: zero,
        failed: 0,
        latency: { critical: p(criticalP99), normal: p(9000), low: p(9000) },
        requests: 1,
        accepted: 1,
        shed,
        rateLimited: 0,
        errors: 0,
        throttled: 0,
        held,
      };
    };
    const samples = [
      second('unloaded', 0, 900, 100),
      second('unloaded', 0, 900, 100),
      second('recovery', 5, 3000, 5000),
      second('recovery', 0, 800, 4000),
      second('recovery', 0, 700, 150),
      second('recovery', 0, 700, 120),
    ];
    assert.equal(clientRecoverySeconds(samples, 'recovery', 2000), 1);
    assert.equal(clientBacklogSeconds(samples, 'recovery', 'unloaded'), 2);
    assert.equal(clientRecoverySeconds(samples.slice(0, 3), 'recovery', 2000), null, 'never back within the phase');
  });
});
