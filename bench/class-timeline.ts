// The timeline of one phase of `bench:class-latency`: when each critical request was sent and how long it took,
// and, second by second, what the API, the probe's own process and the machine were doing meanwhile, so that a
// tail can be attributed to a moment (the flood's onset, a stall) and to a cause (the event loop, GC, refusals,
// a connection set-up, the in-flight limit).
import { readFileSync } from 'node:fs';
import { monitorEventLoopDelay } from 'node:perf_hooks';
import { processCpuMicros } from './cpu.js';
import { gauge, scrape } from './scrape.js';

/** One critical request of the probe. */
export interface ProbeSample {
  /** When it was sent, ms after the phase began. */
  readonly at: number;
  /** Send to the end of its answer, ms (NaN when it failed). */
  readonly ms: number;
  /** Send to the answer's headers, ms (NaN when it failed). */
  readonly headersMs: number;
  /** For a request that opened a connection (every probe socket was busy): send to the TCP connect, ms. */
  readonly connectMs: number | null;
  readonly outcome: 'ok' | 'refused' | 'failed';
}

/** What the timeline read during one second of a phase. */
export interface SecondReading {
  /** Seconds after the phase began (the reading covers [second - 1, second)). */
  readonly second: number;
  /** The API's event-loop delay, highest and p99 over the second (prom-client's monitor, reset per scrape), ms. */
  readonly apiLoopMaxMs: number | null;
  readonly apiLoopP99Ms: number | null;
  /** The probe's own process: its highest event-loop delay over the second, ms (a late probe looks like a slow API). */
  readonly probeLoopMaxMs: number;
  /** Low requests refused by the shedder, and low events accepted, during the second. */
  readonly lowShed: number;
  readonly lowAccepted: number;
  /** The controller's shed level, the non-critical in-flight limit, slots held and low requests waiting, at the scrape. */
  readonly level: number | null;
  readonly limit: number | null;
  readonly limitInFlight: number | null;
  readonly lowQueued: number | null;
  /** GC time of the API during the second, ms. */
  readonly apiGcMs: number | null;
  /** The API's CPU during the second, share of one core; the machine's busy share of all its cores. */
  readonly apiCpu: number;
  readonly machineBusy: number;
  /** Machine-wide TCP counters during the second: SYNs retransmitted, connections dropped by a listen queue. */
  readonly synRetrans: number;
  readonly listenDrops: number;
}

/** Machine-wide TcpExt counters (Linux); zeros elsewhere. */
function tcpCounters(): { synRetrans: number; listenDrops: number } {
  try {
    const lines = readFileSync('/proc/net/netstat', 'utf8').split('\n');
    const header = lines.findIndex((l) => l.startsWith('TcpExt:'));
    const names = lines[header]!.split(/\s+/);
    const values = lines[header + 1]!.split(/\s+/).map(Number);
    const value = (name: string) => values[names.indexOf(name)] ?? 0;
    return { synRetrans: value('TCPSynRetrans'), listenDrops: value('ListenDrops') };
  } catch {
    return { synRetrans: 0, listenDrops: 0 };
  }
}

/** The machine's busy and total CPU time (jiffies, every core) from /proc/stat; zeros elsewhere. */
function machineCpu(): { busy: number; total: number } {
  try {
    const fields = readFileSync('/proc/stat', 'utf8').split('\n')[0]!.trim().split(/\s+/).slice(1).map(Number);
    const total = fields.reduce((a, b) => a + b, 0);
    // idle and iowait are the 4th and 5th fields.
    return { busy: total - fields[3]! - fields[4]!, total };
  } catch {
    return { busy: 0, total: 0 };
  }
}

/** The sum of every series of `name` whose labels include `label`="`value`" (or of every series without one). */
function sum(text: string, name: string, label?: readonly [string, string]): number | null {
  let n: number | null = null;
  for (const m of text.matchAll(new RegExp(`^${name}(?:\\{([^}]*)\\})? (\\S+)$`, 'gm'))) {
    if (label && !(m[1] ?? '').includes(`${label[0]}="${label[1]}"`)) continue;
    n = (n ?? 0) + Number(m[2]);
  }
  return n;
}

