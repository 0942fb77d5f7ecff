// The watched endpoints file caught mid-write (truncated, empty) or removed: the last good endpoints stay.
import { rmSync, writeFileSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type InProcessMeshlet, startMeshlet, writeConfig } from '../helpers/meshlet.ts';
import { startUpstream, type TestUpstream } from '../helpers/upstream-server.ts';
import { metric, via, within } from '../consul/consul-helpers.ts';

const FAILED = 'meshlet_config_reloads_total{source="endpoints_file",result="failed"}';

describe('static registry: a file caught mid-write', () => {
  let a: TestUpstream;
  let b: TestUpstream;
  let file: string;
  let mesh: InProcessMeshlet;

  beforeAll(async () => {
    [a, b] = await Promise.all([startUpstream(), startUpstream()]);
    file = writeConfig(`users: ["${a.endpoint}"]\n`, 'endpoints.yaml');
    mesh = await startMeshlet({ registry: { type: 'static', file }, accessLog: { enabled: false } });
  });
  afterAll(async () => {
    await mesh?.close();
    await Promise.all([a?.close(), b?.close()]);
  });

  it.each([
    ['an empty', ''],
    ['a comments-only', '\n# endpoints\n   \n'],
  ])(
    '%s file (truncated by a writer, not yet written) is refused; the endpoints stay',
    async (_what, text) => {
      const before = await metric(mesh.admin, FAILED);
      writeFileSync(file, text);
      await within(2000, async () => (await metric(mesh.admin, FAILED)) > before, 'refused');
      for (let i = 0; i < 3; i++) expect(await via(mesh.outbound, 'users')).toBe(String(a.port));
      const refused = mesh.logs.filter(
        (l) => l.msg === 'endpoints file refused; keeping the last good endpoints',
      );
      expect(String(refused.at(-1)?.reason)).toMatch(/the file is empty/);
      // The writer finishes: its content applies.
      writeFileSync(file, `users: ["${b.endpoint}"]\n`);
      await within(2000, async () => (await via(mesh.outbound, 'users')) === String(b.port), 'written');
      writeFileSync(file, `users: ["${a.endpoint}"]\n`);
      await within(2000, async () => (await via(mesh.outbound, 'users')) === String(a.port), 'back to a');
    },
  );

  it('"{}" still removes every upstream of the file; a removed file is refused', async () => {
    const before = await metric(mesh.admin, FAILED);
    rmSync(file);
    await within(2000, async () => (await metric(mesh.admin, FAILED)) > before, 'removal refused');
    expect(await via(mesh.outbound, 'users')).toBe(String(a.port));
    writeFileSync(file, '{}\n');
    await within(
      2000,
      async () => (await via(mesh.outbound, 'users')) === 'status 503',
      'emptied on purpose',
    );
  });
});
