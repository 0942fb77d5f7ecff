// Routes of Consul Connect: CA roots and leaf certificates (blocking queries), authorize, intentions match, control.
import { parseWait } from './blocking.ts';
import { ConnectCa, type Intention } from './connect-ca.ts';
import { type Ctx, jsonBody, requireMethod, sendJson } from './http-util.ts';
import { HttpError } from './register.ts';

/** Handles `/v1/agent/connect/...` and `/v1/connect/intentions/match`; false when not a Connect route. */
export async function connectRoutes(ctx: Ctx, ca: ConnectCa): Promise<boolean> {
  const { path } = ctx;
  if (path === '/v1/agent/connect/ca/roots') {
    requireMethod(ctx, 'GET');
    await ca.ready();
    const { minIndex, waitMs } = parseWait(ctx.query);
    if (minIndex > 0) await ca.wait(() => ca.rootsAnswer().index > minIndex, waitMs, ctx.blocking.cancelled);
    const answer = ca.rootsAnswer();
    sendJson(ctx, 200, answer.value, { 'X-Consul-Index': String(answer.index) });
    return true;
  }
  const leafPrefix = '/v1/agent/connect/ca/leaf/';
  if (path.startsWith(leafPrefix)) {
    requireMethod(ctx, 'GET');
    const service = path.slice(leafPrefix.length);
    if (service === '') throw new HttpError(400, 'Missing service name');
    ctx.auth().require('service', 'write', service);
    const { minIndex, waitMs } = parseWait(ctx.query);
    let leaf = await ca.leaf(service);
    let gone = false;
    void ctx.blocking.cancelled.then(() => {
      gone = true;
    });
    const deadline = Date.now() + waitMs;
    // Block until this service's leaf changes (rotation, root change, or the agent's renewal at 90 %).
    while (minIndex > 0 && leaf.index <= minIndex && !gone && Date.now() < deadline) {
      const seen = ca.index;
      if (ca.holdLeafQueries) {
        await ca.wait(() => false, Math.max(1, deadline - Date.now()), ctx.blocking.cancelled);
        continue;
      }
      const left = Math.min(deadline - Date.now(), renewIn(leaf));
      await ca.wait(() => ca.index > seen, Math.max(1, left), ctx.blocking.cancelled);
      leaf = await ca.leaf(service);
    }
    if (gone || ctx.res.destroyed) return true;
    sendJson(ctx, 200, ConnectCa.leafAnswer(leaf), { 'X-Consul-Index': String(leaf.index) });
    return true;
  }
  if (path === '/v1/agent/connect/authorize') {
    requireMethod(ctx, 'POST');
    const body = jsonBody(ctx) as { Target?: string; ClientCertURI?: string } | undefined;
    if (body?.Target === undefined || body.ClientCertURI === undefined) {
      throw new HttpError(400, 'Target and ClientCertURI are required');
    }
    await ca.ready();
    sendJson(ctx, 200, ca.authorize(body.Target, body.ClientCertURI));
    return true;
  }
  if (path === '/v1/connect/intentions/match') {
    requireMethod(ctx, 'GET');
    const by = ctx.query.get('by');
    const names = ctx.query.getAll('name');
    const out: Record<string, unknown[]> = {};
    for (const name of names) {
      out[name] = ca.intentions
        .filter((i) =>
          by === 'source'
            ? i.source === name || i.source === '*'
            : i.destination === name || i.destination === '*',
        )
        .map((i) => ({ SourceName: i.source, DestinationName: i.destination, Action: i.action }));
    }
    sendJson(ctx, 200, out);
    return true;
  }
  return false;
}

/** Ms until a leaf reaches 90 % of its lifetime (when the agent would renew it). */
function renewIn(leaf: { validAfter: Date; validBefore: Date }): number {
  const life = leaf.validBefore.getTime() - leaf.validAfter.getTime();
  return Math.max(1, leaf.validAfter.getTime() + life * 0.9 - Date.now() + 1);
}

/**
 * `/_double/connect/...` switches: `PUT rotate-leaf/:service`, `PUT rotate-root`,
 * `GET|PUT intentions` (body: `[{source, destination, action}]`), `PUT leaf-ttl?ms=N`,
 * `PUT default-allow?value=true|false`, `PUT hold-leaf-queries?value=true|false`. False when not a Connect control path.
 */
export async function connectControl(ctx: Ctx, ca: ConnectCa): Promise<boolean> {
  const rest = ctx.path.slice('/_double/connect/'.length);
  if (!ctx.path.startsWith('/_double/connect/')) return false;
  if (rest.startsWith('rotate-leaf/')) {
    requireMethod(ctx, 'PUT');
    const leaf = await ca.rotateLeaf(rest.slice('rotate-leaf/'.length));
    sendJson(ctx, 200, ConnectCa.leafAnswer(leaf));
    return true;
  }
  if (rest === 'rotate-root') {
    requireMethod(ctx, 'PUT');
    await ca.rotateRoot();
    sendJson(ctx, 200, ca.rootsAnswer().value);
    return true;
  }
  if (rest === 'intentions') {
    requireMethod(ctx, 'GET', 'PUT');
    if (ctx.method === 'PUT') ca.setIntentions((jsonBody(ctx) as Intention[] | undefined) ?? []);
    sendJson(ctx, 200, ca.intentions);
    return true;
  }
  if (rest === 'leaf-ttl') {
    requireMethod(ctx, 'PUT');
    ca.leafTtlMs = Number(ctx.query.get('ms') ?? ca.leafTtlMs);
    sendJson(ctx, 200, { leafTtlMs: ca.leafTtlMs });
    return true;
  }
  if (rest === 'hold-leaf-queries') {
    requireMethod(ctx, 'PUT');
    ca.holdLeafQueries = ctx.query.get('value') !== 'false';
    sendJson(ctx, 200, { holdLeafQueries: ca.holdLeafQueries });
    return true;
  }
  if (rest === 'default-allow') {
    requireMethod(ctx, 'PUT');
    ca.defaultAllow = ctx.query.get('value') !== 'false';
    sendJson(ctx, 200, { defaultAllow: ca.defaultAllow });
    return true;
  }
  return false;
}
