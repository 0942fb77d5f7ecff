import { afterEach, describe, expect, it } from 'vitest';
import { upstreamSpec } from '../config/schema.ts';
import { Metrics } from '../telemetry/metrics.ts';
import { makeEndpoint } from './endpoint.ts';
import { Upstream } from './upstream.ts';
import { resolveUpstreamSettings } from './upstream-settings.ts';

describe('Upstream ejection timer', () => {
  const made: Upstream[] = [];
  afterEach(async () => {
    for (const u of made.splice(0)) await u.close();
  });

  it('an ejection longer than 2^31 − 1 ms (baseEjectionTime: 1000h) does not re-arm its timer every millisecond', async () => {
    const spec = upstreamSpec.parse({
      outlierDetection: { consecutive5xx: 1, baseEjectionTime: '1000h', maxEjectionTime: '2000h' },
    });
    const upstream = new Upstream('users', resolveUpstreamSettings(spec, 'users'), new Metrics());
    made.push(upstream);
    // Two endpoints on ports nothing dials: pools connect only when used, and nothing is sent here.
    upstream.setEndpoints([makeEndpoint('127.0.0.1', 1), makeEndpoint('127.0.0.1', 2)]);
    const outlier = upstream.outlier;
    expect(outlier.onFailure(upstream.endpoints[0]!, '5xx')).toBe(true);
    let ticks = 0;
    const tick = outlier.tick.bind(outlier);
    outlier.tick = () => {
      ticks += 1;
      return tick();
    };
    await new Promise((r) => setTimeout(r, 60));
    expect(ticks).toBe(0);
    expect(upstream.endpoints[0]!.ejected).toBe(true);
  });
});
