import { randomFillSync } from 'node:crypto';

const HEX: string[] = Array.from({ length: 256 }, (_, i) => i.toString(16).padStart(2, '0'));
const POOL_SIZE = 16 * 1024;
const pool = Buffer.allocUnsafe(POOL_SIZE);
let poolOffset = POOL_SIZE;

let lastMs = 0;
let sequence = 0; // 12-bit counter in rand_a keeps ids monotonic within one millisecond

function randomBytes(n: number): Buffer {
  if (poolOffset + n > POOL_SIZE) {
    randomFillSync(pool);
    poolOffset = 0;
  }
  const slice = pool.subarray(poolOffset, poolOffset + n);
  poolOffset += n;
  return slice;
}

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
    sequence = randomBytes(1)[0]! & 0x7f; // start low so the counter rarely overflows
  }
  const r = randomBytes(8);
  const b = new Uint8Array(16);
  b[0] = (ms / 2 ** 40) & 0xff;
  b[1] = (ms / 2 ** 32) & 0xff;
  b[2] = (ms >>> 24) & 0xff;
  b[3] = (ms >>> 16) & 0xff;
  b[4] = (ms >>> 8) & 0xff;
  b[5] = ms & 0xff;
  b[6] = 0x70 | ((sequence >>> 8) & 0x0f);
  b[7] = sequence & 0xff;
  b[8] = 0x80 | (r[0]! & 0x3f);
  for (let i = 9; i < 16; i++) b[i] = r[i - 8]!;
  return (
    HEX[b[0]]! +
    HEX[b[1]]! +
    HEX[b[2]]! +
    HEX[b[3]]! +
    '-' +
    HEX[b[4]]! +
    HEX[b[5]]! +
    '-' +
    HEX[b[6]]! +
    HEX[b[7]]! +
    '-' +
    HEX[b[8]]! +
    HEX[b[9]!]! +
    '-' +
    HEX[b[10]!]! +
    HEX[b[11]!]! +
    HEX[b[12]!]! +
    HEX[b[13]!]! +
    HEX[b[14]!]! +
    HEX[b[15]!]!
  );
}
