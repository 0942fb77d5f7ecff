// The consul registry's config: defaults, and errors that name the key.
import { describe, expect, it } from 'vitest';
import { validateConfig } from '../../src/config/load-config.ts';

describe('registry.type consul config', () => {
  it('fills the documented defaults; drainDelay defaults to 5 s with Consul and 0 with static', () => {
    const config = validateConfig({ service: { name: 'web', port: 8080 }, registry: { type: 'consul' } });
    expect(config.registry).toMatchObject({
      type: 'consul',
      consul: { address: 'http://127.0.0.1:8500' },
      weights: { passing: 1, warning: 1 },
      check: {
        interval: 10_000,
        timeout: 2000,
        successThreshold: 1,
        failureThreshold: 1,
        deregisterCriticalServiceAfter: 60_000,
      },
      watch: { wait: 300_000, idleTimeout: 300_000, maxOnDemand: 100 },
    });
    expect(config.shutdown.drainDelay).toBe(5000);
    expect(validateConfig({}).shutdown.drainDelay).toBe(0);
    expect(
      validateConfig({ registry: { type: 'consul' }, shutdown: { drainDelay: '1s' } }).shutdown.drainDelay,
    ).toBe(1000);
  });

  it('names the bad key', () => {
    const bad = (raw: unknown) => () => validateConfig(raw, 'm.yaml', '/etc/meshlet');
    expect(bad({ registry: { type: 'consul', consul: { token: 'a', tokenFile: 'b' } } })).toThrow(
      /registry\.consul\.tokenFile: set either token or tokenFile/,
    );
    expect(bad({ registry: { type: 'consul', register: true } })).toThrow(
      /service: required when registry\.register is true/,
    );
    expect(bad({ registry: { type: 'consul', check: { http: '/h', tcp: true } } })).toThrow(
      /registry\.check\.tcp/,
    );
    expect(bad({ registry: { type: 'consul', check: { grpc: '', http: '/h' } } })).toThrow(
      /registry\.check\.grpc: set either grpc or http, not both/,
    );
    expect(bad({ registry: { type: 'consul', check: { grpc: 'users', tcp: true } } })).toThrow(
      /registry\.check\.grpc: set either grpc or tcp: true, not both/,
    );
    expect(bad({ registry: { type: 'consul', check: { grpc: 7 } } })).toThrow(/registry\.check\.grpc/);
    expect(bad({ registry: { type: 'consul', check: { interval: '1s', timeout: '2s' } } })).toThrow(
      /registry\.check\.timeout/,
    );
    expect(bad({ registry: { type: 'consul', consul: { address: 'consul:8500' } } })).toThrow(
      /registry\.consul\.address/,
    );
    expect(bad({ registry: { type: 'consul', watch: { idle: '1m' } } })).toThrow(
      /registry\.watch\.idle: unknown key/,
    );
  });

  it('check.grpc takes a service name, "" for the whole server (kept, not a missing value)', () => {
    for (const grpc of ['', 'meshlet.test.v1.Echo']) {
      const config = validateConfig({ registry: { type: 'consul', check: { grpc } } });
      if (config.registry.type !== 'consul') throw new Error('consul expected');
      expect(config.registry.check.grpc).toBe(grpc);
    }
  });

  it('resolves tokenFile and TLS files against the config file directory', () => {
    const config = validateConfig(
      { registry: { type: 'consul', consul: { tokenFile: 'token', tls: { ca: 'ca.pem' } } } },
      'm.yaml',
      '/etc/meshlet',
    );
    if (config.registry.type !== 'consul') throw new Error('consul expected');
    expect(config.registry.consul.tokenFile).toBe('/etc/meshlet/token');
    expect(config.registry.consul.tls?.ca).toBe('/etc/meshlet/ca.pem');
  });
});
