import { randomFillSync } from 'node:crypto';

const HEX: string[] = Array.from({ length: 256 }, (_, i) => i.toString(16).padStart(2, '0'));
const POOL_SIZE = 16 * 1024;
const pool = Buffer.allocUnsafe(POOL_SIZE);
let poolOffset = POOL_SIZE;

let lastMs = 0;
let sequence = 0; // 12-bit counter in rand_a keeps ids monotonic within one millisecond

// The id's first 13 characters (the millisecond and a dash) change once per millisecond: kept, not rebuilt.
let prefixMs = -1;
let prefix = '';

/** A UUIDv7 (RFC 9562): 48-bit Unix milliseconds, a per-process monotonic counter, 62 random bits. */
export function uuidv7(now: number = Date.now()): string {
  let ms = now;
  if (ms <= lastMs) {
    ms = lastMs;
    sequence++;
    if (sequence > 0xfff) {
      // Counter exhausted within one millisecond: borrow the next millisecond rather than repeat.
      ms = ++lastMs;
      sequence = 0;
    }
  } else {
    lastMs = ms;
    if (poolOffset >= POOL_SIZE) refill();
    sequence = pool[poolOffset++]! & 0x7f; // start low so the counter rarely overflows
  }
  if (ms !== prefixMs) {
    prefixMs = ms;
    prefix =
      HEX[(ms / 2 ** 40) & 0xff]! +
      HEX[(ms / 2 ** 32) & 0xff]! +
      HEX[(ms >>> 24) & 0xff]! +
      HEX[(ms >>> 16) & 0xff]! +
      '-' +
      HEX[(ms >>> 8) & 0xff]! +
      HEX[ms & 0xff]! +
      '-';
  }
  if (poolOffset + 8 > POOL_SIZE) refill();
  const r = poolOffset;
  poolOffset += 8;
  return (
    prefix +
    HEX[0x70 | ((sequence >>> 8) & 0x0f)]! +
    HEX[sequence & 0xff]! +
    '-' +
    HEX[0x80 | (pool[r]! & 0x3f)]! +
    HEX[pool[r + 1]!]! +
    '-' +
    HEX[pool[r + 2]!]! +
    HEX[pool[r + 3]!]! +
    HEX[pool[r + 4]!]! +
    HEX[pool[r + 5]!]! +
    HEX[pool[r + 6]!]! +
    HEX[pool[r + 7]!]!
  );
}

function refill(): void {
  randomFillSync(pool);
  poolOffset = 0;
}
