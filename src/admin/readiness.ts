// Whether meshlet is ready, and why not: the one answer /ready, gRPC health and `meshlet run -- CMD` share.
import type { Registry } from '../registry/registry.ts';

/** What readiness reads from the running daemon. */
export interface ReadinessSource {
  readonly registry: Registry;
  /** True while drained (POST /drain) or shutting down. */
  draining(): boolean;
  /** Why it is draining, for the check's detail (e.g. `drained by POST /drain`); read when draining. */
  drainReason?(): string;
  /** Extra readiness conditions (e.g. the local app's health check), each `[name, ok, detail]`. */
  readinessChecks(): readonly [string, boolean, string][];
}

/** One readiness check as `/ready` shows it. */
export interface CheckResult {
  ok: boolean;
  detail: string;
}

/** The outcome: ok when every check is. */
export interface Readiness {
  ok: boolean;
  checks: Record<string, CheckResult>;
}

/**
 * The readiness checks: `registry` (synced), `draining`, then the registry's own (`app`: the local
 * app's health, `consul`: the agent reached). `ignore` leaves checks out by name: meshlet's own
 * readiness, which gates the app it starts, is every check but `app` (the app cannot be healthy
 * before it runs).
 */
export function readiness(source: ReadinessSource, ignore: readonly string[] = []): Readiness {
  const draining = source.draining();
  const checks: Record<string, CheckResult> = {
    registry: { ok: source.registry.synced, detail: source.registry.synced ? 'synced' : 'not synced yet' },
    draining: {
      ok: !draining,
      detail: draining ? (source.drainReason?.() ?? 'shutting down') : 'serving',
    },
  };
  for (const [name, ok, detail] of source.readinessChecks()) checks[name] = { ok, detail };
  for (const name of ignore) delete checks[name];
  return { ok: Object.values(checks).every((c) => c.ok), checks };
}

/** The readiness checks a local app does not take part in: `meshlet run -- CMD` and `/ready?ignore=app`. */
export const PROXY_ONLY: readonly string[] = ['app'];

/** The failing checks as one line, e.g. `registry: not synced yet; consul: not reached yet`. */
export function failingChecks(r: Readiness): string {
  return Object.entries(r.checks)
    .filter(([, c]) => !c.ok)
    .map(([name, c]) => `${name}: ${c.detail}`)
    .join('; ');
}
