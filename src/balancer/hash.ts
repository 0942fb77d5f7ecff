// Fast non-cryptographic hashing for the hashing balancers: MurmurHash3 (x86, 32-bit) over strings.

/**
 * MurmurHash3 x86 32-bit of a string's UTF-16LE encoding, as an unsigned 32-bit integer.
 * Reads the string's code units directly (two per 32-bit block), so hashing allocates nothing;
 * the result equals {@link murmur3Bytes} of `Buffer.from(key, 'utf16le')`.
 * @param key the string to hash.
 * @param seed a 32-bit seed; defaults to 0. Different seeds give independent hash functions.
 */
export function hashString(key: string, seed = 0): number {
  const len = key.length;
  let h = seed >>> 0;
  let i = 0;
  for (const end = len - 1; i < end; i += 2) {
    let k = (key.charCodeAt(i) | (key.charCodeAt(i + 1) << 16)) >>> 0;
    k = Math.imul(k, 0xcc9e2d51);
    k = (k << 15) | (k >>> 17);
    k = Math.imul(k, 0x1b873593);
    h ^= k;
    h = (h << 13) | (h >>> 19);
    h = (Math.imul(h, 5) + 0xe6546b64) | 0;
  }
  if (i < len) {
    let k = key.charCodeAt(i);
    k = Math.imul(k, 0xcc9e2d51);
    k = (k << 15) | (k >>> 17);
    k = Math.imul(k, 0x1b873593);
    h ^= k;
  }
  h ^= len * 2;
  return fmix32(h);
}

/**
 * MurmurHash3 x86 32-bit of raw bytes, as an unsigned 32-bit integer (the reference algorithm;
 * used to check {@link hashString} and for byte keys).
 * @param seed a 32-bit seed; defaults to 0.
 */
export function murmur3Bytes(bytes: Uint8Array, seed = 0): number {
  const len = bytes.length;
  const blocks = len & ~3;
  let h = seed >>> 0;
  for (let i = 0; i < blocks; i += 4) {
    let k = bytes[i]! | (bytes[i + 1]! << 8) | (bytes[i + 2]! << 16) | (bytes[i + 3]! << 24);
    k = Math.imul(k, 0xcc9e2d51);
    k = (k << 15) | (k >>> 17);
    k = Math.imul(k, 0x1b873593);
    h ^= k;
    h = (h << 13) | (h >>> 19);
    h = (Math.imul(h, 5) + 0xe6546b64) | 0;
  }
  const rest = len & 3;
  if (rest > 0) {
    let k = 0;
    if (rest === 3) k ^= bytes[blocks + 2]! << 16;
    if (rest >= 2) k ^= bytes[blocks + 1]! << 8;
    k ^= bytes[blocks]!;
    k = Math.imul(k, 0xcc9e2d51);
    k = (k << 15) | (k >>> 17);
    k = Math.imul(k, 0x1b873593);
    h ^= k;
  }
  h ^= len;
  return fmix32(h);
}

/** MurmurHash3's finaliser: mixes all bits of a 32-bit value; returns it unsigned. */
export function fmix32(h: number): number {
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  h ^= h >>> 16;
  return h >>> 0;
}
