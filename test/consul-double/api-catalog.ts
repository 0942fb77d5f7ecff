// Routes under /v1/health, /v1/catalog and /v1/status: blocking reads of the catalog.
import { blockingQuery, parseWait, type QueryResult } from './blocking.ts';
import { type Ctx, checkDatacenter, queryHeaders, requireMethod, sendJson } from './http-util.ts';
import {
  type CheckRecord,
  renderCatalogService,
  renderCheck,
  renderNode,
  renderNodeService,
  type ServiceRecord,
} from './model.ts';
import { HttpError } from './register.ts';
import type { Store, Topic } from './store.ts';

const FILTERED = { 'X-Consul-Results-Filtered-By-ACLs': 'true' };

/** `?tag=` (all must match) and `?node-meta=k:v` (all must match) filters. */
function instanceFilter(ctx: Ctx): (s: ServiceRecord) => boolean {
  const tags = ctx.query.getAll('tag');
  const nodeMeta = ctx.query.getAll('node-meta').map((p) => {
    const i = p.indexOf(':');
    return i < 0 ? [p, ''] : [p.slice(0, i), p.slice(i + 1)];
  });
  return (s) => {
    if (!tags.every((t) => s.tags.includes(t))) return false;
    if (nodeMeta.length === 0) return true;
    const n = ctx.agent.store.nodes.get(s.node);
    return nodeMeta.every(([k, v]) => n?.meta[k!] === v);
  };
}

/** Runs a blocking read and answers it with Consul's query headers. */
async function answer(
  ctx: Ctx,
  matches: (t: Topic) => boolean,
  run: () => QueryResult<{ body: unknown; filtered: boolean }>,
): Promise<void> {
  const params = parseWait(ctx.query);
  const r = await blockingQuery(ctx.blocking, params, matches, run);
  if (ctx.res.destroyed) return;
  sendJson(ctx, 200, r.value.body, { ...queryHeaders(ctx, r.index), ...(r.value.filtered ? FILTERED : {}) });
}

