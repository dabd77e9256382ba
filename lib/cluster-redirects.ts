import { REDIS_REPLY } from './errors.js';

/** ioredis's error once it has followed `maxRedirections` redirects of one command without it running. */
const GAVE_UP = 'Too many Cluster redirections';
/** ioredis's refusal to send an auto-pipelined batch whose slots the refreshed slot map puts on different nodes. */
const SPLIT_BATCH = 'All keys in the pipeline should belong to the same slots allocation group';

/**
 * Whether a Redis error is a cluster node's refusal to run the command here and now: MOVED, ASK, TRYAGAIN or
 * CLUSTERDOWN (or ioredis giving up after following such replies, or refusing to send a batch the slot map split).
 * The command did not run, so sending it again cannot write twice.
 */
export function isClusterRedirect(err: unknown): boolean {
  const message = err instanceof Error ? err.message : '';
  if (message.startsWith(SPLIT_BATCH)) return true;
  // ioredis's message ends in the last reply it followed, e.g. `… Last error: ReplyError: TRYAGAIN …`; after a
  // closed connection instead, the command may have run.
  const reply = message.startsWith(GAVE_UP) ? (/Last error: (?:ReplyError: )?(.*)$/s.exec(message)?.[1] ?? '') : message;
  return [REDIS_REPLY.moved, REDIS_REPLY.ask, REDIS_REPLY.tryAgain, REDIS_REPLY.clusterDown].some((prefix) => reply.startsWith(prefix));
}

/**
 * Whether a cluster refusal is about one slot being moved (MOVED, ASK, TRYAGAIN, not CLUSTERDOWN): Redis answered,
 * it is not down, so the write breaker does not count it; other shards' writes go on while one slot moves.
 */
export function isSlotMoving(err: unknown): boolean {
  return isClusterRedirect(err) && !(err instanceof Error && err.message.includes(REDIS_REPLY.clusterDown));
}

/**
 * Runs a Redis write, sending it again while a cluster node refuses it without running it (`isClusterRedirect`),
 * with a short growing pause, until `budgetMs` from the first try has passed; then the last refusal is thrown.
 * A single Redis never answers these, so there it is one try.
 */
export async function retryClusterRedirects<T>(write: () => Promise<T>, budgetMs: number): Promise<T> {
  const deadline = Date.now() + budgetMs;
  for (let pause = 10; ; pause = Math.min(pause * 2, 200)) {
    try {
      return await write();
    } catch (err) {
      if (!isClusterRedirect(err) || Date.now() + pause > deadline) throw err;
      await new Promise((r) => setTimeout(r, pause));
    }
  }
}
