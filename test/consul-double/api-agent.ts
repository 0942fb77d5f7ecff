// Routes under /v1/agent: local services and checks, TTL updates, agent self and members.
import { createHash } from 'node:crypto';
import { CONSUL_VERSION } from './agent.ts';
import { parseWait } from './blocking.ts';
import { type Ctx, jsonBody, requireMethod, sendJson, sendText } from './http-util.ts';
import {
  type CheckRecord,
  emptyDefinition,
  HEALTH_STATUSES,
  type HealthStatus,
  renderAgentService,
  renderCheck,
} from './model.ts';
import { decodeCheck, decodeCheckUpdate, decodeService, HttpError } from './register.ts';
import { uuidFrom } from './store.ts';

const FILTERED = { 'X-Consul-Results-Filtered-By-ACLs': 'true' };

function hashOf(value: unknown): string {
  return createHash('sha256').update(JSON.stringify(value)).digest('hex').slice(0, 16);
}

/** Aggregated status of checks: critical beats warning beats passing; maintenance counts as critical. */
export function aggregate(checks: readonly CheckRecord[]): HealthStatus {
  let worst: HealthStatus = 'passing';
  for (const c of checks) {
    if (c.status === 'critical') return 'critical';
    if (c.status === 'warning') worst = 'warning';
  }
  return worst;
}

/** Handles `/v1/agent/...`; returns false when the path is not an agent route. */
export async function agentRoutes(ctx: Ctx): Promise<boolean> {
  const { agent, path } = ctx;
  const node = agent.identity.nodeName;
  const dc = agent.identity.datacenter;
  const rest = path.slice('/v1/agent/'.length);
  const [head, ...tail] = rest.split('/');
  const arg = tail.join('/');

  if (rest === 'self') {
    requireMethod(ctx, 'GET');
    ctx.auth().require('agent', 'read', node);
    const n = agent.store.nodes.get(node);
    sendJson(ctx, 200, {
      Config: {
        Datacenter: dc,
        PrimaryDatacenter: dc,
        NodeName: node,
        NodeID: n?.id ?? uuidFrom(`node:${node}`),
        Revision: 'consul-double',
        Server: true,
        Version: CONSUL_VERSION,
        BuildDate: '2025-01-01T00:00:00Z',
      },
      Member: member(ctx),
      Meta: { ...(n?.meta ?? {}) },
    });
    return true;
  }
  if (rest === 'members') {
    requireMethod(ctx, 'GET');
    sendJson(ctx, 200, ctx.auth().canRead() ? [member(ctx)] : []);
    return true;
  }
  if (rest === 'services') {
    requireMethod(ctx, 'GET');
    const out: Record<string, unknown> = {};
    const readable = ctx.auth().canRead();
    let filtered = false;
    for (const s of agent.store.services.values()) {
      if (s.node !== node || !s.local) continue;
      if (!readable) filtered = true;
      else out[s.id] = renderAgentService(s, dc);
    }
    sendJson(ctx, 200, out, filtered ? FILTERED : {});
    return true;
  }
  if (rest === 'checks') {
    requireMethod(ctx, 'GET');
    const out: Record<string, unknown> = {};
    const readable = ctx.auth().canRead();
    let filtered = false;
    for (const c of agent.store.checks.values()) {
      if (c.node !== node || !c.local) continue;
      if (!readable) filtered = true;
      else out[c.checkId] = renderCheck(c);
    }
    sendJson(ctx, 200, out, filtered ? FILTERED : {});
    return true;
  }
  if (head === 'service' && arg === 'register') {
    requireMethod(ctx, 'PUT');
    const spec = decodeService(jsonBody(ctx));
    ctx.auth().require('service', 'write', spec.name);
    const replace = ctx.query.get('replace-existing-checks');
    agent.registerService(spec, replace !== null && replace !== 'false' && replace !== '0');
    sendText(ctx.res, 200, '');
    return true;
  }
  if (head === 'service' && tail[0] === 'deregister' && tail.length > 1) {
    requireMethod(ctx, 'PUT');
    const id = tail.slice(1).join('/');
    const svc = agent.store.getService(node, id);
    if (svc === undefined || !svc.local) {
      throw new HttpError(
        404,
        `Unknown service ID ${JSON.stringify(id)}. Ensure that the service ID is passed, not the service name.`,
      );
    }
    ctx.auth().require('service', 'write', svc.name);
    agent.deregisterService(id);
    sendText(ctx.res, 200, '');
    return true;
  }
  if (head === 'service' && tail[0] === 'maintenance' && tail.length > 1) {
    requireMethod(ctx, 'PUT');
    maintenance(ctx, tail.slice(1).join('/'));
    return true;
  }
  if (head === 'service' && arg !== '') {
    requireMethod(ctx, 'GET');
    await agentService(ctx, arg);
    return true;
  }
  if (head === 'check') {
    await checkRoutes(ctx, tail);
    return true;
  }
  if (
    head === 'health' &&
    tail[0] === 'service' &&
    (tail[1] === 'id' || tail[1] === 'name') &&
    tail.length > 2
  ) {
    requireMethod(ctx, 'GET');
    localHealth(ctx, tail[1], tail.slice(2).join('/'));
    return true;
  }
  return false;
}

