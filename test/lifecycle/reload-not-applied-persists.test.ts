// A key a partial reload named stays named by every later reload until the file is back at the running value (compared with what runs, not the last file).
import { writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { Writable } from 'node:stream';
import { request } from 'undici';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { stringify } from 'yaml';
import { validateConfig } from '../../src/config/load-config.ts';
import type { ConfigInput } from '../../src/config/schema.ts';
import { Daemon } from '../../src/daemon.ts';
import { createLogger } from '../../src/telemetry/logger.ts';
import { writeConfig } from '../helpers/meshlet.ts';
import { startUpstream, type TestUpstream } from '../helpers/upstream-server.ts';

const LISTENER_WARNING = 'listener changes need a restart; other changes applied';
const REGISTRY_WARNING = 'registry changes need a restart; other changes applied';

/** Answers `/slow` after 1.5 s, everything else at once. */
let app: TestUpstream;

beforeAll(async () => {
  app = await startUpstream((req, res) => {
    req.resume();
    const delay = req.url === '/slow' ? 1500 : 0;
    const timer = setTimeout(() => res.end('done'), delay);
    res.on('close', () => clearTimeout(timer));
  });
});
afterAll(async () => {
  await app?.close();
});

/** What one file differs in: the outbound address, a per-upstream port, a registry file, the request timeout. */
interface Knobs {
  address: string;
  upstreamPort?: number;
  registryFile?: string;
  requestTimeout: string;
}

const input = (k: Knobs): ConfigInput => ({
  listeners: {
    outbound: { address: k.address, port: 0 },
    admin: { port: 0 },
    adminGrpc: { enabled: false },
  },
  registry: {
    type: 'static',
    endpoints: { users: [app.endpoint] },
    ...(k.registryFile === undefined ? {} : { file: k.registryFile }),
  },
  upstreams: {
    users: {
      timeouts: { request: k.requestTimeout },
      ...(k.upstreamPort === undefined ? {} : { port: k.upstreamPort }),
    },
  },
  accessLog: { enabled: false },
  shutdown: { drainDelay: 0 },
});

describe('a key not applied by a reload', () => {
  it('is named by every later reload until the file is back at the running value', async () => {
    const running: Knobs = { address: '127.0.0.1', requestTimeout: '5s' };
    const file = writeConfig(input(running));
    const endpointsFile = join(dirname(file), 'endpoints.yaml');
    writeFileSync(endpointsFile, stringify({ users: [app.endpoint] }));
    const logs: Record<string, unknown>[] = [];
    const sink = new Writable({
      write(chunk, _enc, cb) {
        for (const line of String(chunk).split('\n')) if (line !== '') logs.push(JSON.parse(line));
        cb();
      },
    });
    const daemon = await Daemon.start(validateConfig(input(running)), {
      logger: createLogger('info', sink),
      configFile: file,
      processMetrics: false,
    });
    const { outbound, admin } = daemon.addresses();
    const adminUrl = `http://127.0.0.1:${admin.port}`;
    const reloadWith = async (k: Knobs) => {
      writeFileSync(file, stringify(input(k)));
      expect(await daemon.reload()).toBe(true);
      const doc = (await (await request(`${adminUrl}/config`)).body.json()) as {
        lastReload: { result: string; notApplied?: string[] };
        config: { listeners: { outbound: { address: string } } };
      };
      return {
        doc,
        reloaded: logs.filter((l) => l.msg === 'config reloaded').at(-1),
        metrics: await (await request(`${adminUrl}/metrics`)).body.text(),
      };
    };
    const slowStatus = async () => {
      const res = await request(`http://127.0.0.1:${outbound.port}/slow`, { headers: { host: 'users' } });
      await res.body.dump();
      return res.statusCode;
    };
    const moved: Knobs = { ...running, address: '127.0.0.2', upstreamPort: 1, registryFile: endpointsFile };
    const named = ['listeners.outbound.address', 'registry.file', 'upstreams.users.port'];
    try {
      // 1: three keys only a restart applies → partial, each named.
      const first = await reloadWith(moved);
      expect(first.doc.lastReload.result).toBe('partial');
      expect([...(first.doc.lastReload.notApplied ?? [])].sort()).toEqual(named);
      expect(await slowStatus()).toBe(200);

      // 2: only a live key changes (the request timeout): applied, and the three still named.
      const second = await reloadWith({ ...moved, requestTimeout: '200ms' });
      expect(await slowStatus()).toBe(504);
      expect(second.doc.lastReload.result).toBe('partial');
      expect([...(second.doc.lastReload.notApplied ?? [])].sort()).toEqual(named);
      expect(second.reloaded).toMatchObject({ result: 'partial' });
      const warnings = (msg: string) => logs.filter((l) => l.msg === msg);
      expect(warnings(LISTENER_WARNING).at(-1)?.keys).toEqual([
        'listeners.outbound.address',
        'upstreams.users.port',
      ]);
      expect(warnings(REGISTRY_WARNING).at(-1)?.keys).toEqual(['registry.file']);
      for (const key of named) {
        expect(second.metrics).toMatch(
          new RegExp(
            `^meshlet_config_keys_not_applied_total\\{key="${key.replaceAll('.', '\\.')}"\\} 2$`,
            'm',
          ),
        );
      }
      // The outbound listener still runs where it started; /config shows the file.
      expect(second.doc.config.listeners.outbound.address).toBe('127.0.0.2');
      expect(daemon.addresses().outbound).toMatchObject({ address: '127.0.0.1', port: outbound.port });

      // 3: the file back at the running values (the live change kept) → ok, nothing named.
      const warned = logs.filter((l) => l.msg === LISTENER_WARNING || l.msg === REGISTRY_WARNING).length;
      const third = await reloadWith({ ...running, requestTimeout: '200ms' });
      expect(third.doc.lastReload.result).toBe('ok');
      expect(third.doc.lastReload.notApplied).toBeUndefined();
      expect(third.reloaded).toMatchObject({ result: 'ok' });
      expect(logs.filter((l) => l.msg === LISTENER_WARNING || l.msg === REGISTRY_WARNING)).toHaveLength(
        warned,
      );
      expect(third.metrics).toMatch(/^meshlet_config_reloads_total\{source="config",result="ok"\} 1$/m);
      expect(third.metrics).toMatch(/^meshlet_config_reloads_total\{source="config",result="partial"\} 2$/m);
      expect(await slowStatus()).toBe(504);
    } finally {
      await daemon.shutdown('test');
    }
  });
});
