// @floodgate/client: a Node 20+ client for Floodgate's ingest API. See README.md.
export { createClient, type ClientStats, type CloseResult, type FloodgateClient } from './client.js';
export { ERROR_CODES, FloodgateError, type ErrorCode, type FailedEvent } from './errors.js';
export {
  DEFAULTS,
  PRIORITIES,
  type ClientOptions,
  type DeliveredEvent,
  type Priority,
  type RequestReport,
  type ThrottleOptions,
  type Timers,
  type TrackEvent,
} from './options.js';
export { classifyStatus, parseRetryAfter, retryDelayMs, type BackoffPolicy } from './retry.js';
export { batchBody } from './transport.js';
