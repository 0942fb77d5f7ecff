// Ring hash: consistent hashing over a ring of virtual nodes, proportional to weight (Envoy's ring_hash).
import type { EndpointHandle } from '../upstream/endpoint.ts';
import { hashString } from './hash.ts';
import type { LoadBalancer } from './load-balancer.ts';
import { pickUniform } from './sampling.ts';
import { hasOther, hasUsable } from './usable.ts';
import { effectiveWeight } from './weight.ts';

/** Options of {@link RingHashBalancer}. */
export interface RingHashBalancerOptions {
  /**
   * Fewest virtual nodes on the ring, and the number an endpoint of the lightest weight owns (more
   * spreads keys more evenly). Defaults to 1024, as Envoy.
   */
  minimumRingSize?: number;
  /** Most virtual nodes on the ring. Defaults to 8,388,608 (8M), as Envoy. */
  maximumRingSize?: number;
  /** Uniform source in [0, 1), for requests without a hash key. Defaults to `Math.random`. */
  random?: () => number;
}

/** Ring sizes at or beyond this need more than 32 bits of ring position; refused. */
const MAX_OWNERS = 2 ** 21;

/**
 * Consistent hashing in the manner of Envoy's `ring_hash`: endpoints own virtual nodes on a 32-bit
 * ring (MurmurHash3 of `"<endpoint id>_<i>"`), and a key (MurmurHash3 of `hashKey`) goes to the
 * first node at or after it, wrapping around.
 *
 * Node counts: an endpoint of the lightest weight owns `minimumRingSize` nodes and the others
 * proportionally more (`ceil(minimumRingSize × weight / lightest weight)`), so the ring always has
 * at least `minimumRingSize` nodes. Envoy instead splits one ring of about `minimumRingSize` nodes
 * among all endpoints, so each join also takes nodes from the existing endpoints and moves keys
 * between them (about 36% of keys move when a 4th endpoint joins 3, against the ideal 25%); here a
 * join or a leave moves only the keys of the endpoint concerned, at the price of a ring of
 * n × 1024 nodes (8 bytes each; 100 endpoints ≈ 800 KiB, rebuilt in milliseconds on `update`).
 * Past `maximumRingSize` every endpoint's count is scaled down to fit.
 *
 * When the key's endpoint is `avoid` or ejected, the pick walks the ring to the next endpoint that is
 * neither (or, failing that, not `avoid`), so keys of a lost endpoint spread over the others and keys
 * of the rest stay put. Requests without a key get a uniformly random endpoint.
 */
export class RingHashBalancer implements LoadBalancer {
  readonly kind = 'ring_hash' as const;
  readonly #minimumRingSize: number;
  readonly #maximumRingSize: number;
  readonly #random: () => number;
  #endpoints: readonly EndpointHandle[] = [];
  #index = new Map<EndpointHandle, number>();
  /** Ring positions, sorted ascending. */
  #hashes: Uint32Array = new Uint32Array(0);
  /** Index into `#endpoints` of the endpoint owning each ring position. */
  #owners: Uint32Array = new Uint32Array(0);
  /**
   * Search start per bucket of the 32-bit hash space: `#starts[b]` is the first ring position whose
   * hash's top `32 − #shift` bits are ≥ b (length 2^bits + 1). With about one node per bucket, a
   * pick searches one or two positions instead of log2(ring size).
   */
  #starts: Uint32Array = new Uint32Array(3);
  #shift = 31;

  constructor(options: RingHashBalancerOptions = {}) {
    const min = options.minimumRingSize ?? 1024;
    const max = options.maximumRingSize ?? 8_388_608;
    if (!Number.isInteger(min) || min < 1) {
      throw new RangeError(`ring_hash: minimumRingSize must be a positive integer, got ${min}`);
    }
    if (!Number.isInteger(max) || max < min) {
      throw new RangeError(
        `ring_hash: maximumRingSize must be an integer ≥ minimumRingSize (${min}), got ${max}`,
      );
    }
    this.#minimumRingSize = min;
    this.#maximumRingSize = max;
    this.#random = options.random ?? Math.random;
  }

  /** Number of virtual nodes on the current ring. */
  get ringSize(): number {
    return this.#hashes.length;
  }

