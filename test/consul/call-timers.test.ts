// Consul calls that ended leave no time limit behind: a blocking query's 5-minute AbortSignal.timeout kept each answer's signal and timer alive until it fired.
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { queryObjects } from 'node:v8';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ConsulClient } from '../../src/registry/consul/consul-client.ts';
import { ConsulDouble } from '../consul-double/consul-double.ts';

/** Calls made per kind. */
const CALLS = 200;

describe('Consul calls that ended', () => {
  const double = new ConsulDouble();
  let client: ConsulClient;
  beforeAll(async () => {
    await double.start();
    client = new ConsulClient({ address: double.url });
  });
  afterAll(async () => {
    await client?.close();
    await double.stop();
  });

  it('keep no AbortSignal alive: blocking queries (5 min 20 s limit), reads and check updates', async () => {
    const outer = new AbortController();
    // Warm up: connections, lazily loaded modules.
    await client.catalogServices({ index: 0, waitMs: 300_000, signal: outer.signal });
    const before = queryObjects(AbortSignal, { format: 'count' });
    for (let i = 0; i < CALLS; i++) {
      await client.catalogServices({ index: 0, waitMs: 300_000, signal: outer.signal });
      await client.agentDatacenter();
    }
    const after = queryObjects(AbortSignal, { format: 'count' });
    // Before the fix: three or more per round (AbortSignal.timeout, AbortSignal.any), alive until their timers fire.
    expect(after - before).toBeLessThan(CALLS / 4);
  });

  it('still time out with a TimeoutError, and still follow the outer signal', async () => {
    // An agent that accepts and never answers.
    const silent = createServer(() => {});
    await new Promise<void>((r) => silent.listen(0, '127.0.0.1', r));
    const port = (silent.address() as AddressInfo).port;
    const hung = new ConsulClient({ address: `http://127.0.0.1:${port}`, timeoutMs: 200 });
    try {
      const started = performance.now();
      const err = (await hung.agentDatacenter().catch((e: unknown) => e)) as Error;
      expect(err.name).toBe('TimeoutError');
      expect(performance.now() - started).toBeLessThan(5000);
    } finally {
      await hung.close();
      silent.closeAllConnections();
      silent.close();
    }
    const outer = new AbortController();
    outer.abort(new Error('shutting down'));
    await expect(client.catalogServices({ index: 0, waitMs: 1000, signal: outer.signal })).rejects.toThrow(
      'shutting down',
    );
  });
});
