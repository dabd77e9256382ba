import { pino, type Logger } from 'pino';

export type { Logger };

/** A JSON logger to stdout; `role` tags every line with the process's part (api, worker, cli). */
export function createLogger(level: string, role: string): Logger {
  return pino({ level, base: { role, pid: process.pid } });
}
