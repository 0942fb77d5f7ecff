// `maxConnections` of the outbound, inbound and gateway listeners: a positive integer or unset; anything else is refused naming the key.
import { describe, expect, it } from 'vitest';
import { validateConfig } from '../../src/config/load-config.ts';
import type { ConfigInput } from '../../src/config/schema.ts';
import { ConfigError } from '../../src/errors/config-error.ts';
import { runCli, writeConfig } from '../helpers/meshlet.ts';

/** A config with `value` as the `maxConnections` of `listener`. */
function withCap(listener: 'outbound' | 'gateway', value: unknown): ConfigInput {
  const listeners =
    listener === 'outbound'
      ? { outbound: { port: 0, maxConnections: value } }
      : { gateway: { port: 0, maxConnections: value } };
  return {
    listeners,
    registry: { endpoints: { users: ['127.0.0.1:9'] } },
    ...(listener === 'gateway'
      ? { gateway: { routes: [{ match: { pathPrefix: '/' }, upstream: 'users' }] } }
      : {}),
  } as ConfigInput;
}

/** The key path validateConfig refuses `input` for, or null when it accepts it. */
function refusedKey(input: unknown): string | null {
  try {
    validateConfig(input);
    return null;
  } catch (err) {
    if (err instanceof ConfigError) return err.keyPath;
    throw err;
  }
}

describe('maxConnections in config', () => {
  it('accepts a positive integer and absence on outbound and gateway', () => {
    for (const listener of ['outbound', 'gateway'] as const) {
      expect(refusedKey(withCap(listener, 1))).toBeNull();
      expect(refusedKey(withCap(listener, 50_000))).toBeNull();
      expect(refusedKey(withCap(listener, undefined))).toBeNull();
    }
    const config = validateConfig(withCap('outbound', 10));
    expect(config.listeners.outbound.maxConnections).toBe(10);
    expect(validateConfig({}).listeners.outbound.maxConnections).toBeUndefined();
    expect(config.defaults.inboundListener.maxConnections).toBeUndefined();
  });

  it('refuses 0, negatives, fractions and strings, naming the key', () => {
    for (const listener of ['outbound', 'gateway'] as const) {
      for (const bad of [0, -1, 1.5, '100', true]) {
        expect(refusedKey(withCap(listener, bad)), `${listener} ${String(bad)}`).toBe(
          `listeners.${listener}.maxConnections`,
        );
      }
    }
  });

  it('`meshlet config check` exits 0 for a cap, and 2 for 0 or a fraction, naming the key', async () => {
    const ok = await runCli(['config', 'check', writeConfig(withCap('outbound', 256))]);
    expect(ok.code, ok.stderr).toBe(0);
    const bad = await runCli([
      'config',
      'check',
      writeConfig('listeners:\n  outbound: { maxConnections: 0 }\n  inbound: { maxConnections: 0 }\n'),
    ]);
    expect(bad.code).toBe(2);
    expect(bad.stderr).toMatch(/listeners\.(outbound|inbound)\.maxConnections/);
    expect(bad.stderr).toContain('expected a positive integer');
    const inbound = await runCli([
      'config',
      'check',
      writeConfig('listeners:\n  inbound: { maxConnections: 2.5 }\n'),
    ]);
    expect(inbound.code).toBe(2);
    expect(inbound.stderr).toContain('listeners.inbound.maxConnections');
  });
});
