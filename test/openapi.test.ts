import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { Validator } from '@seriousme/openapi-schema-validator';
import type Router from '@koa/router';
import { Ajv2020 } from 'ajv/dist/2020.js';
import { Registry } from 'prom-client';
import { RETRY_AFTER_CODES, openApiDocument } from '../app/openapi.js';
import { createQuotaGuard } from '../app/limits/quotas.js';
import { createSharedBuckets } from '../app/limits/shared-bucket.js';
import { createTenantPolicies } from '../app/limits/tenant-policies.js';
import { createApp } from '../app/server.js';
import { ERROR_CATALOGUE, type ErrorCode } from '../lib/errors.js';
import { createLogger } from '../lib/logger.js';
import { createTestEnv, json, startTestApi, type TestApi, type TestEnv } from './support.js';

interface Response {
  description: string;
  headers?: Record<string, { $ref?: string }>;
  content?: Record<
    string,
    {
      schema: { allOf?: [unknown, { properties: { error: { enum: string[] } } }] };
      examples?: Record<string, { value: { error: string } }>;
    }
  >;
}
interface Operation {
  operationId: string;
  responses: Record<string, Response>;
}
type Document = { paths: Record<string, Record<string, Operation>>; components: { responses: Record<string, Response> } } & Record<
  string,
  unknown
>;

const doc = openApiDocument({ maxBatchEvents: 1000 }) as Document;
const operations = Object.entries(doc.paths).flatMap(([path, item]) => Object.entries(item).map(([method, op]) => ({ path, method, op })));

/** The codes an error response enumerates. */
const codesOf = (response: Response): string[] => response.content?.['application/json']?.schema.allOf?.[1].properties.error.enum ?? [];

describe('OpenAPI document', () => {
  it('is a valid OpenAPI 3.1 document whose $refs all resolve', async () => {
    const validator = new Validator();
    const result = await validator.validate(structuredClone(doc));
    assert.deepEqual(result.errors, undefined);
    assert.equal(result.valid, true);
    assert.equal(validator.version, '3.1');
    assert.doesNotThrow(() => validator.resolveRefs());
  });

  it('gives every operation a unique operationId', () => {
    const ids = operations.map((o) => o.op.operationId);
    assert.ok(
      ids.every((id) => /^[a-z][A-Za-z]+$/.test(id)),
      ids.join(', '),
    );
    assert.equal(new Set(ids).size, ids.length);
  });

  it('lists every error code of a status in its response (no code hides another), with an example each', () => {
    const ingest = doc.paths['/v1/events']!.post!.responses;
    assert.deepEqual(codesOf(ingest['400']!), [
      'malformed_json',
      'invalid_body',
      'invalid_header',
      'idempotency_key_on_batch',
      'ambiguous_credentials',
    ]);
    assert.deepEqual(codesOf(ingest['429']!), [
      'rate_limited',
      'too_many_auth_failures',
      'quota_exceeded',
      'too_many_in_flight',
      'too_many_connections',
    ]);
    assert.deepEqual(codesOf(ingest['413']!), ['payload_too_large', 'batch_too_large']);
    assert.deepEqual(codesOf(ingest['415']!), ['unsupported_media_type', 'unsupported_encoding']);
    assert.deepEqual(codesOf(ingest['422']!), ['invalid_event', 'empty_batch']);
    assert.deepEqual(codesOf(ingest['503']!), ['overloaded', 'dependency_unavailable']);
    for (const { path, method, op } of operations) {
      for (const [status, response] of Object.entries(op.responses)) {
        if (Number(status) < 400) continue;
        const codes = codesOf(response);
        assert.ok(codes.length > 0, `${method} ${path} ${status}`);
        for (const code of codes) {
          assert.equal(ERROR_CATALOGUE[code as ErrorCode].status, Number(status), `${method} ${path}: ${code} under ${status}`);
          assert.ok(response.description.includes(`\`${code}\``), `${method} ${path} ${status} describes ${code}`);
        }
        const examples = response.content!['application/json']!.examples!;
        assert.deepEqual(
          Object.values(examples).map((e) => e.value.error),
          codes,
          `${method} ${path} ${status}: one example per code`,
        );
      }
    }
  });

  it('documents every code of the catalogue somewhere', () => {
    const documented = new Set([
      ...operations.flatMap((o) => Object.values(o.op.responses).flatMap(codesOf)),
      ...Object.values(doc.components.responses).flatMap(codesOf),
    ]);
    assert.deepEqual(
      Object.keys(ERROR_CATALOGUE).filter((code) => !documented.has(code)),
      [],
    );
  });

  it('documents X-Request-Id on every response, and Retry-After where a code sends it', () => {
    for (const { path, method, op } of operations) {
      for (const [status, response] of Object.entries(op.responses)) {
        assert.equal(response.headers?.['X-Request-Id']?.$ref, '#/components/headers/X-Request-Id', `${method} ${path} ${status}`);
        const retries = codesOf(response).some((code) => RETRY_AFTER_CODES.has(code as ErrorCode));
        assert.equal(response.headers?.['Retry-After'] !== undefined, retries, `${method} ${path} ${status}: Retry-After`);
      }
    }
    assert.ok(doc.paths['/v1/events']!.post!.responses['429']!.headers!['Retry-After']);
  });

  it('example error bodies match the Error schema', () => {
    const ajv = new Ajv2020({ strict: false });
    const components = doc.components as unknown as { schemas: Record<string, object> };
    const validate = ajv.compile({ ...components.schemas.Error!, $id: 'error' });
    for (const { op } of operations) {
      for (const response of Object.values(op.responses)) {
        for (const example of Object.values(response.content?.['application/json']?.examples ?? {}))
          assert.ok(validate(example.value), JSON.stringify(validate.errors));
      }
    }
  });
});

