/** The "Floodgate / Live view" dashboard (grafana/dashboards/live-view.json): GET /v1/events/live and its publishing. */
import { q, steps, type DashboardSpec } from '../builder.js';

export const dashboard: DashboardSpec = {
  file: 'live-view.json',
  uid: 'floodgate-live-view',
  title: 'Floodgate / Live view',
  description: 'Live connections (SSE and WebSocket), what they receive and why they end; what the worker publishes for them.',
  rows: [
    {
      title: 'Connections (API)',
      panels: [
        {
          title: 'Live connections by protocol',
          width: 8,
          unit: 'short',
          min: 0,
          stack: true,
          queries: [q('sum by (protocol) (floodgate_live_connections)', '{{protocol}}')],
          description:
            'Open SSE and WebSocket connections over all API processes. Each process holds at most LIVE_MAX_CONNECTIONS; past it new ones get 503 overloaded.',
        },
        {
          title: 'Events sent per second',
          width: 8,
          unit: 'ops',
          min: 0,
          stack: true,
          queries: [q('protocol:floodgate_live_events_sent:rate1m', '{{protocol}}')],
          description:
            'Events written to live connections (replays included): about the durable events per second of the watched tenants times their connections, less what type filters keep out.',
        },
        {
          title: 'Subscribed tenants',
          width: 8,
          unit: 'short',
          min: 0,
          queries: [q('sum(floodgate_live_subscribed_tenants)', 'tenant subscriptions (all API processes)')],
          description:
            'Tenant channels the API processes are subscribed to: each process holds one Redis subscription for all its connections, subscribed to the tenants they watch.',
        },
        {
          title: 'Bytes held for live clients',
          width: 12,
          unit: 'bytes',
          min: 0,
          queries: [q('sum(floodgate_live_buffered_bytes)', 'held (all API processes)')],
          description:
            'What the API processes hold for their live clients: written and unread, or held while a connection replays. Bounded by LIVE_MAX_BUFFER_BYTES (and one batch) per connection: ' +
            'a client that lags further is closed as a slow consumer.',
        },
        {
          title: 'Connections ended per second, by reason',
          width: 12,
          unit: 'ops',
          min: 0,
          queries: [q('sum by (reason) (protocol_reason:floodgate_live_closes:rate5m)', '{{reason}}')],
          description:
            'client_closed is normal. slow_consumer: clients that let more than LIVE_MAX_BUFFER_BYTES wait (they reconnect and resume); heartbeat_timeout: dead WebSocket peers; ' +
            'server_shutdown: deploys; error: the resume log could not be read.',
        },
        {
          title: 'Commit to send, per batch',
          width: 12,
          unit: 's',
          min: 0,
          thresholds: steps(0.25),
          queries: [
            q('job:floodgate_live_commit_to_send_seconds:p50_1m', 'p50'),
            q('job:floodgate_live_commit_to_send_seconds:p99_1m', 'p99'),
          ],
          description:
            "From the worker's commit of a batch to its events written to the API's live connections (the publish, Redis pub/sub and the fan-out), per batch received. " +
            "Spans the worker's and the API's clocks: across hosts their skew is included. No data while no watched tenant sends.",
        },
        {
          title: 'Resumes per second, by outcome',
          width: 12,
          unit: 'ops',
          min: 0,
          queries: [q('outcome:floodgate_live_resumes:rate5m', '{{outcome}}')],
          description:
            'Reconnections with a Last-Event-ID: resumed without loss, or gap when the id was older than the resume log (LIVE_RESUME_WINDOW_MS, or a busy tenant pushed it out).',
        },
      ],
    },
    {
      title: 'Publishing (worker)',
      panels: [
        {
          title: 'Published events per second',
          width: 8,
          unit: 'ops',
          min: 0,
          queries: [
            q('floodgate:live_published_events:rate1m', 'published'),
            q('floodgate:live_batches_received:rate1m', 'batches received by the API'),
          ],
          description:
            'Durable events the workers published for tenants with live listeners (none are published for the others), and the batches the API processes received.',
        },
        {
          title: 'Published bytes per second',
          width: 8,
          unit: 'Bps',
          min: 0,
          queries: [q('floodgate:live_published_bytes:rate1m', 'event text sent to Redis')],
          description:
            'What publishing adds to Redis traffic: each byte is stored once in the resume log and sent once to every subscribed API process.',
        },
        {
          title: 'Dropped events per second, by reason',
          width: 8,
          unit: 'ops',
          min: 0,
          thresholds: steps(1),
          queries: [q('reason:floodgate_live_publish_dropped_events:rate5m', '{{reason}}')],
          description:
            'Stored events of watched tenants that were not shown live: backlog (Redis too slow for the publisher), redis_error, db_error. Zero when healthy; the events are stored all the same.',
        },
        {
          title: 'Publish time per batch, p99',
          width: 24,
          unit: 's',
          min: 0,
          queries: [q('listened:floodgate_live_publish_duration_seconds:p99_1m', 'listened: {{listened}}')],
          description:
            'Time to publish one committed batch, listener check included. listened=no is the one MGET every batch costs; listened=yes adds building the events and the publish script.',
        },
      ],
    },
  ],
};
