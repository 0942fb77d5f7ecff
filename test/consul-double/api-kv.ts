// Routes under /v1/kv: get (raw, recurse, keys), put (flags, cas) and delete (recurse, cas).
import { blockingQuery, parseWait } from './blocking.ts';
import { type Ctx, checkDatacenter, queryHeaders, requireMethod, sendJson, sendText } from './http-util.ts';
import { renderKv } from './model.ts';
import { HttpError } from './register.ts';

/** Consul's default `kv_max_value_size`, in bytes. */
const KV_MAX_VALUE_SIZE = 512 * 1024;

function uintParam(ctx: Ctx, name: string, what: string): number | undefined {
  const v = ctx.query.get(name);
  if (v === null) return undefined;
  if (!/^\d+$/.test(v)) throw new HttpError(400, `Invalid ${what}`);
  return Number(v);
}

/** Handles `/v1/kv/<key>`. */
export async function kvRoutes(ctx: Ctx, datacenters: readonly string[]): Promise<void> {
  requireMethod(ctx, 'GET', 'PUT', 'DELETE');
  checkDatacenter(ctx, datacenters);
  const key = ctx.path.slice('/v1/kv/'.length);
  const store = ctx.agent.store;
  const auth = ctx.auth();

  if (ctx.method === 'PUT') {
    if (key === '') throw new HttpError(400, 'Missing key name');
    auth.require('key', 'write', key);
    if (ctx.query.has('acquire') || ctx.query.has('release')) {
      const session = ctx.query.get('acquire') ?? ctx.query.get('release') ?? '';
      throw new HttpError(500, `invalid session "${session}"`);
    }
    if (ctx.body.length > KV_MAX_VALUE_SIZE) {
      throw new HttpError(
        413,
        `Request body(${ctx.body.length} bytes) too large, max size: ${KV_MAX_VALUE_SIZE} bytes. See https://developer.hashicorp.com/docs/agent/config/config-files#kv_max_value_size.`,
      );
    }
    const flags = uintParam(ctx, 'flags', 'flags') ?? 0;
    const cas = uintParam(ctx, 'cas', 'cas index');
    const value = ctx.body.length === 0 ? null : Buffer.from(ctx.body);
    const ok = store.write(() => store.kvPut(key, value, flags, cas));
    sendJson(ctx, 200, ok);
    return;
  }
  if (ctx.method === 'DELETE') {
    const recurse = ctx.query.has('recurse');
    if (key === '' && !recurse) throw new HttpError(400, 'Missing key name');
    auth.require('key', 'write', key);
    const cas = uintParam(ctx, 'cas', 'cas index');
    const ok = store.write(() => store.kvDelete(key, recurse, cas));
    sendJson(ctx, 200, ok);
    return;
  }

  const params = parseWait(ctx.query);
  if (ctx.query.has('keys')) {
    const sep = ctx.query.get('separator') ?? '';
    const r = await blockingQuery(
      ctx.blocking,
      params,
      (t) => t.startsWith(`kv:${key}`),
      () => {
        const keys = new Set<string>();
        const all = [...store.kv.keys()].filter((k) => k.startsWith(key)).sort();
        for (const k of auth.canRead() ? all : []) {
          if (sep !== '') {
            const i = k.indexOf(sep, key.length);
            keys.add(i >= 0 ? k.slice(0, i + sep.length) : k);
          } else keys.add(k);
        }
        return {
          index: store.kvPrefixIndex(key),
          value: { keys: [...keys], filtered: !auth.canRead() && all.length > 0 },
        };
      },
    );
    if (ctx.res.destroyed) return;
    const headers = queryHeaders(ctx, r.index);
    if (r.value.filtered) headers['X-Consul-Results-Filtered-By-ACLs'] = 'true';
    if (r.value.keys.length === 0) sendText(ctx.res, 404, '', headers);
    else sendJson(ctx, 200, r.value.keys, headers);
    return;
  }
  const recurse = ctx.query.has('recurse');
  if (!recurse) auth.require('key', 'read', key);
  const r = await blockingQuery(
    ctx.blocking,
    params,
    recurse ? (t) => t.startsWith(`kv:${key}`) : (t) => t === `kv:${key}`,
    () => {
      if (!recurse) {
        const e = store.kv.get(key);
        return {
          index: store.kvTableIndex(),
          value: { entries: e === undefined ? [] : [e], filtered: false },
        };
      }
      const all = [...store.kv.values()]
        .filter((e) => e.key.startsWith(key))
        .sort((a, b) => a.key.localeCompare(b.key));
      const entries = auth.canRead() ? all : [];
      return { index: store.kvPrefixIndex(key), value: { entries, filtered: entries.length < all.length } };
    },
  );
  if (ctx.res.destroyed) return;
  const headers = queryHeaders(ctx, r.index);
  if (r.value.filtered) headers['X-Consul-Results-Filtered-By-ACLs'] = 'true';
  const entries = r.value.entries;
  if (entries.length === 0) {
    sendText(ctx.res, 404, '', headers);
    return;
  }
  if (ctx.query.has('raw') && !recurse) {
    const body = entries[0]!.value ?? Buffer.alloc(0);
    sendText(ctx.res, 200, body, {
      ...headers,
      'Content-Type': 'text/plain',
      'X-Content-Type-Options': 'nosniff',
    });
    return;
  }
  sendJson(ctx, 200, entries.map(renderKv), headers);
}
