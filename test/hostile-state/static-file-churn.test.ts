// Many edits of the static registry's endpoints file leave no handle, pool, timer or series behind (regression guard).
import { renameSync, writeFileSync } from 'node:fs';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { expect, it } from 'vitest';
import { startMeshlet, writeConfig } from '../helpers/meshlet.ts';
import { samplesMatching } from '../helpers/metrics.ts';
import { within } from '../consul/consul-helpers.ts';

setFlagsFromString('--expose-gc');
const gc = runInNewContext('gc') as () => void;

const UPSTREAMS = 20;
const PER_UPSTREAM = 5;
const EDITS = 15;

/** The endpoints file of edit `edit`: every endpoint on a port of its own to this edit (nothing is dialled). */
function endpointsYaml(edit: number): string {
  let text = '';
  for (let u = 0; u < UPSTREAMS; u++) {
    text += `up${u}:\n`;
    for (let e = 0; e < PER_UPSTREAM; e++) text += `  - "127.0.${u}.${e + 1}:${20_000 + edit * 10 + e}"\n`;
  }
  return text;
}

it(
  'endpoints file churn: endpoints that left the file keep no handle or pool; the series stay as many',
  { timeout: 30_000 },
  async () => {
    const file = writeConfig(endpointsYaml(0), 'endpoints.yaml');
    const mesh = await startMeshlet({
      registry: { type: 'static', file },
      accessLog: { enabled: false },
      shutdown: { drainDelay: 0 },
    });
    const { table } = mesh.daemon;
    const first = (edit: number) => 20_000 + edit * 10;
    /** Whether every upstream holds edit `edit`'s endpoints. */
    const applied = (edit: number) =>
      [...Array(UPSTREAMS).keys()].every((u) => {
        const handles = table.get(`up${u}`)?.endpoints ?? [];
        return handles.length === PER_UPSTREAM && handles[0]!.endpoint.port === first(edit);
      });
    const refs: WeakRef<object>[] = [];
    try {
      await within(3000, () => applied(0), 'first file applied');
      const series = (await samplesMatching(mesh.admin)).length;
      for (let edit = 1; edit <= EDITS; edit++) {
        for (let u = 0; u < UPSTREAMS; u++) {
          const upstream = table.get(`up${u}`)!;
          for (const h of upstream.endpoints) {
            refs.push(new WeakRef(h));
            const pool = upstream.poolOf(h);
            if (pool !== undefined) refs.push(new WeakRef(pool));
          }
        }
        // Written aside and renamed over, as editors and config managers do.
        writeFileSync(`${file}.tmp`, endpointsYaml(edit));
        renameSync(`${file}.tmp`, file);
        await within(3000, () => applied(edit), `edit ${edit} applied`);
      }
      // An unchanged rewrite keeps the handles (and their pools): no new pool per save.
      const kept = table.get('up0')!.endpoints;
      writeFileSync(file, endpointsYaml(EDITS));
      const reloads = 'meshlet_config_reloads_total{source="endpoints_file",result="ok"}';
      const okBefore = (await samplesMatching(mesh.admin)).find((l) => l.startsWith(reloads));
      await within(
        3000,
        async () => (await samplesMatching(mesh.admin)).find((l) => l.startsWith(reloads)) !== okBefore,
        'unchanged rewrite reloaded',
      );
      expect(table.get('up0')!.endpoints).toEqual(kept);
      expect(table.get('up0')!.endpoints.every((h, i) => h === kept[i])).toBe(true);
      // Handles and pools of endpoints that left become garbage. Polled: a pool's close settles a few ticks later.
      const aliveNow = (): number => {
        gc();
        return refs.filter((w) => w.deref() !== undefined).length;
      };
      await within(5000, () => aliveNow() <= UPSTREAMS, 'departed handles and pools collected');
      // 15 edits × 20 upstreams × 5 endpoints: 1,500 handles and their pools.
      expect(refs.length).toBe(2 * EDITS * UPSTREAMS * PER_UPSTREAM);
      // At most a last one per upstream (V8 may keep the last object a call site saw): never growing with edits.
      expect(aliveNow()).toBeLessThanOrEqual(UPSTREAMS);
      expect((await samplesMatching(mesh.admin)).length - series).toBeLessThanOrEqual(2);
    } finally {
      await mesh.close();
    }
  },
);