function member(ctx: Ctx): Record<string, unknown> {
  const { agent } = ctx;
  const n = agent.store.nodes.get(agent.identity.nodeName);
  return {
    Name: agent.identity.nodeName,
    Addr: agent.identity.address,
    Port: 8301,
    Tags: {
      dc: agent.identity.datacenter,
      id: n?.id ?? '',
      port: '8300',
      role: 'consul',
      vsn: '2',
      build: `${CONSUL_VERSION}:consul-double`,
    },
    Status: 1,
    ProtocolMin: 1,
    ProtocolMax: 5,
    ProtocolCur: 2,
    DelegateMin: 2,
    DelegateMax: 5,
    DelegateCur: 4,
  };
}

/** `GET /v1/agent/service/:id`, with hash-based blocking (`?hash=&wait=`). */
async function agentService(ctx: Ctx, id: string): Promise<void> {
  const { agent } = ctx;
  const node = agent.identity.nodeName;
  const render = (): Record<string, unknown> | undefined => {
    const s = agent.store.getService(node, id);
    if (s === undefined || !s.local) return undefined;
    const body = renderAgentService(s, agent.identity.datacenter);
    return { ...body, ContentHash: hashOf(body) };
  };
  let out = render();
  if (out === undefined) throw new HttpError(404, `unknown service ID: ${id}`);
  ctx.auth().require('service', 'read', out.Service as string);
  const hash = ctx.query.get('hash');
  if (hash !== null && hash !== '' && hash === out.ContentHash) {
    const { waitMs } = parseWait(ctx.query);
    // Hash-based blocking: re-render on any write until the hash changes.
    await new Promise<void>((resolve) => {
      let done = false;
      const finish = (): void => {
        if (done) return;
        done = true;
        clearTimeout(timer);
        unwatch();
        resolve();
      };
      const timer = setTimeout(finish, waitMs);
      const unwatch = agent.store.watch(
        () => true,
        (abandoned) => {
          const now = render();
          if (abandoned || now === undefined || now.ContentHash !== hash) finish();
        },
      );
      void ctx.blocking.cancelled.then(finish);
    });
    const now = render();
    if (now === undefined) throw new HttpError(404, `unknown service ID: ${id}`);
    out = now;
  }
  sendJson(ctx, 200, out, { 'X-Consul-ContentHash': out.ContentHash as string });
}

/** `PUT /v1/agent/service/maintenance/:id?enable=true|false&reason=`. */
function maintenance(ctx: Ctx, id: string): void {
  const { agent } = ctx;
  const node = agent.identity.nodeName;
  const enable = ctx.query.get('enable');
  if (enable === null) throw new HttpError(400, 'Missing value for enable');
  if (enable !== 'true' && enable !== 'false')
    throw new HttpError(400, `Invalid value for enable: "${enable}"`);
  const svc = agent.store.getService(node, id);
  if (svc === undefined || !svc.local) throw new HttpError(404, `Unknown service ID: ${JSON.stringify(id)}`);
  ctx.auth().require('service', 'write', svc.name);
  const checkId = `_service_maintenance:${id}`;
  if (enable === 'true') {
    const reason = ctx.query.get('reason') ?? '';
    agent.store.write(() =>
      agent.store.putCheck({
        node,
        local: true,
        checkId,
        name: 'Service Maintenance Mode',
        status: 'critical',
        notes:
          reason !== ''
            ? reason
            : 'Maintenance mode is enabled for this service, but no reason was provided. This is a default message.',
        output: '',
        serviceId: id,
        serviceName: svc.name,
        serviceTags: [...svc.tags],
        type: 'maintenance',
        definition: emptyDefinition(),
      }),
    );
  } else if (agent.store.getCheck(node, checkId) !== undefined) {
    agent.store.write(() => agent.store.deleteCheck(node, checkId));
  }
  sendText(ctx.res, 200, '');
}

