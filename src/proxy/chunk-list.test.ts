// ChunkList: small chunks copied together in order, large ones kept as they came.
import { describe, expect, it } from 'vitest';
import { ChunkList } from './chunk-list.ts';

describe('ChunkList', () => {
  it('a body of 100,000 one-byte chunks is kept as about a hundred pieces, its bytes in order', () => {
    // The chunks are views into one shared buffer, as a parser's slices of a socket read are.
    const source = Buffer.alloc(100_000);
    for (let i = 0; i < source.length; i++) source[i] = i % 251;
    const list = new ChunkList();
    for (let i = 0; i < source.length; i++) list.push(source.subarray(i, i + 1));
    const pieces = list.buffers();
    expect(pieces.length).toBeLessThanOrEqual(100);
    // Copies: none keeps the source's memory alive.
    for (const p of pieces) expect(p.buffer).not.toBe(source.buffer);
    expect(list.size).toBe(source.length);
    expect(list.toBuffer().equals(source)).toBe(true);
  });

  it('large chunks are kept as they came, small ones between them in order', () => {
    const big = Buffer.alloc(4096, 'b');
    const list = new ChunkList();
    list.push(Buffer.from('a'));
    list.push(big);
    list.push(Buffer.from('c'));
    list.push(Buffer.from('d'));
    const pieces = list.buffers();
    expect(pieces[1]).toBe(big);
    expect(list.toBuffer().toString()).toBe(`a${'b'.repeat(4096)}cd`);
  });

  it('one chunk is returned as itself', () => {
    const only = Buffer.from('only');
    const list = new ChunkList();
    list.push(only);
    expect(list.toBuffer()).toBe(only);
  });
});
