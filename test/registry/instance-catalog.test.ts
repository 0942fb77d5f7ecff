// InstanceCatalog: a malformed value is logged and counted once while it stays, again when it changes.
import { Writable } from 'node:stream';
import { Registry } from 'prom-client';
import { describe, expect, it } from 'vitest';
import { InstanceCatalog } from '../../src/registry/kv/instance-catalog.ts';
import { RegistryMetrics } from '../../src/registry/kv/registry-metrics.ts';
import { createLogger } from '../../src/telemetry/logger.ts';

describe('InstanceCatalog malformed values', () => {
  it('are logged and counted once per distinct value of a key, across watch puts and resyncs', async () => {
    const lines: Record<string, unknown>[] = [];
    const sink = new Writable({
      write(chunk, _enc, cb) {
        for (const l of String(chunk).split('\n')) if (l !== '') lines.push(JSON.parse(l));
        cb();
      },
    });
    const registry = new Registry();
    const metrics = new RegistryMetrics('etcd', registry, true);
    const parseKey = (k: string): { service: string; id: string } => {
      const [service = '', id = ''] = k.split('/');
      return { service, id };
    };
    const catalog = new InstanceCatalog(parseKey, metrics, createLogger('info', sink));
    const good = JSON.stringify({ address: '127.0.0.1', port: 9000 });
    catalog.put('users/a', good);
    catalog.put('users/b', 'not json');
    catalog.put('users/b', 'not json');
    catalog.replaceAll([
      ['users/a', good],
      ['users/b', 'not json'],
    ]);
    catalog.refuse('users/c', 'WRONGTYPE', 'not a string key');
    catalog.refuse('users/c', 'WRONGTYPE', 'not a string key');
    const count = async (): Promise<number> =>
      (await registry.getSingleMetric('meshlet_registry_etcd_invalid_records_total')!.get()).values[0]!.value;
    expect(await count()).toBe(2);
    catalog.put('users/b', '{"port": 1}');
    expect(await count()).toBe(3);
    await new Promise((r) => setImmediate(r));
    const warned = lines.filter((l) => l.msg === 'skipping a malformed registry record');
    expect(warned.map((l) => [l.registryKey, l.reason])).toEqual([
      ['users/b', 'not JSON'],
      ['users/c', 'not a string key'],
      ['users/b', 'address: expected a non-empty string'],
    ]);
    expect(catalog.endpoints('users').map((e) => e.id)).toEqual(['127.0.0.1:9000']);
  });
});
