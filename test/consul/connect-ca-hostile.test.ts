// Connect CA answers without X-Consul-Index: the roots and leaf loops block on the last index, at most 10 reads a second.
import { expect, it } from 'vitest';
import { ConsulDouble } from '../consul-double/consul-double.ts';
import { startMeshlet } from '../helpers/meshlet.ts';
import { startUpstream } from '../helpers/upstream-server.ts';
import { consulRegistry } from './consul-helpers.ts';

it('Connect CA answers without X-Consul-Index do not make meshlet spin', async () => {
  const double = new ConsulDouble();
  await double.start();
  const app = await startUpstream();
  const mesh = await startMeshlet({
    service: { name: 'web', port: app.port, address: '127.0.0.1' },
    listeners: { inbound: { address: '127.0.0.1', port: 0 } },
    registry: consulRegistry(double, { serviceId: 'web-1' }),
    tls: { source: 'consul' },
    shutdown: { drainDelay: 0 },
    accessLog: { enabled: false },
  } as never);
  try {
    double.setTampering({ path: '/v1/agent/connect/ca/', index: null });
    double.connect.rotateRoot();
    await new Promise((r) => setTimeout(r, 200));
    double.clearRequests();
    await new Promise((r) => setTimeout(r, 1000));
    const reads = double.requests.filter((q) => q.path.startsWith('/v1/agent/connect/ca/')).length;
    // Two loops (roots, leaf), at most one read per 100 ms each.
    expect(reads).toBeLessThanOrEqual(22);
  } finally {
    double.setTampering(null);
    await mesh.close();
    await double.stop();
    await app.close();
  }
});
