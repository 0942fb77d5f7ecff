// The two halves of a file watch on their own: the poll finds a change no directory event reports, and the watch sees a Kubernetes swap without the poll.
import { mkdtempSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { expect, it } from 'vitest';
import { stringify } from 'yaml';
import { gatewayAuthSpec } from '../../src/config/gateway-schema.ts';
import { upstreamSpec } from '../../src/config/schema.ts';
import { ApiKeyAuthenticator, hashApiKey } from '../../src/gateway/api-key-authenticator.ts';
import { StaticRegistry } from '../../src/registry/static/static-registry.ts';
import { Metrics } from '../../src/telemetry/metrics.ts';
import { UpstreamTable } from '../../src/upstream/upstream-table.ts';
import { within } from '../consul/consul-helpers.ts';
import { captureLogger } from '../tls/tls-helpers.ts';
import { fileSet } from './file-writers.ts';

it(
  'an endpoints file that is a link into another directory, edited there in place: applied by the poll',
  { timeout: 10_000 },
  async () => {
    // /conf/endpoints.yaml → /real/endpoints.yaml: an edit of the target is an event in /real only.
    const real = mkdtempSync(join(tmpdir(), 'meshlet-real-'));
    const conf = mkdtempSync(join(tmpdir(), 'meshlet-conf-'));
    const target = join(real, 'endpoints.yaml');
    writeFileSync(target, 'users: ["127.0.0.1:20001"]\n');
    symlinkSync(target, join(conf, 'endpoints.yaml'));
    const metrics = new Metrics({ processMetrics: false });
    const table = new UpstreamTable(metrics, {}, upstreamSpec.parse({}));
    const registry = new StaticRegistry({
      endpoints: {},
      file: join(conf, 'endpoints.yaml'),
      table,
      metrics,
      logger: captureLogger().logger,
      pollMs: 200,
    });
    await registry.start();
    try {
      const port = () => table.get('users')?.endpoints[0]?.endpoint.port;
      expect(port()).toBe(20001);
      writeFileSync(target, 'users: ["127.0.0.1:20002"]\n');
      await within(2000, () => port() === 20002, 'edit of the link target applied');
    } finally {
      await registry.stop();
      rmSync(real, { recursive: true, force: true });
      rmSync(conf, { recursive: true, force: true });
    }
  },
);

it(
  'an API keys file in a Kubernetes volume: a swap is seen by the watch, with no poll to fall back on',
  { timeout: 10_000 },
  async () => {
    const set = fileSet('kubernetes swap');
    const keys = (key: string) => stringify({ keys: [{ name: key, sha256: hashApiKey(key) }] });
    set.write({ 'api-keys.yaml': keys('key-1') });
    const spec = gatewayAuthSpec.parse({ type: 'apiKey', file: set.path('api-keys.yaml') });
    if (spec.type !== 'apiKey') throw new Error('not an apiKey spec');
    const auth = new ApiKeyAuthenticator('keys', spec, { pollMs: 60_000 });
    try {
      const accepts = (key: string) =>
        auth.authenticate({ headers: { 'x-api-key': key }, bearer: undefined }).kind === 'ok';
      expect(accepts('key-1')).toBe(true);
      set.write({ 'api-keys.yaml': keys('key-2') });
      await within(1000, () => accepts('key-2'), 'swapped-in key accepted');
      expect(accepts('key-1')).toBe(false);
    } finally {
      auth.close();
      set.remove();
    }
  },
);
