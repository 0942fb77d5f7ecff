// A request's authority (Host header or absolute-form URL): whether it is one, and the upstream name it names.
import { MeshletError } from '../errors/meshlet-error.ts';

/**
 * RFC 3986 §3.2.2–3.2.3 `host [ ":" port ]`: an IP-literal (`[v6]` or `[vF.future]`), or a reg-name
 * of unreserved, pct-encoded and sub-delims characters (an IPv4 address is one too); a port of digits.
 */
const AUTHORITY =
  /^(?:\[(?:[0-9A-Fa-f:.]+|v[0-9A-Fa-f]+\.[A-Za-z0-9\-._~!$&'()*+,;=:]+)\]|(?:[A-Za-z0-9\-._~!$&'()*+,;=]|%[0-9A-Fa-f]{2})*)(?::[0-9]*)?$/;

/**
 * The refusal (400 `bad_request`) of a Host header or `:authority` that is not an authority, or
 * null: RFC 9112 §3.2 has a server answer 400 to a Host with an invalid value, so that no hop reads
 * another name than the one meshlet routed, authorized and logged (`Host: us ers`, `a@users`,
 * `users/x`). Empty or absent is not refused here (no Host is a routing question: `no_route`).
 * @param value the Host header's (or `:authority`'s) value.
 */
export function authorityRefusal(value: string | undefined): MeshletError | null {
  if (value === undefined || value === '' || AUTHORITY.test(value)) return null;
  const shown = JSON.stringify(value.slice(0, 100));
  return new MeshletError('bad_request', `the Host header ${shown} is not a valid authority (host[:port])`);
}

/**
 * The upstream name an authority names: lowercased, port dropped, and Consul's DNS forms reduced
 * (`users.service.consul`, `users.service.dc1.consul`, `users.service` → `users`).
 * Returns '' for an empty authority.
 */
export function upstreamNameOf(authority: string): string {
  let host = authority;
  if (host.charCodeAt(0) === 91 /* [ */) {
    const end = host.indexOf(']');
    host = end === -1 ? host : host.slice(0, end + 1);
  } else {
    const colon = host.indexOf(':');
    if (colon !== -1) host = host.slice(0, colon);
  }
  host = host.toLowerCase();
  const service = host.indexOf('.service');
  if (service > 0) {
    const rest = host.slice(service + 8);
    if (rest === '' || rest === '.consul' || /^\.[a-z0-9-]+\.consul$/.test(rest))
      return host.slice(0, service);
  }
  return host;
}
