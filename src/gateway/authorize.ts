// Authorization of a gateway route (`allow`): roles, tenants, key names, subjects and claim values of the principal.
import type { GatewayRouteSpec } from '../config/gateway-schema.ts';
import type { Principal } from './authenticator.ts';

/** A route's `allow`, compiled once: a pure decision over a principal. */
export class AllowRule {
  readonly #roles: ReadonlySet<string> | null;
  readonly #tenants: ReadonlySet<string> | null;
  readonly #keys: ReadonlySet<string> | null;
  readonly #subjects: ReadonlySet<string> | null;
  readonly #claims: readonly [string, ReadonlySet<string>][];

  constructor(spec: NonNullable<GatewayRouteSpec['allow']>) {
    const set = (a: readonly string[] | undefined) => (a === undefined ? null : new Set(a));
    this.#roles = set(spec.roles);
    this.#tenants = set(spec.tenants);
    this.#keys = set(spec.keys);
    this.#subjects = set(spec.subjects);
    this.#claims = Object.entries(spec.claims ?? {}).map(([k, v]) => [k, new Set(v)]);
  }

  /**
   * Why `p` may not call (for the 403's message), or null when it may: every kind listed must
   * match (a role among `roles`, the tenant among `tenants`, …); within a kind any value does.
   */
  deny(p: Principal): string | null {
    if (this.#roles !== null && !p.roles.some((r) => this.#roles!.has(r))) return 'no allowed role';
    if (this.#tenants !== null && (p.tenant === undefined || !this.#tenants.has(p.tenant)))
      return 'tenant not allowed';
    if (this.#keys !== null && (p.key === undefined || !this.#keys.has(p.key))) return 'API key not allowed';
    if (this.#subjects !== null && (p.subject === undefined || !this.#subjects.has(p.subject)))
      return 'subject not allowed';
    for (const [claim, values] of this.#claims) {
      const v = p.claims[claim];
      const ok = Array.isArray(v)
        ? v.some((x) => values.has(String(x)))
        : v !== undefined && values.has(String(v));
      if (!ok) return `claim "${claim}" not allowed`;
    }
    return null;
  }
}
