// A request body's kept bytes in few Buffers: small chunks are copied together, so a body of 1-byte chunks costs its bytes, not a Buffer (and a socket read buffer) each.

/** Chunks below this size, bytes, are copied into a shared piece rather than kept as they came. */
const SMALL_BYTES = 1024;
/** Most small chunks waiting apart before they are copied together. */
const MERGE_EVERY = 64;

/**
 * Keeps the chunks of a body in order. A chunk of {@link SMALL_BYTES} or more is kept as it came;
 * smaller ones are copied together into pieces of at least that size. A chunked HTTP/1.1 body of a
 * million 1-byte chunks otherwise kept a million Buffers, each a view holding on to the whole socket
 * read it was parsed from (the listener's parser hands out slices): about 100 bytes of overhead per
 * byte, and more behind it. Copying costs at most {@link SMALL_BYTES} per {@link MERGE_EVERY} chunks.
 */
export class ChunkList {
  readonly #kept: Buffer[] = [];
  #small: Buffer[] = [];
  #smallBytes = 0;
  /** Bytes pushed so far. */
  size = 0;

  push(chunk: Buffer): void {
    this.size += chunk.length;
    if (chunk.length >= SMALL_BYTES) {
      this.#flush();
      this.#kept.push(chunk);
      return;
    }
    this.#small.push(chunk);
    this.#smallBytes += chunk.length;
    if (this.#small.length >= MERGE_EVERY) this.#merge();
  }

  /** Everything pushed, in order. */
  buffers(): Buffer[] {
    this.#flush();
    return this.#kept;
  }

  /** Everything pushed, as one Buffer (the chunk itself when there was one). */
  toBuffer(): Buffer {
    const all = this.buffers();
    return all.length === 1 ? all[0]! : Buffer.concat(all, this.size);
  }

  /** Copies the waiting small chunks into one; it keeps waiting while it is small itself. */
  #merge(): void {
    const merged = Buffer.concat(this.#small, this.#smallBytes);
    if (merged.length >= SMALL_BYTES) {
      this.#kept.push(merged);
      this.#small = [];
      this.#smallBytes = 0;
    } else this.#small = [merged];
  }

  /** Moves the waiting small chunks to the kept ones (copied together when more than one). */
  #flush(): void {
    if (this.#small.length === 0) return;
    this.#kept.push(
      this.#small.length === 1 ? this.#small[0]! : Buffer.concat(this.#small, this.#smallBytes),
    );
    this.#small = [];
    this.#smallBytes = 0;
  }
}