/** Handles `/v1/health/...`, `/v1/catalog/...` and `/v1/status/...`; false when not one of them. */
export async function catalogRoutes(ctx: Ctx, datacenters: readonly string[]): Promise<boolean> {
  const { agent, path } = ctx;
  const store = agent.store;
  const seg = path.split('/').slice(2); // ['health', 'service', 'web']
  const area = seg[0];
  const verb = seg[1];
  const arg = seg.slice(2).join('/');

  if (area === 'status') {
    requireMethod(ctx, 'GET');
    if (verb === 'leader') sendJson(ctx, 200, `${agent.identity.address}:8300`);
    else if (verb === 'peers') sendJson(ctx, 200, [`${agent.identity.address}:8300`]);
    else return false;
    return true;
  }
  if (area !== 'health' && area !== 'catalog') return false;
  requireMethod(ctx, 'GET');
  checkDatacenter(ctx, datacenters);
  const readable = (): boolean => ctx.auth().canRead();
  readable(); // resolve the token now: unknown tokens get 403 "ACL not found"

  // `/connect/<name>`: the instances that can take Connect traffic for `name` — its connect-proxy
  // registrations (Proxy.DestinationServiceName) and Connect-native instances — as Consul's
  // `Health.ServiceNodes` with `Connect: true` answers. `?tag=` filters the proxies' own tags.
  const connect = verb === 'connect';
  const instancesFor = (name: string): ServiceRecord[] =>
    connect ? connectInstancesOf(store, name) : store.instancesOf(name);
  const indexFor = (name: string, withChecks: boolean): number =>
    connect
      ? Math.max(
          store.serviceQueryIndex(name, withChecks),
          ...connectInstancesOf(store, name).map((s) => store.serviceQueryIndex(s.name, withChecks)),
        )
      : store.serviceQueryIndex(name, withChecks);
  const svcTopic = (t: Topic): boolean => (connect ? t.startsWith('svc:') : t === `svc:${arg}`);

  if (area === 'health' && (verb === 'service' || verb === 'connect') && arg !== '') {
    const keep = instanceFilter(ctx);
    const passingOnly = ctx.query.has('passing') && ctx.query.get('passing') !== 'false';
    await answer(ctx, svcTopic, () => {
      const all = instancesFor(arg).filter(keep);
      const entries = readable() ? all : [];
      const out = entries
        .map((s) => ({ s, checks: store.checksFor(s) }))
        .filter((e) => !passingOnly || e.checks.every((c) => c.status === 'passing'))
        .map(({ s, checks }) => ({
          Node: renderNode(store.nodes.get(s.node)!),
          Service: renderNodeService(s),
          Checks: checks.map(renderCheck),
        }));
      return {
        index: indexFor(arg, true),
        value: { body: out, filtered: entries.length < all.length },
      };
    });
    return true;
  }
  if (area === 'health' && verb === 'checks' && arg !== '') {
    await answer(
      ctx,
      (t) => t === `svc:${arg}`,
      () => {
        const all = [...store.checks.values()].filter((c) => c.serviceName === arg).sort(byCheck);
        const out = readable() ? all : [];
        return {
          index: store.serviceQueryIndex(arg, true),
          value: { body: out.map(renderCheck), filtered: out.length < all.length },
        };
      },
    );
    return true;
  }
  if (area === 'health' && verb === 'state' && arg !== '') {
    if (!['any', 'passing', 'warning', 'critical'].includes(arg))
      throw new HttpError(400, 'Invalid check state');
    await answer(
      ctx,
      (t) => t === 'checks',
      () => {
        const all = [...store.checks.values()].filter((c) => arg === 'any' || c.status === arg).sort(byCheck);
        const out = readable() ? all : [];
        return {
          index: store.tables.checks,
          value: { body: out.map(renderCheck), filtered: out.length < all.length },
        };
      },
    );
    return true;
  }
  if (area === 'health' && verb === 'node' && arg !== '') {
    await answer(
      ctx,
      (t) => t === `node:${arg}`,
      () => {
        const all = [...store.checks.values()].filter((c) => c.node === arg).sort(byCheck);
        const out = readable() ? all : [];
        return {
          index: store.tables.checks,
          value: { body: out.map(renderCheck), filtered: out.length < all.length },
        };
      },
    );
    return true;
  }
  if (area === 'catalog' && verb === 'services' && arg === '') {
    await answer(
      ctx,
      (t) => t === 'services',
      () => {
        const out: Record<string, string[]> = {};
        let filtered = false;
        for (const s of [...store.services.values()].sort((a, b) => a.name.localeCompare(b.name))) {
          if (!readable()) {
            filtered = true;
            continue;
          }
          const tags = out[s.name] ?? [];
          for (const t of s.tags) if (!tags.includes(t)) tags.push(t);
          out[s.name] = tags;
        }
        return { index: store.tables.services, value: { body: out, filtered } };
      },
    );
    return true;
  }
  if (area === 'catalog' && (verb === 'service' || verb === 'connect') && arg !== '') {
    const keep = instanceFilter(ctx);
    await answer(ctx, svcTopic, () => {
      const all = instancesFor(arg).filter(keep);
      const out = readable() ? all : [];
      return {
        index: indexFor(arg, false),
        value: {
          body: out.map((s) => renderCatalogService(s, store.nodes.get(s.node)!)),
          filtered: out.length < all.length,
        },
      };
    });
    return true;
  }
  if (area === 'catalog' && verb === 'nodes' && arg === '') {
    await answer(
      ctx,
      (t) => t === 'nodes',
      () => {
        const all = [...store.nodes.values()].sort((a, b) => a.name.localeCompare(b.name));
        const out = readable() ? all : [];
        return {
          index: store.tables.nodes,
          value: { body: out.map(renderNode), filtered: out.length < all.length },
        };
      },
    );
    return true;
  }
  if (area === 'catalog' && verb === 'datacenters' && arg === '') {
    sendJson(ctx, 200, [...datacenters]);
    return true;
  }
  return false;
}

/** Connect-capable instances of `name`: proxies for it (by node, then ID) and Connect-native instances. */
function connectInstancesOf(store: Store, name: string): ServiceRecord[] {
  return [...store.services.values()]
    .filter((s) =>
      s.kind === 'connect-proxy'
        ? s.proxy?.DestinationServiceName === name
        : s.name === name && s.kind === '' && s.connect?.Native === true,
    )
    .sort((a, b) => a.node.localeCompare(b.node) || a.id.localeCompare(b.id));
}

function byCheck(a: CheckRecord, b: CheckRecord): number {
  return a.node.localeCompare(b.node) || a.checkId.localeCompare(b.checkId);
}
