// Pure pieces of the Consul registry: index handling, backoff, probe thresholds and names, health → endpoints.
import { describe, expect, it } from 'vitest';
import { describeProbe, ProbeStatus } from './app-probe.ts';
import { registrationLost } from './app-registration.ts';
import { BlockingWatch, backoffMs, nextIndex } from './blocking-watch.ts';
import { ConsulHttpError, type HealthEntry } from './consul-client.ts';
import { healthCheckStatus } from './grpc-health-probe.ts';
import { advertisedProtocol, endpointsFromHealth, parseHealth } from './health-endpoints.ts';

describe('nextIndex', () => {
  it('follows X-Consul-Index, resets to 0 when it goes backwards, never sends 0 after an answer', () => {
    expect(nextIndex(0, 42)).toBe(42);
    expect(nextIndex(42, 43)).toBe(43);
    expect(nextIndex(42, 42)).toBe(42);
    expect(nextIndex(42, 7)).toBe(0);
    expect(nextIndex(0, 0)).toBe(1);
    expect(nextIndex(0, undefined)).toBe(1);
  });
});

describe('BlockingWatch', () => {
  it('a refused answer (onAnswer throws) keeps the loop going and reads the same index again', async () => {
    const answers = [
      { value: 'good-1', index: 5 },
      { value: 'bad', index: 9 },
      { value: 'good-2', index: 9 },
      { value: 'no-index', index: undefined },
      { value: 'no-index-2', index: undefined },
    ];
    const sentIndexes: number[] = [];
    const applied: string[] = [];
    const errors: string[] = [];
    let done: () => void = () => undefined;
    const finished = new Promise<void>((r) => {
      done = r;
    });
    const watch = new BlockingWatch<string>({
      name: 'test',
      minIntervalMs: 0,
      backoffBaseMs: 1,
      backoffMaxMs: 2,
      fetch: async (index, signal) => {
        sentIndexes.push(index);
        const next = answers.shift();
        if (next === undefined) {
          done();
          return new Promise((_resolve, reject) => {
            signal.addEventListener('abort', () => reject(signal.reason as Error), { once: true });
          });
        }
        return next;
      },
      onAnswer: (value) => {
        if (value === 'bad') throw new Error('refused');
        applied.push(value);
      },
      onError: (err) => errors.push(err.message),
      onSuccess: () => undefined,
    });
    watch.start();
    await finished;
    // Answers without an index are applied too (nothing says they did not change).
    expect(applied).toEqual(['good-1', 'good-2', 'no-index', 'no-index-2']);
    expect(errors).toEqual(['refused']);
    expect(sentIndexes).toEqual([0, 5, 5, 9, 9, 9]);
    expect(watch.lastError).toBeNull();
    await watch.stop();
  });
});

describe('parseHealth', () => {
  it('skips and counts malformed entries; port 0 and weight 0 are unusable, not malformed', () => {
    const ok = {
      Node: { Address: '10.0.0.1' },
      Service: { Address: '', Port: 80, Tags: ['a', 7], Meta: { k: 'v', n: 1 } },
    };
    const parsed = parseHealth([
      ok,
      null,
      'x',
      { Node: {} },
      { Service: { Port: 80 } },
      { Node: { Address: '10.0.0.2' }, Service: { Port: 0 } },
      { Node: { Address: '10.0.0.3' }, Service: { Port: 65536 } },
      { Node: { Address: '10.0.0.4' }, Service: { Port: 81, Weights: { Passing: 0 } } },
    ]);
    expect(parsed.endpoints.map((e) => e.id)).toEqual(['10.0.0.1:80']);
    expect(parsed.endpoints[0]!.tags).toEqual(['a']);
    expect(parsed.endpoints[0]!.meta).toEqual({ k: 'v' });
    expect(parsed.malformed).toBe(5);
    expect(parsed.firstProblem).toBe('entry is not a JSON object');
  });
});

describe('backoffMs', () => {
  it('grows exponentially to the cap with equal jitter', () => {
    expect(backoffMs(1, 250, 5000, () => 0)).toBe(125);
    expect(backoffMs(1, 250, 5000, () => 0.999)).toBe(250);
    expect(backoffMs(3, 250, 5000, () => 0)).toBe(500);
    expect(backoffMs(30, 250, 5000, () => 0.999)).toBe(4998);
  });
});

