// The environment of the app `meshlet run -- CMD` starts: the caller's own, plus where meshlet listens.

/**
 * The variable listing, comma-separated, the environment variables meshlet added to its own
 * environment when it re-executed itself (gc-tuning.ts), so the app does not inherit them.
 */
export const ADDED_ENV = 'MESHLET_ADDED_ENV';

/** Where the app finds meshlet. */
export interface AppAddresses {
  /** `http://127.0.0.1:PORT` of the outbound listener. */
  outbound: string;
  /** `http://127.0.0.1:PORT` of the admin listener. */
  admin: string;
}

/** A URL for a listener bound on `address`: a wildcard address is reached on loopback. */
export function listenerUrl(address: string, port: number): string {
  const host = address === '0.0.0.0' || address === '::' || address === '' ? '127.0.0.1' : address;
  return `http://${host.includes(':') ? `[${host}]` : host}:${port}`;
}

/**
 * The app's environment: `env` as meshlet was given it (what meshlet added for itself removed),
 * with `MESHLET_OUTBOUND` and `MESHLET_ADMIN`; with `exportProxyEnv` also `HTTP_PROXY` and
 * `http_proxy` (the outbound listener, as a forward proxy) and `NO_PROXY`/`no_proxy`
 * (`localhost,127.0.0.1`, so calls to the app's own port and to the admin API go direct).
 */
export function appEnvironment(
  env: NodeJS.ProcessEnv,
  addresses: AppAddresses,
  exportProxyEnv: boolean,
): NodeJS.ProcessEnv {
  const out: NodeJS.ProcessEnv = { ...env };
  for (const name of (env[ADDED_ENV] ?? '').split(',')) if (name !== '') delete out[name];
  delete out[ADDED_ENV];
  out.MESHLET_OUTBOUND = addresses.outbound;
  out.MESHLET_ADMIN = addresses.admin;
  if (exportProxyEnv) {
    out.HTTP_PROXY = addresses.outbound;
    out.http_proxy = addresses.outbound;
    out.NO_PROXY = 'localhost,127.0.0.1';
    out.no_proxy = 'localhost,127.0.0.1';
  }
  return out;
}