/** `/v1/agent/check/...`: register, deregister, pass, warn, fail, update. */
async function checkRoutes(ctx: Ctx, tail: string[]): Promise<void> {
  const { agent } = ctx;
  const [verb, ...idParts] = tail;
  const id = idParts.join('/');
  const authCheck = (c: CheckRecord): void => {
    if (c.serviceName !== '') ctx.auth().require('service', 'write', c.serviceName);
    else ctx.auth().require('node', 'write', c.node);
  };
  switch (verb) {
    case 'register': {
      requireMethod(ctx, 'PUT');
      const spec = decodeCheck(jsonBody(ctx), true);
      const svc =
        spec.serviceId === '' ? undefined : agent.store.getService(agent.identity.nodeName, spec.serviceId);
      if (svc !== undefined) ctx.auth().require('service', 'write', svc.name);
      else ctx.auth().require('node', 'write', agent.identity.nodeName);
      agent.registerCheck(spec);
      sendText(ctx.res, 200, '');
      return;
    }
    case 'deregister': {
      requireMethod(ctx, 'PUT');
      authCheck(agent.localCheck(id));
      agent.deregisterCheck(id);
      sendText(ctx.res, 200, '');
      return;
    }
    case 'pass':
    case 'warn':
    case 'fail': {
      requireMethod(ctx, 'PUT');
      authCheck(agent.localCheck(id));
      const status: HealthStatus = verb === 'pass' ? 'passing' : verb === 'warn' ? 'warning' : 'critical';
      agent.updateTtlCheck(id, status, ctx.query.get('note') ?? '');
      sendText(ctx.res, 200, '');
      return;
    }
    case 'update': {
      requireMethod(ctx, 'PUT');
      const update = decodeCheckUpdate(jsonBody(ctx));
      if (!HEALTH_STATUSES.includes(update.status as HealthStatus)) {
        throw new HttpError(400, `Invalid check status: '${update.status}'`);
      }
      authCheck(agent.localCheck(id));
      agent.updateTtlCheck(id, update.status as HealthStatus, update.output);
      sendText(ctx.res, 200, '');
      return;
    }
    default:
      throw new HttpError(404, '404 page not found\n');
  }
}

/** `/v1/agent/health/service/id/:id` and `/name/:name`: 200 passing, 429 warning, 503 critical. */
function localHealth(ctx: Ctx, by: string, key: string): void {
  const { agent } = ctx;
  const node = agent.identity.nodeName;
  const services = [...agent.store.services.values()].filter(
    (s) => s.node === node && s.local && (by === 'id' ? s.id === key : s.name === key),
  );
  if (services.length === 0) {
    const what = by === 'id' ? `ServiceId ${key}` : `ServiceName ${key}`;
    if (ctx.query.get('format') === 'text') sendText(ctx.res, 404, `${what} not found`);
    else sendText(ctx.res, 404, `${what} not found`);
    return;
  }
  for (const s of services) ctx.auth().require('service', 'read', s.name);
  const entries = services.map((s) => {
    const checks = [...agent.store.checks.values()].filter((c) => c.node === node && c.serviceId === s.id);
    return {
      AggregatedStatus: aggregate(checks),
      Service: renderAgentService(s, agent.identity.datacenter),
      Checks: checks.map(renderCheck),
    };
  });
  const worst = aggregate(entries.map((e) => ({ status: e.AggregatedStatus }) as CheckRecord));
  const code = worst === 'passing' ? 200 : worst === 'warning' ? 429 : 503;
  if (ctx.query.get('format') === 'text') {
    sendText(ctx.res, code, worst);
    return;
  }
  sendJson(ctx, code, by === 'id' ? entries[0] : entries);
}
