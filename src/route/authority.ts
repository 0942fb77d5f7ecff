// Turns a request's authority (Host header or absolute-form URL) into the upstream name it names.

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
