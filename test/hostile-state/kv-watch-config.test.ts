// The etcd and redis registries' `registry.watch` config: Consul's defaults, and errors that name the key.
import { describe, expect, it } from 'vitest';
import { validateConfig } from '../../src/config/load-config.ts';
import { runCli, writeConfig } from '../helpers/meshlet.ts';

describe.each(['etcd', 'redis'] as const)('registry.type %s: watch', (type) => {
  const bad = (watch: unknown) => () =>
    validateConfig({ registry: { type, watch } }, 'm.yaml', '/etc/meshlet');

  it("fills Consul's defaults: idleTimeout 5 m, maxOnDemand 100", () => {
    const config = validateConfig({ registry: { type } });
    expect(config.registry).toMatchObject({ type, watch: { idleTimeout: 300_000, maxOnDemand: 100 } });
  });

  it('takes durations and counts, 0 included', () => {
    const config = validateConfig({ registry: { type, watch: { idleTimeout: '1m30s', maxOnDemand: 0 } } });
    expect(config.registry).toMatchObject({ watch: { idleTimeout: 90_000, maxOnDemand: 0 } });
  });

  it('names the bad key', () => {
    expect(bad({ maxOnDemand: -1 })).toThrow(/registry\.watch\.maxOnDemand: .*>=0/);
    expect(bad({ maxOnDemand: 1.5 })).toThrow(/registry\.watch\.maxOnDemand: expected int/);
    expect(bad({ maxOnDemand: '100' })).toThrow(/registry\.watch\.maxOnDemand: expected number/);
    expect(bad({ idleTimeout: 'soon' })).toThrow(
      /registry\.watch\.idleTimeout: expected a duration like "250ms", "1s" or "5m", got "soon"/,
    );
    // `wait` is Consul's blocking-query wait: etcd and redis watch without one.
    expect(bad({ wait: '5m' })).toThrow(/registry\.watch\.wait: unknown key/);
    expect(bad({ maxOnDemant: 3 })).toThrow(/registry\.watch\.maxOnDemant: unknown key/);
  });
});

describe('meshlet config check', () => {
  it('names registry.watch.maxOnDemand of a redis registry (exit 2, as any invalid config)', async () => {
    const file = writeConfig({ registry: { type: 'redis', watch: { maxOnDemand: -1 } } } as never);
    const out = await runCli(['config', 'check', file]);
    expect(out.code).toBe(2);
    expect(out.stderr).toMatch(
      /invalid config: .*: registry\.watch\.maxOnDemand: Too small: expected number to be >=0/,
    );
  }, 20_000);
});
