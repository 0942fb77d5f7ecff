// Maglev: consistent hashing through a prime-sized lookup table (Google's paper, Envoy's `maglev`).
import type { EndpointHandle } from '../upstream/endpoint.ts';
import { hashString } from './hash.ts';
import type { LoadBalancer } from './load-balancer.ts';
import { pickUniform } from './sampling.ts';
import { hasOther, hasUsable } from './usable.ts';
import { effectiveWeight } from './weight.ts';

/** Options of {@link MaglevBalancer}. */
export interface MaglevBalancerOptions {
  /** Slots in the lookup table; a prime, at most 5,000,011. Defaults to 65537, as Envoy. */
  tableSize?: number;
  /** Uniform source in [0, 1), for requests without a hash key. Defaults to `Math.random`. */
  random?: () => number;
}

/** Largest table Envoy accepts. */
const MAX_TABLE_SIZE = 5_000_011;

/**
 * Maglev hashing (Eisenbud et al., NSDI 2016) with Envoy's weighting. Each endpoint has a
 * permutation of the table's slots, `(offset + j × skip) mod M`, with `offset` and `skip` derived
 * from MurmurHash3 of its id under two seeds; endpoints take turns claiming their next free slot,
 * heavier endpoints more often (an endpoint of weight w claims on w/max-weight of the turns), until
 * the table is full. A key goes to `table[murmur3(hashKey) mod M]`: one array read per pick, and
 * each endpoint holds its weight's share of slots to within about 1%. A join or a leave remaps
 * slightly more keys than the ideal 1/n, but far fewer than n-way modular hashing.
 *
 * Endpoints are placed in order of id, so the table does not depend on the order `update` gets
 * them. When the key's endpoint is `avoid` or ejected, the pick walks forward through the table to
 * the next slot whose endpoint is neither (or, failing that, not `avoid`): a deterministic, evenly
 * spread second choice per key. Requests without a key get a uniformly random endpoint.
 */
export class MaglevBalancer implements LoadBalancer {
  readonly kind = 'maglev' as const;
  readonly #tableSize: number;
  readonly #random: () => number;
  #endpoints: readonly EndpointHandle[] = [];
  #index = new Map<EndpointHandle, number>();
  /** Slot → index into `#endpoints`; empty while there are no endpoints. */
  #table: Int32Array = new Int32Array(0);

  constructor(options: MaglevBalancerOptions = {}) {
    const size = options.tableSize ?? 65537;
    if (!Number.isInteger(size) || size > MAX_TABLE_SIZE || !isPrime(size)) {
      throw new RangeError(`maglev: tableSize must be a prime no larger than ${MAX_TABLE_SIZE}, got ${size}`);
    }
    this.#tableSize = size;
    this.#random = options.random ?? Math.random;
  }

  /** Slots in the lookup table. */
  get tableSize(): number {
    return this.#tableSize;
  }

  /** How many table slots each endpoint of the last `update` owns, in that order (for tests, admin). */
  slotCounts(): number[] {
    const counts = new Array<number>(this.#endpoints.length).fill(0);
    for (const owner of this.#table) counts[owner]! += 1;
    return counts;
  }

  update(endpoints: readonly EndpointHandle[]): void {
    this.#endpoints = endpoints;
    this.#index = new Map(endpoints.map((h, i) => [h, i]));
    this.#table = endpoints.length === 0 ? new Int32Array(0) : buildTable(endpoints, this.#tableSize);
  }

  pick(hashKey: string | undefined, avoid: EndpointHandle | undefined): EndpointHandle | undefined {
    const list = this.#endpoints;
    if (hashKey === undefined || list.length <= 1) {
      const avoidIndex = avoid === undefined ? -1 : (this.#index.get(avoid) ?? -1);
      return pickUniform(list, avoidIndex, this.#random);
    }
    const table = this.#table;
    const size = table.length;
    const slot = hashString(hashKey) % size;
    const primary = list[table[slot]!]!;
    if (primary !== avoid && !primary.ejected) return primary;
    const skipEjected = hasUsable(list, avoid);
    if (!skipEjected && !hasOther(list, avoid)) return primary;
    for (let i = slot + 1; ; i++) {
      if (i === size) i = 0;
      const h = list[table[i]!]!;
      if (h !== avoid && !(skipEjected && h.ejected)) return h;
    }
  }
}

/** Fills a Maglev lookup table of `size` (prime) slots with indices into `endpoints`. */
function buildTable(endpoints: readonly EndpointHandle[], size: number): Int32Array {
  const n = endpoints.length;
  const order = endpoints
    .map((h, i) => ({ id: h.endpoint.id, i }))
    .sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : a.i - b.i));
  const owner = new Int32Array(n);
  const weight = new Float64Array(n);
  const next = new Float64Array(n);
  const skip = new Float64Array(n);
  const target = new Float64Array(n);
  let maxWeight = 0;
  for (let e = 0; e < n; e++) {
    const { id, i } = order[e]!;
    owner[e] = i;
    weight[e] = effectiveWeight(endpoints[i]!);
    maxWeight = Math.max(maxWeight, weight[e]!);
    next[e] = hashString(id, 0) % size;
    skip[e] = (hashString(id, 1) % (size - 1)) + 1;
  }
  const table = new Int32Array(size).fill(-1);
  let filled = 0;
  for (let turn = 1; filled < size; turn++) {
    for (let e = 0; e < n && filled < size; e++) {
      // An endpoint of the largest weight claims on every turn, one of a third of it on every third.
      if (turn * weight[e]! < target[e]!) continue;
      target[e]! += maxWeight;
      const step = skip[e]!;
      let c = next[e]!;
      while (table[c] !== -1) {
        c += step;
        if (c >= size) c -= size;
      }
      table[c] = owner[e]!;
      c += step;
      next[e] = c >= size ? c - size : c;
      filled++;
    }
  }
  return table;
}

/** Whether `n` is prime (trial division; `n` ≤ 5,000,011). */
export function isPrime(n: number): boolean {
  if (n < 2) return false;
  if (n % 2 === 0) return n === 2;
  for (let d = 3; d * d <= n; d += 2) if (n % d === 0) return false;
  return true;
}
