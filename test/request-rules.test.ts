import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { requestIdFrom } from '../app/middleware/request-id.js';
import { parsePriority } from '../app/priority.js';

// The early refusal (before Koa) and the Koa middleware both apply these rules; a request must be read the
// same way on either path.
describe('request header rules', () => {
  it('X-Priority names a class whatever its case and surrounding blanks, and nothing else', () => {
    assert.equal(parsePriority('critical'), 'critical');
    assert.equal(parsePriority('  LOW '), 'low');
    assert.equal(parsePriority('Normal'), 'normal');
    for (const other of ['', 'urgent', 'low, low', 'lo w']) assert.equal(parsePriority(other), undefined, other);
  });

  it('X-Request-Id is echoed when well formed, replaced by a fresh UUID otherwise', () => {
    assert.equal(requestIdFrom('req-1.2:3_A'), 'req-1.2:3_A');
    const uuid = /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/;
    for (const bad of [undefined, '', 'a b', '"quoted"', 'x'.repeat(129), ['a', 'b']]) assert.match(requestIdFrom(bad), uuid, String(bad));
  });
});
