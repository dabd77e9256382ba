import type { StatsToken } from '../lib/stats-query.js';
import type { StatsBaseView } from '../lib/stats-render.js';
import type { StatsAnswer } from './stats-answer.js';

/** A kept base part and the token of the snapshot it was read in (lib/stats-query.ts). */
export interface KeptBase {
  readonly token: StatsToken;
  readonly view: StatsBaseView;
  /** The latest answer built on it, and the live text it was built from (StatsRead.liveText). */
  last?: { readonly liveText: string; readonly answer: StatsAnswer };
}

/**
 * The base parts an API process keeps: per tenant, question and range (the key), the rolled-up past of the
 * latest read. A read passes the kept token; the database returns a new base whenever it no longer holds (the
 * watermark moved, a late event marked a minute stale, a roll-up changed the coarse rows), so what is kept is
 * never used past its validity. Least recently used first out past `max` keys.
 */
export interface BaseCache {
  get(key: string): KeptBase | undefined;
  set(key: string, kept: KeptBase): void;
  readonly size: number;
}

/** See BaseCache. */
export function createBaseCache(max: number): BaseCache {
  const kept = new Map<string, KeptBase>();
  return {
    get(key) {
      const entry = kept.get(key);
      if (entry) {
        kept.delete(key);
        kept.set(key, entry);
      }
      return entry;
    },
    set(key, entry) {
      kept.delete(key);
      kept.set(key, entry);
      for (const oldest of kept.keys()) {
        if (kept.size <= max) break;
        kept.delete(oldest);
      }
    },
    get size() {
      return kept.size;
    },
  };
}