  update(endpoints: readonly EndpointHandle[]): void {
    const n = endpoints.length;
    if (n >= MAX_OWNERS) throw new RangeError(`ring_hash: too many endpoints (${n})`);
    this.#endpoints = endpoints;
    this.#index = new Map(endpoints.map((h, i) => [h, i]));
    if (n === 0) {
      this.#hashes = new Uint32Array(0);
      this.#owners = new Uint32Array(0);
      this.#starts = new Uint32Array(3);
      this.#shift = 31;
      return;
    }
    let minWeight = Number.POSITIVE_INFINITY;
    for (const h of endpoints) minWeight = Math.min(minWeight, effectiveWeight(h));
    // Nodes per endpoint depend only on its weight relative to the lightest, never on how many
    // endpoints there are, so a join or a leave moves only the keys of the endpoint concerned.
    let wanted = 0;
    for (const h of endpoints) wanted += Math.ceil((this.#minimumRingSize * effectiveWeight(h)) / minWeight);
    const shrink = wanted > this.#maximumRingSize ? this.#maximumRingSize / wanted : 1;
    // Packed as hash × 2^21 + owner (< 2^53), so one numeric sort orders by hash, then owner.
    const packed: number[] = [];
    for (let owner = 0; owner < n; owner++) {
      const h = endpoints[owner]!;
      const exact = Math.ceil((this.#minimumRingSize * effectiveWeight(h)) / minWeight);
      const count = shrink === 1 ? exact : Math.max(1, Math.floor(exact * shrink));
      const prefix = `${h.endpoint.id}_`;
      for (let i = 0; i < count; i++) packed.push(hashString(prefix + i) * MAX_OWNERS + owner);
    }
    const sorted = Float64Array.from(packed).sort();
    const size = sorted.length;
    this.#hashes = new Uint32Array(size);
    this.#owners = new Uint32Array(size);
    for (let i = 0; i < size; i++) {
      const v = sorted[i]!;
      const owner = v % MAX_OWNERS;
      this.#owners[i] = owner;
      this.#hashes[i] = (v - owner) / MAX_OWNERS;
    }
    this.#indexBuckets(size);
  }

  /** Builds `#starts`: about one bucket per ring node (at most 2^20 buckets, 4 MiB). */
  #indexBuckets(size: number): void {
    const bits = Math.min(20, Math.max(1, Math.ceil(Math.log2(size))));
    const buckets = 2 ** bits;
    const shift = 32 - bits;
    const starts = new Uint32Array(buckets + 1);
    const hashes = this.#hashes;
    let pos = 0;
    for (let b = 0; b < buckets; b++) {
      while (pos < size && hashes[pos]! >>> shift < b) pos++;
      starts[b] = pos;
    }
    starts[buckets] = size;
    this.#starts = starts;
    this.#shift = shift;
  }

  pick(hashKey: string | undefined, avoid: EndpointHandle | undefined): EndpointHandle | undefined {
    const list = this.#endpoints;
    if (hashKey === undefined || list.length <= 1) {
      const avoidIndex = avoid === undefined ? -1 : (this.#index.get(avoid) ?? -1);
      return pickUniform(list, avoidIndex, this.#random);
    }
    const hashes = this.#hashes;
    const size = hashes.length;
    const key = hashString(hashKey);
    // First position whose hash is ≥ the key's, wrapping to 0 past the end; the key's bucket
    // bounds the search (every position before it hashes lower, every one after it higher).
    const bucket = key >>> this.#shift;
    let lo = this.#starts[bucket]!;
    let hi = this.#starts[bucket + 1]!;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if (hashes[mid]! < key) lo = mid + 1;
      else hi = mid;
    }
    const start = lo === size ? 0 : lo;
    const owners = this.#owners;
    const primary = list[owners[start]!]!;
    if (primary !== avoid && !primary.ejected) return primary;
    const skipEjected = hasUsable(list, avoid);
    if (!skipEjected && !hasOther(list, avoid)) return primary;
    for (let i = start + 1; ; i++) {
      if (i === size) i = 0;
      const h = list[owners[i]!]!;
      if (h !== avoid && !(skipEjected && h.ejected)) return h;
    }
  }
}
