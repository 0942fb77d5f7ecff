// Upstream policy for tests that check meshlet blames no endpoint: one failure counted against an endpoint would show.
import type { ConfigInput } from '../../src/config/schema.ts';

/** One upstream's policy as config takes it. */
type UpstreamInput = NonNullable<ConfigInput['upstreams']>[string];

/**
 * Circuit breaker and outlier detection that a single failure counted against an endpoint trips: one
 * opens the breaker (volumeThreshold 1, errorThresholdPercentage 1), one ejects the endpoint
 * (consecutiveGatewayFailure 1, consecutive5xx 1, maxEjectionPercent 100). Spread it into an upstream's policy.
 */
export const ONE_FAILURE_TRIPS = {
  circuitBreaker: { volumeThreshold: 1, errorThresholdPercentage: 1 },
  outlierDetection: { consecutiveGatewayFailure: 1, consecutive5xx: 1, maxEjectionPercent: 100 },
} satisfies UpstreamInput;
