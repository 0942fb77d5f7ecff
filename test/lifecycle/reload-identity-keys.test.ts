// A reload that changes `service`, `tls` or `metrics.consulUi`, which only a restart applies, names them (partial, notApplied, metric) instead of claiming "ok".
import { writeFileSync } from 'node:fs';
import { Writable } from 'node:stream';
import { request } from 'undici';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { stringify } from 'yaml';
import { validateConfig } from '../../src/config/load-config.ts';
import type { ConfigInput } from '../../src/config/schema.ts';
import { Daemon } from '../../src/daemon.ts';
import { createLogger } from '../../src/telemetry/logger.ts';
import { type InProcessMeshlet, startMeshlet, writeConfig } from '../helpers/meshlet.ts';
import { startUpstream, type TestUpstream } from '../helpers/upstream-server.ts';
import { makePki, peerEndpoint, type TestPki, tlsFilesConfig } from '../tls/tls-helpers.ts';

const WARNING = 'listener changes need a restart; other changes applied';

let pki: TestPki;
let oldApp: TestUpstream;
let newApp: TestUpstream;

beforeAll(async () => {
  pki = await makePki();
  oldApp = await startUpstream();
  newApp = await startUpstream();
});
afterAll(async () => {
  await oldApp?.close();
  await newApp?.close();
});

/** A daemon on `input`'s file, with its log lines parsed. */
async function startOnFile(input: ConfigInput) {
  const file = writeConfig(input);
  const logs: Record<string, unknown>[] = [];
  const sink = new Writable({
    write(chunk, _enc, cb) {
      for (const line of String(chunk).split('\n')) if (line !== '') logs.push(JSON.parse(line));
      cb();
    },
  });
  const daemon = await Daemon.start(validateConfig(input), {
    logger: createLogger('info', sink),
    configFile: file,
    processMetrics: false,
  });
  const admin = `http://127.0.0.1:${daemon.addresses().admin.port}`;
  /** Writes `next` over the file, reloads, and resolves with what the reload reported. */
  const reloadWith = async (next: ConfigInput) => {
    writeFileSync(file, stringify(next));
    expect(await daemon.reload()).toBe(true);
    const doc = (await (await request(`${admin}/config`)).body.json()) as {
      lastReload: { result: string; notApplied?: string[] };
    };
    const reloaded = logs.filter((l) => l.msg === 'config reloaded').at(-1);
    const warned = logs.filter((l) => l.msg === WARNING).at(-1)?.keys as string[] | undefined;
    const metrics = await (await request(`${admin}/metrics`)).body.text();
    return { lastReload: doc.lastReload, reloaded, warned, metrics };
  };
  return { daemon, reloadWith };
}

const ports = { outbound: { port: 0 }, admin: { port: 0 }, adminGrpc: { enabled: false } };

describe('a reload that changes what only a restart applies (service, tls, metrics.consulUi)', () => {
  it('a new service.port is named: the inbound listener still sends to the old port, and says so', async () => {
    const tls = await tlsFilesConfig(pki, 'orders');
    const input = (appPort: number): ConfigInput => ({
      service: { name: 'orders', port: appPort },
      listeners: { ...ports, inbound: { address: '127.0.0.1', port: 0 } },
      tls,
      accessLog: { enabled: false },
      shutdown: { drainDelay: 0 },
    });
    const b = await startOnFile(input(oldApp.port));
    let a: InProcessMeshlet | undefined;
    try {
      a = await startMeshlet({
        tls: await tlsFilesConfig(pki, 'web'),
        registry: { type: 'static', endpoints: { orders: [peerEndpoint(b)] } },
        accessLog: { enabled: false },
      });
      const outcome = await b.reloadWith(input(newApp.port));
      // What a restart would change is still the running one: the request reaches the old app.
      const res = await request(`${a.outbound}/x`, { headers: { host: 'orders' } });
      expect(res.statusCode).toBe(200);
      expect(((await res.body.json()) as { port: number }).port).toBe(oldApp.port);
      expect(outcome.lastReload.result).toBe('partial');
      expect(outcome.lastReload.notApplied).toEqual(['service.port']);
      expect(outcome.reloaded).toMatchObject({ result: 'partial', notApplied: ['service.port'] });
      expect(outcome.warned).toEqual(['service.port']);
      expect(outcome.metrics).toMatch(/^meshlet_config_keys_not_applied_total\{key="service\.port"\} 1$/m);
      expect(outcome.metrics).toMatch(
        /^meshlet_config_reloads_total\{source="config",result="partial"\} 1$/m,
      );
    } finally {
      await a?.close();
      await b.daemon.shutdown('test');
    }
  });

  it('new tls files, a tls block added, service tags and metrics.consulUi are named; a reload that changes none of them is ok', async () => {
    const tls = await tlsFilesConfig(pki, 'orders');
    const other = await pki.write('orders-v2');
    const base: ConfigInput = {
      service: { name: 'orders', port: oldApp.port, tags: ['v1'] },
      listeners: { ...ports, inbound: { address: '127.0.0.1', port: 0 } },
      tls,
      accessLog: { enabled: false },
      shutdown: { drainDelay: 0 },
    };
    const b = await startOnFile(base);
    try {
      // The same config again (and a reload that changes what a reload applies) is ok.
      const same = await b.reloadWith({
        ...base,
        routes: [{ match: { pathPrefix: '/o/' }, upstream: 'orders' }],
      });
      expect(same.lastReload).toEqual(expect.objectContaining({ result: 'ok' }));
      expect(same.lastReload.notApplied).toBeUndefined();

      // Each reload below adds the key it names to those named before (compared with the running config).
      const moved = { ...base, tls: { ...tls, cert: other.cert, key: other.key } };
      const files = await b.reloadWith(moved);
      expect(files.lastReload.result).toBe('partial');
      expect(files.lastReload.notApplied).toEqual(['tls.cert', 'tls.key']);

      const retagged = { ...moved, service: { name: 'orders', port: oldApp.port, tags: ['v2'] } };
      const tags = await b.reloadWith(retagged);
      expect(tags.lastReload.notApplied).toEqual(['service.tags', 'tls.cert', 'tls.key']);

      const ui = await b.reloadWith({ ...retagged, metrics: { consulUi: false } });
      expect(ui.lastReload.notApplied).toEqual(['metrics.consulUi', 'service.tags', 'tls.cert', 'tls.key']);
      expect(ui.metrics).toMatch(/^meshlet_config_reloads_total\{source="config",result="partial"\} 3$/m);
    } finally {
      await b.daemon.shutdown('test');
    }

    // A tls block that appears in a reload starts no inbound listener and no identity: named too.
    const plain = await startOnFile({ listeners: ports, accessLog: { enabled: false } });
    try {
      const added = await plain.reloadWith({
        listeners: ports,
        accessLog: { enabled: false },
        tls,
      });
      expect(added.lastReload.result).toBe('partial');
      expect(added.lastReload.notApplied).toEqual(
        expect.arrayContaining(['tls.ca', 'tls.cert', 'tls.key', 'tls.source']),
      );
      expect(added.metrics).toMatch(/^meshlet_config_keys_not_applied_total\{key="tls\.cert"\} 1$/m);
    } finally {
      await plain.daemon.shutdown('test');
    }
  });
});
