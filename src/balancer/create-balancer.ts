// Builds the load balancer a config names, with its options; the one place that knows every kind.
import type { Clock } from '../clock.ts';
import { LeastRequestBalancer } from './least-request.ts';
import type { LoadBalancer, LoadBalancerKind } from './load-balancer.ts';
import { MaglevBalancer } from './maglev.ts';
import { PeakEwmaBalancer } from './peak-ewma.ts';
import { RandomBalancer } from './random.ts';
import { RingHashBalancer } from './ring-hash.ts';
import { RoundRobinBalancer } from './round-robin.ts';
import { WeightedRoundRobinBalancer } from './weighted.ts';

/** Options for {@link createBalancer}; each kind reads only its own. */
export interface CreateBalancerOptions {
  /** Time source for peak_ewma. Defaults to the system clock. */
  clock?: Clock;
  /** Uniform source in [0, 1) for random, least_request, peak_ewma and keyless hashing picks. Defaults to `Math.random`. */
  random?: () => number;
  /** ring_hash: `minimumRingSize` defaults to 1024, `maximumRingSize` to 8,388,608. */
  ringHash?: { minimumRingSize?: number; maximumRingSize?: number };
  /** maglev: `tableSize`, a prime, defaults to 65537. */
  maglev?: { tableSize?: number };
  /** peak_ewma: `decayMs` defaults to 10,000, `defaultRttMs` to 30. */
  peakEwma?: { decayMs?: number; defaultRttMs?: number };
}

/** A new, empty load balancer of `kind`; call `update` with endpoints before `pick`. Throws RangeError on bad options. */
export function createBalancer(kind: LoadBalancerKind, options: CreateBalancerOptions = {}): LoadBalancer {
  const { clock, random } = options;
  switch (kind) {
    case 'round_robin':
      return new RoundRobinBalancer();
    case 'random':
      return new RandomBalancer({ random });
    case 'least_request':
      return new LeastRequestBalancer({ random });
    case 'weighted':
      return new WeightedRoundRobinBalancer();
    case 'ring_hash':
      return new RingHashBalancer({ ...options.ringHash, random });
    case 'maglev':
      return new MaglevBalancer({ ...options.maglev, random });
    case 'peak_ewma':
      return new PeakEwmaBalancer({ ...options.peakEwma, clock, random });
    default:
      throw new RangeError(`unknown load balancer kind: ${String(kind satisfies never)}`);
  }
}
