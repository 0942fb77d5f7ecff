import { describe, expect, it } from 'vitest';
import { closeFrame, FrameBoundaries } from './ws-frames.ts';

/** A frame with `payload` bytes, masked or not, with the length encoding its size needs. */
function frame(payload: number, masked: boolean): Buffer {
  const ext = payload < 126 ? 0 : payload < 65536 ? 2 : 8;
  const head = Buffer.alloc(2 + ext + (masked ? 4 : 0));
  head[0] = 0x82;
  const len7 = ext === 0 ? payload : ext === 2 ? 126 : 127;
  head[1] = (masked ? 0x80 : 0) | len7;
  if (ext === 2) head.writeUInt16BE(payload, 2);
  if (ext === 8) head.writeBigUInt64BE(BigInt(payload), 2);
  return Buffer.concat([head, Buffer.alloc(payload, 7)]);
}

describe('FrameBoundaries', () => {
  it('is at a boundary after whole frames of every length encoding, masked or not', () => {
    for (const size of [0, 5, 125, 126, 1000, 65535, 65536, 1 << 20]) {
      for (const masked of [false, true]) {
        const f = new FrameBoundaries();
        f.push(frame(size, masked));
        expect(f.atBoundary).toBe(true);
      }
    }
  });

  it('is inside a frame while its header or payload is split across chunks', () => {
    const bytes = Buffer.concat([frame(300, true), frame(3, false)]);
    const f = new FrameBoundaries();
    const boundaries: number[] = [];
    for (let i = 0; i < bytes.length; i++) {
      f.push(bytes.subarray(i, i + 1));
      if (f.atBoundary) boundaries.push(i + 1);
    }
    expect(boundaries).toEqual([2 + 2 + 4 + 300, bytes.length]);
  });

  it('close frames carry the code, masked when sent as a client', () => {
    expect([...closeFrame(1001, false)]).toEqual([0x88, 0x02, 0x03, 0xe9]);
    const masked = closeFrame(1001, true);
    expect(masked[1]! & 0x80).toBe(0x80);
    expect(((masked[6]! ^ masked[2]!) << 8) | (masked[7]! ^ masked[3]!)).toBe(1001);
  });
});
