// Where WebSocket frames start and end in a byte stream meshlet relays (RFC 6455 §5.2), so a drain can close cleanly.

/**
 * Follows the frame boundaries of one direction of a WebSocket connection without buffering or
 * unmasking anything: it reads each frame header (2–14 bytes, possibly split across chunks) and
 * then skips the payload length. `atBoundary` is true between frames, which is when meshlet may
 * insert a close frame of its own. Pure; O(chunks), no allocation per chunk.
 */
export class FrameBoundaries {
  /** Header bytes of the frame being read, until it is whole. */
  readonly #header = new Uint8Array(14);
  #headerLength = 0;
  /** Payload bytes of the current frame still to come. */
  #remaining = 0;

  /** True between two frames (no header or payload byte of a frame outstanding). */
  get atBoundary(): boolean {
    return this.#headerLength === 0 && this.#remaining === 0;
  }

  /** Consumes a chunk of the stream. */
  push(chunk: Uint8Array): void {
    let i = 0;
    const n = chunk.length;
    while (i < n) {
      if (this.#remaining > 0) {
        const skip = Math.min(this.#remaining, n - i);
        this.#remaining -= skip;
        i += skip;
        continue;
      }
      this.#header[this.#headerLength++] = chunk[i++]!;
      const need = headerSize(this.#header, this.#headerLength);
      if (need !== undefined && this.#headerLength === need) {
        this.#remaining = payloadLength(this.#header);
        this.#headerLength = 0;
      }
    }
  }
}

/** The full header size once enough of it is known (2 bytes tell), else undefined. */
function headerSize(h: Uint8Array, have: number): number | undefined {
  if (have < 2) return undefined;
  const len7 = h[1]! & 0x7f;
  const mask = (h[1]! & 0x80) !== 0 ? 4 : 0;
  return 2 + (len7 === 126 ? 2 : len7 === 127 ? 8 : 0) + mask;
}

function payloadLength(h: Uint8Array): number {
  const len7 = h[1]! & 0x7f;
  if (len7 < 126) return len7;
  if (len7 === 126) return (h[2]! << 8) | h[3]!;
  // 64-bit length; frames over 2^53 bytes do not occur in practice.
  let len = 0;
  for (let i = 2; i < 10; i++) len = len * 256 + h[i]!;
  return len;
}

/** WebSocket close code 1001: the endpoint is going away (a proxy shutting down). */
export const GOING_AWAY = 1001;

/**
 * A close frame with `code`: unmasked (server → client) or masked with a random key (client →
 * server, as RFC 6455 §5.3 requires of clients).
 */
export function closeFrame(code: number, masked: boolean): Buffer {
  if (!masked) return Buffer.from([0x88, 0x02, code >> 8, code & 0xff]);
  const key = Buffer.from([
    Math.random() * 256,
    Math.random() * 256,
    Math.random() * 256,
    Math.random() * 256,
  ]);
  const frame = Buffer.alloc(8);
  frame[0] = 0x88;
  frame[1] = 0x80 | 0x02;
  key.copy(frame, 2);
  frame[6] = (code >> 8) ^ key[0]!;
  frame[7] = (code & 0xff) ^ key[1]!;
  return frame;
}