/** Reads the API and the machine once a second from now until `stop`. */
export function watchSeconds(metricsUrl: string, apiPid: number): { stop(): Promise<SecondReading[]> } {
  const startedAt = performance.now();
  const readings: SecondReading[] = [];
  const probeLoop = monitorEventLoopDelay({ resolution: 10 });
  probeLoop.enable();
  let last = { cpu: processCpuMicros(apiPid) ?? 0, wall: startedAt, machine: machineCpu(), tcp: tcpCounters() };
  let lastCounters: { shed: number; accepted: number; gc: number } | null = null;
  let pending: Promise<void> = Promise.resolve();
  void scrape(metricsUrl).then(
    (text) => (lastCounters = counters(text)),
    () => {},
  );

  function counters(text: string) {
    return {
      shed: sum(text, 'floodgate_shed_requests_total', ['priority', 'low']) ?? 0,
      accepted: sum(text, 'floodgate_events_accepted_total', ['priority', 'low']) ?? 0,
      gc: sum(text, 'nodejs_gc_duration_seconds_sum') ?? 0,
    };
  }

  const timer = setInterval(() => {
    // The synchronous readings at the tick itself, the scrape when it answers.
    const now = performance.now();
    const cpu = processCpuMicros(apiPid) ?? last.cpu;
    const machine = machineCpu();
    const tcp = tcpCounters();
    const probeLoopMaxMs = probeLoop.max / 1e6;
    probeLoop.reset();
    const base = {
      second: Math.round((now - startedAt) / 1000),
      probeLoopMaxMs,
      apiCpu: (cpu - last.cpu) / ((now - last.wall) * 1000),
      machineBusy: machine.total > last.machine.total ? (machine.busy - last.machine.busy) / (machine.total - last.machine.total) : 0,
      synRetrans: tcp.synRetrans - last.tcp.synRetrans,
      listenDrops: tcp.listenDrops - last.tcp.listenDrops,
    };
    last = { cpu, wall: now, machine, tcp };
    pending = scrape(metricsUrl).then(
      (text) => {
        const c = counters(text);
        const before = lastCounters;
        lastCounters = c;
        const ms = (v: number | null) => (v === null ? null : v * 1000);
        readings.push({
          ...base,
          apiLoopMaxMs: ms(gauge(text, 'nodejs_eventloop_lag_max_seconds')),
          apiLoopP99Ms: ms(gauge(text, 'nodejs_eventloop_lag_p99_seconds')),
          lowShed: before ? c.shed - before.shed : 0,
          lowAccepted: before ? c.accepted - before.accepted : 0,
          level: gauge(text, 'floodgate_shed_level'),
          limit: gauge(text, 'floodgate_shed_noncritical_limit'),
          limitInFlight: gauge(text, 'floodgate_shed_noncritical_in_flight'),
          lowQueued: gauge(text, 'floodgate_shed_queued_requests', ['priority', 'low']),
          apiGcMs: before ? (c.gc - before.gc) * 1000 : null,
        });
      },
      () => {},
    );
  }, 1000);

  return {
    async stop() {
      clearInterval(timer);
      await pending;
      probeLoop.disable();
      return readings;
    },
  };
}

const quantile = (sorted: readonly number[], q: number) =>
  sorted.length === 0 ? NaN : sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil(q * sorted.length) - 1))]!;

/** Critical requests sent during each second of the phase: how many, and their p50, p99 and worst latency. */
export function criticalBySecond(
  samples: readonly ProbeSample[],
): { second: number; sent: number; ok: number; p50: number; p99: number; max: number }[] {
  const seconds = new Map<number, number[]>();
  const sent = new Map<number, number>();
  for (const s of samples) {
    const second = Math.floor(s.at / 1000) + 1;
    sent.set(second, (sent.get(second) ?? 0) + 1);
    if (s.outcome === 'ok') seconds.set(second, [...(seconds.get(second) ?? []), s.ms]);
  }
  return [...sent.keys()]
    .sort((a, b) => a - b)
    .map((second) => {
      const sorted = (seconds.get(second) ?? []).sort((a, b) => a - b);
      return {
        second,
        sent: sent.get(second)!,
        ok: sorted.length,
        p50: quantile(sorted, 0.5),
        p99: quantile(sorted, 0.99),
        max: sorted.at(-1) ?? NaN,
      };
    });
}

/** The slow answered requests split by whether they had to open a connection: how the tail is made up. */
export function tailMakeup(samples: readonly ProbeSample[], thresholdMs: number) {
  const ok = samples.filter((s) => s.outcome === 'ok');
  const slow = ok.filter((s) => s.ms >= thresholdMs);
  const fresh = ok.filter((s) => s.connectMs !== null);
  const reused = ok
    .filter((s) => s.connectMs === null)
    .map((s) => s.ms)
    .sort((a, b) => a - b);
  return {
    thresholdMs,
    slow: slow.length,
    slowOnNewConnections: slow.filter((s) => s.connectMs !== null).length,
    /** Of the slow ones on new connections, how many spent most of their time connecting. */
    slowMostlyConnecting: slow.filter((s) => s.connectMs !== null && s.connectMs >= s.ms / 2).length,
    newConnections: fresh.length,
    newConnectionConnectP50: quantile(
      fresh.map((s) => s.connectMs!).sort((a, b) => a - b),
      0.5,
    ),
    newConnectionConnectMax: Math.max(0, ...fresh.map((s) => s.connectMs!)),
    reusedP99: quantile(reused, 0.99),
  };
}

