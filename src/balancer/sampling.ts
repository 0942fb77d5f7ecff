// Allocation-free random sampling shared by balancers: one uniform pick, or power of two choices.
import type { EndpointHandle } from '../upstream/endpoint.ts';

/**
 * Picks one endpoint uniformly at random, never `list[avoidIndex]` unless it is the only one.
 * @param avoidIndex index of the endpoint to avoid, or -1 for none.
 * @param random uniform in [0, 1).
 */
export function pickUniform(
  list: readonly EndpointHandle[],
  avoidIndex: number,
  random: () => number,
): EndpointHandle | undefined {
  const n = list.length;
  if (n <= 1) return list[0];
  if (avoidIndex < 0) return list[index(random, n)];
  const k = index(random, n - 1);
  return list[k >= avoidIndex ? k + 1 : k];
}

/**
 * Power of two random choices: draws two distinct endpoints uniformly (skipping `list[avoidIndex]`
 * unless it is the only one) and returns the second drawn when `better(second, first)`, else the first.
 * @param avoidIndex index of the endpoint to avoid, or -1 for none.
 * @param random uniform in [0, 1).
 * @param better whether `candidate` is strictly cheaper than `incumbent`; called at most once.
 */
export function pickTwoChoices(
  list: readonly EndpointHandle[],
  avoidIndex: number,
  random: () => number,
  better: (candidate: EndpointHandle, incumbent: EndpointHandle) => boolean,
): EndpointHandle | undefined {
  const n = list.length;
  const m = avoidIndex < 0 ? n : n - 1;
  if (m <= 1) return m === 1 && avoidIndex === 0 ? list[1] : list[0];
  const x = index(random, m);
  let y = index(random, m - 1);
  if (y >= x) y += 1;
  const a = list[avoidIndex >= 0 && x >= avoidIndex ? x + 1 : x]!;
  const b = list[avoidIndex >= 0 && y >= avoidIndex ? y + 1 : y]!;
  return better(b, a) ? b : a;
}

/** A uniform integer in [0, n), robust to a `random` that returns exactly 1. */
function index(random: () => number, n: number): number {
  const i = Math.floor(random() * n);
  return i < n ? i : n - 1;
}
