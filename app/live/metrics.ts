import { Counter, Gauge, type Registry } from 'prom-client';
import { FastCounter } from '../../lib/fast-metrics.js';

/** The two ways to watch `GET /v1/events/live`. */
export const LIVE_PROTOCOLS = ['sse', 'ws'] as const;
export type LiveProtocol = (typeof LIVE_PROTOCOLS)[number];

/** Why a live connection ended. */
export const CLOSE_REASONS = ['client_closed', 'slow_consumer', 'server_shutdown', 'heartbeat_timeout', 'error'] as const;
export type CloseReason = (typeof CLOSE_REASONS)[number];

/** What the live view measures in one API process. */
export interface LiveMetrics {
  readonly connections: Gauge<'protocol'>;
  /** Events written to clients (replayed ones included); one increment per delivered batch, hence fast. */
  readonly eventsSent: FastCounter<'protocol'>;
  readonly closes: Counter<'protocol' | 'reason'>;
  readonly resumes: Counter<'outcome'>;
}

/** Creates the live view's metrics in `registry`, every series present from the start. */
export function createLiveMetrics(registry: Registry): LiveMetrics {
  const registers = [registry];
  const metrics: LiveMetrics = {
    connections: new Gauge({
      name: 'floodgate_live_connections',
      help: 'Open live connections by protocol (sse, ws).',
      labelNames: ['protocol'],
      registers,
    }),
    eventsSent: new FastCounter({
      name: 'floodgate_live_events_sent_total',
      help: 'Durable events written to live connections, by protocol.',
      labelNames: ['protocol'],
      registers,
    }),
    closes: new Counter({
      name: 'floodgate_live_closes_total',
      help: 'Live connections ended, by protocol and reason (client_closed, slow_consumer, server_shutdown, heartbeat_timeout, error).',
      labelNames: ['protocol', 'reason'],
      registers,
    }),
    resumes: new Counter({
      name: 'floodgate_live_resumes_total',
      help: 'Connections that asked to resume after a Last-Event-ID, by outcome (resumed; gap: the id was older than the resume log).',
      labelNames: ['outcome'],
      registers,
    }),
  };
  for (const protocol of LIVE_PROTOCOLS) {
    metrics.connections.set({ protocol }, 0);
    metrics.eventsSent.inc({ protocol }, 0);
    for (const reason of CLOSE_REASONS) metrics.closes.inc({ protocol, reason }, 0);
  }
  for (const outcome of ['resumed', 'gap']) metrics.resumes.inc({ outcome }, 0);
  return metrics;
}
