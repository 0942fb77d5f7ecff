// The whole daemon with mTLS from config: two meshlets over files, /upstreams TLS modes, Consul registration and Connect mode.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { request } from 'undici';
import { ConsulDouble } from '../consul-double/consul-double.ts';
import { consulRegistry, within } from '../consul/consul-helpers.ts';
import { type InProcessMeshlet, startMeshlet } from '../helpers/meshlet.ts';
import { startUpstream, type TestUpstream } from '../helpers/upstream-server.ts';
import { makePki, type TestPki, tlsFilesConfig } from './tls-helpers.ts';

let pki: TestPki;
let ordersApp: TestUpstream;
let plainApp: TestUpstream;

beforeAll(async () => {
  pki = await makePki();
  ordersApp = await startUpstream();
  plainApp = await startUpstream();
});
afterAll(async () => {
  await ordersApp?.close();
  await plainApp?.close();
});

describe('meshlet daemons with tls from files', () => {
  it('web → A → mTLS → B → orders app; /upstreams shows the TLS mode of each endpoint with a reason', async () => {
    let a: InProcessMeshlet | undefined;
    const b = await startMeshlet({
      service: { name: 'orders', port: ordersApp.port },
      listeners: { inbound: { address: '127.0.0.1', port: 0, allow: ['web'] } },
      tls: await tlsFilesConfig(pki, 'orders'),
    });
    try {
      const inboundPort = b.daemon.addresses().inbound!.port;
      a = await startMeshlet({
        tls: await tlsFilesConfig(pki, 'web'),
        registry: {
          type: 'static',
          endpoints: {
            orders: [{ address: '127.0.0.1', port: inboundPort, meta: { meshlet_inbound: 'mtls' } }],
            legacy: [plainApp.endpoint],
          },
        },
      });
      const res = await request(`${a.outbound}/v1/x`, { headers: { host: 'orders' } });
      expect(res.statusCode).toBe(200);
      const body = (await res.body.json()) as { headers: Record<string, string> };
      expect(body.headers['x-meshlet-peer-identity']).toBe('web');
      const legacy = await request(`${a.outbound}/`, { headers: { host: 'legacy' } });
      expect(legacy.statusCode).toBe(200);
      await legacy.body.dump();

      const view = (await (await request(`${a.admin}/upstreams`)).body.json()) as {
        upstreams: Record<string, { endpoints: { tls: string }[] }>;
      };
      expect(view.upstreams.orders!.endpoints[0]!.tls).toBe('mtls');
      expect(view.upstreams.legacy!.endpoints[0]!.tls).toBe('plain (not provided by discovery)');
      const metrics = await (await request(`${b.admin}/metrics`)).body.text();
      expect(metrics).toMatch(
        /meshlet_tls_handshakes_total\{direction="inbound",result="ok",reason=""\} [1-9]/,
      );
      expect(metrics).toMatch(/meshlet_tls_certificate_expiry_timestamp_seconds\{source="files"\} \d{10}/);
      expect(b.logs.some((l) => l.msg === 'tls certificate loaded')).toBe(true);
    } finally {
      await a?.close();
      await b.close();
    }
  });

  it('without tls an endpoint that advertises mTLS is plain with the reason "tls not configured"', async () => {
    const a = await startMeshlet({
      registry: {
        type: 'static',
        endpoints: {
          orders: [{ address: '127.0.0.1', port: plainApp.port, meta: { meshlet_inbound: 'mtls' } }],
        },
      },
    });
    try {
      const view = (await (await request(`${a.admin}/upstreams`)).body.json()) as {
        upstreams: Record<string, { endpoints: { tls: string }[] }>;
      };
      expect(view.upstreams.orders!.endpoints[0]!.tls).toBe('plain (tls not configured)');
    } finally {
      await a.close();
    }
  });
});

describe('meshlet daemons with Consul', () => {
  let consul: ConsulDouble;
  beforeAll(async () => {
    consul = new ConsulDouble({ jitter: false });
    await consul.start();
  });
  afterAll(async () => {
    await consul?.stop();
  });

  it('registers the inbound port with meshlet_inbound: mtls; Connect CA mode end to end, an intention denying web → 403', async () => {
    const b = await startMeshlet({
      service: { name: 'orders', port: ordersApp.port, address: '127.0.0.1' },
      listeners: { inbound: { address: '127.0.0.1', port: 0 } },
      registry: consulRegistry(consul, { check: { interval: '1s', timeout: '500ms' } }),
      tls: { source: 'consul' },
      shutdown: { drainDelay: 0 },
    });
    const a = await startMeshlet({
      service: { name: 'web', port: plainApp.port, address: '127.0.0.1' },
      listeners: { inbound: { address: '127.0.0.1', port: 0 } },
      registry: consulRegistry(consul, { register: false, check: { interval: '1s', timeout: '500ms' } }),
      tls: { source: 'consul' },
      upstreams: { orders: {} },
      shutdown: { drainDelay: 0 },
    });
    try {
      const inboundPort = b.daemon.addresses().inbound!.port;
      await within(5000, () => consul.instances('orders').length === 1, 'orders registered');
      const inst = consul.instances('orders')[0]!;
      expect(inst.port).toBe(inboundPort);
      expect(inst.meta.meshlet_inbound).toBe('mtls');
      expect(b.daemon.tls!.material.cert.serialNumber).toBe(
        (await consul.connect.leaf('orders')).serialNumber,
      );

      await within(
        8000,
        async () => {
          const res = await request(`${a.outbound}/`, { headers: { host: 'orders' } });
          await res.body.dump();
          return res.statusCode === 200;
        },
        'A reaches B over mTLS',
      );
      const last = ordersApp.requests.at(-1)!;
      expect(last.headers['x-meshlet-peer-identity']).toBe('web');

      const rotated = await consul.connect.rotateLeaf('orders');
      await within(5000, () => b.daemon.tls!.material.cert.serialNumber === rotated.serialNumber, 'rotation');

      consul.connect.setIntentions([{ source: 'web', destination: 'orders', action: 'deny' }]);
      await new Promise((r) => setTimeout(r, 1100)); // the authorize cache (1 s)
      const before = ordersApp.requests.length;
      const denied = await request(`${a.outbound}/`, { headers: { host: 'orders' } });
      expect(denied.statusCode).toBe(403);
      expect(denied.headers['x-meshlet-error']).toBe('forbidden');
      await denied.body.dump();
      expect(ordersApp.requests.length).toBe(before);
    } finally {
      consul.connect.setIntentions([]);
      await a.close();
      await b.close();
    }
  });
});
