// What each redis-server spent per command, from its own accounting (INFO commandstats: calls and µs spent
// executing, networking and parsing left out), reset at the start of a window and read at its end.
import { Redis } from 'ioredis';

/** Calls and µs of execution per command name (lower case), summed over nodes. */
export type CommandStats = Map<string, { calls: number; usec: number }>;

/** Direct connections to a few redis-server nodes (cluster nodes answer INFO and CONFIG for themselves). */
export interface NodeStats {
  reset(): Promise<void>;
  read(): Promise<CommandStats>;
  close(): void;
}

/** Parses the `cmdstat_<name>:calls=…,usec=…` lines of INFO commandstats into `into`. */
export function addCommandStats(info: string, into: CommandStats): CommandStats {
  for (const m of info.matchAll(/^cmdstat_([^:]+):calls=(\d+),usec=(\d+)/gm)) {
    const seen = into.get(m[1]!) ?? { calls: 0, usec: 0 };
    seen.calls += Number(m[2]);
    seen.usec += Number(m[3]);
    into.set(m[1]!, seen);
  }
  return into;
}

/** Stats of the nodes on `ports` (127.0.0.1). */
export function nodeStats(ports: readonly number[]): NodeStats {
  const clients = ports.map((port) => {
    const client = new Redis({ host: '127.0.0.1', port, maxRetriesPerRequest: 1 });
    client.on('error', () => {});
    return client;
  });
  return {
    async reset() {
      await Promise.all(clients.map((c) => c.config('RESETSTAT')));
    },
    async read() {
      const stats: CommandStats = new Map();
      for (const info of await Promise.all(clients.map((c) => c.info('commandstats')))) addCommandStats(info, stats);
      return stats;
    },
    close() {
      for (const c of clients) c.disconnect();
    },
  };
}
