// `meshlet services`: the upstreams a running meshlet knows, with healthy/total endpoints.
import { AdminUnreachable, readAdmin, table, type UpstreamsAnswer } from './admin-client.ts';
import { EXIT } from './exit-codes.ts';

/** Where an upstream came from: `configured` or `on_demand` (Consul), `static` otherwise. */
function sourceOf(answer: UpstreamsAnswer, name: string): string {
  return answer.registry.watches?.[name]?.kind ?? answer.registry.type;
}

/**
 * Prints every upstream with healthy/total endpoints, balancer and source (a table, or JSON with
 * `--json`). Exit 0 when every upstream has a healthy endpoint, 1 when one has none or the admin
 * API cannot be read.
 */
export async function servicesCommand(admin: string, json: boolean): Promise<number> {
  let answer: UpstreamsAnswer;
  try {
    answer = (await readAdmin<UpstreamsAnswer>(admin, '/upstreams', ['registry', 'upstreams'])).body;
  } catch (err) {
    if (!(err instanceof AdminUnreachable)) throw err;
    process.stderr.write(`meshlet: ${err.message}\n`);
    return EXIT.runtime;
  }
  const names = Object.keys(answer.upstreams).sort();
  const empty = names.filter((n) => answer.upstreams[n]!.healthy === 0);
  if (json) {
    const upstreams = names.map((name) => {
      const u = answer.upstreams[name]!;
      return {
        name,
        healthy: u.healthy,
        total: u.total,
        synced: u.synced,
        loadBalancer: u.loadBalancer,
        source: sourceOf(answer, name),
        endpoints: u.endpoints.map((e) => ({
          id: e.id,
          state: e.state,
          weight: e.weight,
          transport: e.transport,
        })),
      };
    });
    process.stdout.write(`${JSON.stringify({ registry: answer.registry.type, upstreams }, null, 2)}\n`);
  } else {
    const rows = [['UPSTREAM', 'HEALTHY/TOTAL', 'BALANCER', 'SOURCE', 'ENDPOINTS']];
    for (const name of names) {
      const u = answer.upstreams[name]!;
      const endpoints = u.endpoints
        .map((e) => (e.state === 'healthy' ? e.id : `${e.id} (${e.state})`))
        .join(', ');
      rows.push([
        name,
        `${u.healthy}/${u.total}${u.synced ? '' : ' (not synced)'}`,
        u.loadBalancer,
        sourceOf(answer, name),
        endpoints === '' ? '-' : endpoints,
      ]);
    }
    process.stdout.write(`${names.length === 0 ? 'no upstreams' : table(rows)}\n`);
  }
  return empty.length === 0 ? EXIT.ok : EXIT.runtime;
}
