// A save of the endpoints file that leaves its text as last applied is not parsed again; a changed one still applies.
import { writeFileSync } from 'node:fs';
import { expect, it } from 'vitest';
import { startMeshlet, writeConfig } from '../helpers/meshlet.ts';
import { metricValue } from '../helpers/metrics.ts';
import { adminGet, within } from '../consul/consul-helpers.ts';

const RELOADS = 'meshlet_config_reloads_total';

it(
  'an identical rewrite is counted ok but not parsed or applied; a changed file applies; restoring the applied text after a refused save clears the error',
  { timeout: 20_000 },
  async () => {
    const text = 'users:\n  - "127.0.0.1:20001"\n  - "127.0.0.1:20002"\n';
    const file = writeConfig(text, 'endpoints.yaml');
    const mesh = await startMeshlet({
      registry: { type: 'static', file },
      accessLog: { enabled: false },
      shutdown: { drainDelay: 0 },
    });
    const reloaded = () => mesh.logs.filter((l) => l.msg === 'endpoints file reloaded').length;
    const count = (result: string) => metricValue(mesh.admin, RELOADS, { source: 'endpoints_file', result });
    const registryError = async () =>
      (await adminGet<{ registry: { lastError: unknown } }>(mesh.admin, '/upstreams')).body.registry
        .lastError;
    try {
      const users = mesh.daemon.table.get('users')!;
      const handles = users.endpoints;
      expect(handles).toHaveLength(2);

      // The same bytes again, three times: each save is seen (counted ok), none is parsed.
      for (let i = 1; i <= 3; i++) {
        const before = await count('ok');
        writeFileSync(file, text);
        await within(3000, async () => (await count('ok')) > before, `identical save ${i} seen`);
      }
      expect(reloaded()).toBe(0);
      expect(users.endpoints).toBe(handles);

      // A changed file applies: parsed, logged, endpoints updated.
      const changed = `${text}  - "127.0.0.1:20003"\n`;
      writeFileSync(file, changed);
      await within(3000, () => users.endpoints.length === 3, 'changed file applied');
      expect(reloaded()).toBe(1);
      expect(users.endpoints.slice(0, 2)).toEqual(handles);

      // A refused save keeps the endpoints; writing back the applied text clears the error, unparsed.
      writeFileSync(file, 'users: [');
      await within(3000, async () => (await count('failed')) >= 1, 'broken save refused');
      expect(await registryError()).toEqual(expect.any(String));
      const okBefore = await count('ok');
      writeFileSync(file, changed);
      await within(3000, async () => (await count('ok')) > okBefore, 'restored save seen');
      expect(reloaded()).toBe(1);
      expect(await registryError()).toBeNull();
      expect(users.endpoints).toHaveLength(3);
    } finally {
      await mesh.close();
    }
  },
);
