import { describe, expect, it } from 'vitest';
import { fmix32, hashString, murmur3Bytes } from './hash.ts';

const ascii = (s: string) => new Uint8Array(Buffer.from(s, 'latin1'));

describe('murmur3Bytes', () => {
  it('matches the published MurmurHash3 x86_32 test vectors', () => {
    expect(murmur3Bytes(new Uint8Array(0), 0)).toBe(0);
    expect(murmur3Bytes(new Uint8Array(0), 1)).toBe(0x514e28b7);
    expect(murmur3Bytes(new Uint8Array(0), 0xffffffff)).toBe(0x81f16f39);
    expect(murmur3Bytes(new Uint8Array([0, 0, 0, 0]), 0)).toBe(0x2362f9de);
    expect(murmur3Bytes(new Uint8Array([0x21, 0x43, 0x65, 0x87]), 0)).toBe(0xf55b516b);
    expect(murmur3Bytes(new Uint8Array([0x21, 0x43, 0x65]), 0)).toBe(0x7e4a8634);
    expect(murmur3Bytes(new Uint8Array([0x21, 0x43]), 0)).toBe(0xa0f7b07a);
    expect(murmur3Bytes(new Uint8Array([0x21]), 0)).toBe(0x72661cf4);
    expect(murmur3Bytes(ascii('Hello, world!'), 1234)).toBe(0xfaf6cdb3);
    expect(murmur3Bytes(ascii('The quick brown fox jumps over the lazy dog'), 0x9747b28c)).toBe(0x2fa826cd);
  });
});

describe('hashString', () => {
  it('equals murmur3 of the UTF-16LE bytes, for even and odd lengths and non-ASCII text', () => {
    for (const s of ['', 'a', 'ab', 'abc', 'user-42', '10.0.0.7:8080_17', 'héllo wörld ✓', '😀x']) {
      for (const seed of [0, 1, 0xdeadbeef]) {
        expect(hashString(s, seed)).toBe(murmur3Bytes(new Uint8Array(Buffer.from(s, 'utf16le')), seed));
      }
    }
  });

  it('returns unsigned 32-bit integers that spread similar keys', () => {
    const buckets = new Array<number>(16).fill(0);
    for (let i = 0; i < 16_000; i++) {
      const h = hashString(`key-${i}`);
      expect(Number.isInteger(h) && h >= 0 && h <= 0xffffffff).toBe(true);
      buckets[h >>> 28]! += 1;
    }
    for (const b of buckets) expect(Math.abs(b - 1000)).toBeLessThan(150);
  });
});

describe('fmix32', () => {
  it('maps 0 to 0 and is unsigned', () => {
    expect(fmix32(0)).toBe(0);
    expect(fmix32(-1)).toBeGreaterThan(0);
  });
});