/** One configuration's flooded rounds, as the timeline report reads them. */
export interface TimelineInput {
  readonly config: string;
  readonly rounds: readonly { readonly samples: readonly ProbeSample[]; readonly seconds: readonly SecondReading[] }[];
}

const fmt = (v: number | null | undefined, digits = 0) => (v === null || v === undefined || Number.isNaN(v) ? '-' : v.toFixed(digits));
const median = (values: readonly (number | null)[]) => {
  const v = values.filter((x): x is number => x !== null && !Number.isNaN(x)).sort((a, b) => a - b);
  return v.length === 0 ? null : v[Math.floor(v.length / 2)]!;
};

/**
 * The flooded phases second by second (critical requests pooled over the rounds, the API's readings as their
 * median), the slowest critical requests with what their second looked like, and the tail's make-up.
 */
export function timelineMarkdown(inputs: readonly TimelineInput[], slowMs: number, slowest = 12): string {
  const parts: string[] = [];
  for (const { config, rounds } of inputs) {
    const bySecond = criticalBySecond(rounds.flatMap((r) => r.samples));
    const reading = (second: number) => rounds.map((r) => r.seconds.find((s) => s.second === second)).filter((s) => s !== undefined);
    const rows = bySecond.map(({ second, sent, ok, p50, p99, max }) => {
      const rs = reading(second);
      const m = (f: (s: SecondReading) => number | null, digits = 0) => fmt(median(rs.map(f)), digits);
      const total = (f: (s: SecondReading) => number) => rs.reduce((n, s) => n + f(s), 0);
      return `| ${second} | ${ok}/${sent} | ${fmt(p50, 1)} / ${fmt(p99)} / ${fmt(max)} | ${m((s) => s.apiLoopMaxMs)} | ${m((s) => s.probeLoopMaxMs)} | ${m((s) => s.apiGcMs)} | ${m((s) => s.lowShed)} | ${m((s) => s.lowAccepted)} | ${m((s) => s.level, 2)} | ${m((s) => s.limit)} / ${m((s) => s.limitInFlight)} / ${m((s) => s.lowQueued)} | ${m((s) => s.apiCpu * 100)} % | ${m((s) => s.machineBusy * 100)} % | ${total((s) => s.synRetrans)} / ${total((s) => s.listenDrops)} |`;
    });
    const slow = rounds
      .flatMap((r, round) => r.samples.filter((s) => s.outcome === 'ok').map((s) => ({ ...s, round: round + 1, seconds: r.seconds })))
      .sort((a, b) => b.ms - a.ms)
      .slice(0, slowest)
      .map((s) => {
        const second = Math.floor(s.at / 1000) + 1;
        const r = s.seconds.find((x) => x.second === second);
        return `| ${s.round} | ${(s.at / 1000).toFixed(2)} | ${fmt(s.ms)} | ${fmt(s.headersMs)} | ${s.connectMs === null ? 'reused' : fmt(s.connectMs)} | ${fmt(r?.apiLoopMaxMs)} | ${fmt(r?.probeLoopMaxMs)} | ${fmt(r?.apiGcMs)} | ${fmt(r?.level, 2)} | ${r ? `${r.synRetrans} / ${r.listenDrops}` : '-'} |`;
      });
    const makeup = tailMakeup(
      rounds.flatMap((r) => r.samples),
      slowMs,
    );
    parts.push(`#### ${config}: the flood second by second

| Second | Critical 2xx/sent | Critical p50 / p99 / max ms | API loop delay max ms | Probe loop delay max ms | API GC ms | Low shed | Low accepted | Shed level | Limit / in flight / low queued | API CPU | Machine busy | SYN retransmits / listen drops |
| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |
${rows.join('\n')}

Slowest critical requests (the second's readings from the same round):

| Round | Sent at s | Latency ms | Headers ms | Connect ms | API loop delay max ms | Probe loop delay max ms | API GC ms | Shed level | SYN retransmits / listen drops |
| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |
${slow.join('\n')}

Tail: ${makeup.slow} critical answers took ≥ ${slowMs} ms, ${makeup.slowOnNewConnections} of them on a new connection (${makeup.slowMostlyConnecting} spent half their time or more connecting); ${makeup.newConnections} requests opened a connection (connect p50 ${fmt(makeup.newConnectionConnectP50, 1)} ms, max ${fmt(makeup.newConnectionConnectMax)} ms); p99 of the requests on reused connections ${fmt(makeup.reusedP99, 1)} ms.
`);
  }
  return parts.join('\n');
}
