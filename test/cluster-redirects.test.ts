import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { isClusterRedirect, isSlotMoving, retryClusterRedirects } from '../lib/cluster-redirects.js';

const error = (message: string) => new Error(message);

describe('cluster refusals (the command did not run, so it may be sent again)', () => {
  it('knows the replies by which a node refuses a command while a slot moves or the cluster is down', () => {
    for (const message of [
      'MOVED 3999 127.0.0.1:7002',
      'ASK 3999 127.0.0.1:7002',
      'TRYAGAIN Multiple keys request during rehashing of slot',
      'CLUSTERDOWN The cluster is down',
      'Too many Cluster redirections. Last error: ReplyError: TRYAGAIN Multiple keys request during rehashing of slot',
      'All keys in the pipeline should belong to the same slots allocation group',
    ]) {
      assert.ok(isClusterRedirect(error(message)), message);
    }
  });

  it('does not take an error after which the command may have run for a refusal', () => {
    for (const message of [
      'Connection is closed.',
      'Too many Cluster redirections. Last error: Error: Connection is closed.',
      'Command timed out',
      'OOM command not allowed when used memory > maxmemory',
      'NOSCRIPT No matching script',
    ]) {
      assert.ok(!isClusterRedirect(error(message)), message);
    }
  });

  it('a moving slot is not an outage (the write breaker ignores it); CLUSTERDOWN is', () => {
    assert.ok(isSlotMoving(error('TRYAGAIN Multiple keys request during rehashing of slot')));
    assert.ok(isSlotMoving(error('ASK 1 127.0.0.1:1')));
    assert.ok(!isSlotMoving(error('CLUSTERDOWN The cluster is down')));
    assert.ok(!isSlotMoving(error('Too many Cluster redirections. Last error: ReplyError: CLUSTERDOWN The cluster is down')));
    assert.ok(!isSlotMoving(error('Command timed out')));
  });

  it('sends a refused write again until it runs', async () => {
    let tries = 0;
    const result = await retryClusterRedirects(async () => {
      if (++tries < 4) throw error('TRYAGAIN Multiple keys request during rehashing of slot');
      return 'ok';
    }, 5000);
    assert.equal(result, 'ok');
    assert.equal(tries, 4);
  });

  it('gives up with the last refusal once the budget is spent, and never repeats any other error', async () => {
    let tries = 0;
    const started = Date.now();
    await assert.rejects(
      retryClusterRedirects(async () => {
        tries++;
        throw error('TRYAGAIN Multiple keys request during rehashing of slot');
      }, 300),
      /TRYAGAIN/,
    );
    assert.ok(tries > 1, `sent ${tries} times`);
    assert.ok(Date.now() - started < 2000);
    tries = 0;
    await assert.rejects(
      retryClusterRedirects(async () => {
        tries++;
        throw error('Command timed out');
      }, 5000),
      /timed out/,
    );
    assert.equal(tries, 1);
  });
});