describe('OpenAPI document against the running API', () => {
  let env: TestEnv;
  let api: TestApi;
  before(async () => {
    env = await createTestEnv();
    api = await startTestApi(env);
  });
  after(async () => {
    await api?.close();
    await env?.cleanup();
  });

  it('documents every route the router serves, and no route it does not', () => {
    const logger = createLogger('silent', 'test');
    const buckets = createSharedBuckets({
      redis: env.redis,
      keyPrefix: `${env.config.streamKey}:limits`,
      processes: 1,
      registry: new Registry(),
      logger,
      shared: false,
    });
    const quotas = createQuotaGuard(buckets, createTenantPolicies({ pool: env.pool, refreshMs: 60_000, logger }));
    const app = createApp({ config: env.config, pool: env.pool, redis: env.redis, logger, latestMigration: 0, buckets, quotas });
    const router = app.middleware.map((m) => (m as { router?: Router }).router).find((r) => r !== undefined);
    assert.ok(router, 'the app mounts a router');
    const served = router.stack.flatMap((layer) =>
      layer.methods.filter((m) => m !== 'HEAD').map((m) => `${m.toLowerCase()} ${String(layer.path).replace(/:(\w+)/g, '{$1}')}`),
    );
    // Routes served only under some configuration (LIVE_ENABLED) say so; this app runs with the defaults.
    const conditional = new Set(
      operations.filter((o) => (o.op as { 'x-served-when'?: string })['x-served-when']).map((o) => `${o.method} ${o.path}`),
    );
    const documented = operations.map((o) => `${o.method} ${o.path}`).filter((r) => served.includes(r) || !conditional.has(r));
    assert.deepEqual([...served].sort(), [...documented].sort());
  });

  it('answers errors with codes documented under their status, and the documented headers', async () => {
    const cases: { path: string; method: string; res: () => Promise<globalThis.Response> }[] = [
      { path: '/v1/events', method: 'post', res: () => api.post('{"type":') },
      { path: '/v1/events', method: 'post', res: () => api.post({ type: 'a b' }) },
      { path: '/v1/events', method: 'post', res: () => api.post({ events: [] }) },
      { path: '/v1/events', method: 'post', res: () => api.post({ type: 'x' }, { authorization: 'Bearer nope' }) },
      { path: '/v1/events', method: 'post', res: () => api.post({ type: 'x' }, { 'content-type': 'text/plain' }) },
      {
        path: '/v1/admin/load',
        method: 'get',
        res: () => fetch(`${api.url}/v1/admin/load`, { headers: { authorization: `Bearer ${api.key}` } }),
      },
    ];
    for (const c of cases) {
      const res = await c.res();
      const body = await json(res);
      const response = doc.paths[c.path]![c.method]!.responses[String(res.status)];
      assert.ok(response, `${c.method} ${c.path} answered ${res.status}, which is not documented`);
      assert.ok(
        codesOf(response).includes(body.error),
        `${c.method} ${c.path} ${res.status} ${body.error} is not among ${codesOf(response).join(', ')}`,
      );
      assert.equal(res.headers.get('x-request-id'), body.request_id);
    }
    const missing = await fetch(`${api.url}/v1/nope`);
    assert.equal(missing.status, 404);
    assert.ok(codesOf(doc.components.responses.NotFound!).includes((await json(missing)).error));
  });
});