describe('ProbeStatus', () => {
  it('the first probe decides; then thresholds of consecutive results', () => {
    const s = new ProbeStatus(2, 3);
    expect(s.record({ status: 'passing', output: 'ok' })).toBe('passing');
    expect(s.record({ status: 'critical', output: 'refused' })).toBe('passing');
    expect(s.output).toBe('refused (1 of 3 failures before critical)');
    expect(s.record({ status: 'critical', output: 'refused' })).toBe('passing');
    expect(s.record({ status: 'critical', output: 'refused' })).toBe('critical');
    expect(s.record({ status: 'passing', output: 'ok' })).toBe('critical');
    expect(s.record({ status: 'passing', output: 'ok' })).toBe('passing');
    expect(s.record({ status: 'warning', output: '429' })).toBe('warning');
  });
});

describe('registrationLost', () => {
  it('recognises the answers of an agent that no longer knows the check', () => {
    expect(registrationLost(new ConsulHttpError(404, 'Unknown check ID "service:web-1"'))).toBe(true);
    expect(
      registrationLost(new ConsulHttpError(500, 'CheckID "service:web-1" does not have associated TTL')),
    ).toBe(true);
    expect(registrationLost(new ConsulHttpError(500, 'No cluster leader'))).toBe(false);
    expect(registrationLost(new Error('ECONNREFUSED'))).toBe(false);
  });
});

describe('endpointsFromHealth', () => {
  const entry = (over: Partial<HealthEntry['Service']>, status = 'passing'): HealthEntry => ({
    Node: { Node: 'n1', Address: '10.0.0.9' },
    Service: { ID: 'x', Service: 'users', Address: '', Port: 8080, Tags: null, Meta: null, ...over },
    Checks: [{ CheckID: 'serfHealth', Status: status }],
  });
  it('Service.Address else Node.Address; weight from Weights; tags, meta, transport; sorted; zero weight dropped', () => {
    const eps = endpointsFromHealth([
      entry({
        Address: '10.0.0.2',
        Weights: { Passing: 5, Warning: 1 },
        Tags: ['v2'],
        Meta: { meshlet_inbound: 'mtls' },
      }),
      entry({}),
      entry({ Address: '10.0.0.3', Weights: { Passing: 1, Warning: 0 } }, 'warning'),
    ]);
    expect(eps.map((e) => [e.id, e.weight, e.transport])).toEqual([
      ['10.0.0.2:8080', 5, 'mtls'],
      ['10.0.0.9:8080', 1, 'plain'],
    ]);
    expect(eps[0]!.tags).toEqual(['v2']);
    expect(Object.isFrozen(eps[0])).toBe(true);
  });

  it('protocol from Meta.meshlet_protocol; absent or unknown values leave it undefined', () => {
    const metas = [
      { meshlet_protocol: 'grpc' },
      { meshlet_protocol: 'http2' },
      { meshlet_protocol: 'http1' },
    ];
    const odd: (Record<string, string> | null)[] = [
      null,
      {},
      { meshlet_protocol: 'h3' },
      { meshlet_protocol: '' },
      { meshlet_protocol: 'GRPC' },
    ];
    const eps = endpointsFromHealth(
      [...metas, ...odd].map((Meta, i) => entry({ Address: `10.0.1.${i}`, Meta })),
    );
    expect(eps.map((e) => e.protocol)).toEqual([
      'grpc',
      'http2',
      'http1',
      undefined,
      undefined,
      undefined,
      undefined,
      undefined,
    ]);
    expect(advertisedProtocol('toString')).toBeUndefined();
    expect(advertisedProtocol(undefined)).toBeUndefined();
  });
});

describe('healthCheckStatus', () => {
  it('SERVING is passing; NOT_SERVING, SERVICE_UNKNOWN, UNKNOWN and anything else critical', () => {
    expect(healthCheckStatus('SERVING')).toBe('passing');
    for (const s of ['NOT_SERVING', 'SERVICE_UNKNOWN', 'UNKNOWN', '', undefined]) {
      expect(healthCheckStatus(s)).toBe('critical');
    }
  });
});

describe('describeProbe', () => {
  it('names the probe in the Consul check name', () => {
    expect(describeProbe({ port: 1, timeoutMs: 1 })).toBe('TCP connect');
    expect(describeProbe({ port: 1, timeoutMs: 1, httpPath: '/health' })).toBe('HTTP GET /health');
    expect(describeProbe({ port: 1, timeoutMs: 1, grpcService: '' })).toBe(
      'gRPC Health/Check (whole server)',
    );
    expect(describeProbe({ port: 1, timeoutMs: 1, grpcService: 'users.v1.Users' })).toBe(
      'gRPC Health/Check "users.v1.Users"',
    );
  });
});
