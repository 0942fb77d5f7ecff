// Picks the service ID this instance registers under, so it never replaces another instance's registration.
import type { ConsulClient, LocalService } from './consul-client.ts';

/** An instance as Consul's peers see it: the Address and Port it registers. */
export interface Instance {
  address: string;
  port: number;
}

/**
 * Whose registration the agent holds under an ID: `none` (the ID is free), `self` (this instance's
 * Address and Port: its own earlier run, taken over), `abandoned` (another instance's, but its TTL
 * check expired: nobody refreshes it any more, taken over), `other` (a live instance's: never replaced).
 */
export type Holder = 'none' | 'self' | 'abandoned' | 'other';

/** The outcome of {@link claimServiceId}. */
export interface Claim {
  /** The ID to register under, or null when live instances hold every candidate. */
  id: string | null;
  /** How the chosen ID was held (`none`, `self` or `abandoned`); `other` when `id` is null. */
  holder: Holder;
  /** Candidates skipped because a live instance holds them, with that instance. */
  passed: { id: string; holder: Instance }[];
}

/** `address:port`, how logs name an instance (IPv6 in brackets). */
export function describeInstance(i: Instance): string {
  return i.address.includes(':') ? `[${i.address}]:${i.port}` : `${i.address}:${i.port}`;
}

/** A part of a Consul service ID: every character but letters, digits, `_`, `.` and `-` becomes `-`. */
export function idPart(text: string): string {
  return text.replace(/[^A-Za-z0-9_.-]/g, '-');
}

/**
 * The IDs this instance may register under, in order. An ID `registry.serviceId` sets is the only
 * one (the operator asked for it). The default ID (`name-hostname-port`) is followed by the same
 * with the registered address appended, then with the address and the registered port.
 */
export function candidateIds(id: string, self: Instance, explicit: boolean): string[] {
  if (explicit) return [id];
  const withAddress = `${id}-${idPart(self.address)}`;
  return [id, withAddress, `${withAddress}-${self.port}`];
}

/** True when a check's output says Consul expired its TTL (Consul's own wording). */
function ttlExpired(check: { status: string; output: string }): boolean {
  return check.status === 'critical' && check.output.startsWith('TTL expired');
}

/**
 * Whose registration `held` is. An empty Address stands for the node's address (`nodeAddress`).
 * Another instance's registration whose TTL check expired is `abandoned`: its owner stopped
 * refreshing it (crashed, or moved to another node) and Consul will reap it.
 */
export function holderOf(held: LocalService | null, self: Instance, nodeAddress?: string): Holder {
  if (held === null) return 'none';
  const address = held.address === '' ? nodeAddress : held.address;
  if (address === self.address && held.port === self.port) return 'self';
  return held.checks.some(ttlExpired) ? 'abandoned' : 'other';
}

/**
 * Reads the agent's registration of each candidate in turn (`GET /v1/agent/health/service/id/<id>`)
 * and picks the first one that is free, this instance's own, or abandoned. Rejects when the agent
 * cannot be read (the caller retries on its next tick).
 */
export async function claimServiceId(
  client: ConsulClient,
  candidates: readonly string[],
  self: Instance,
  signal?: AbortSignal,
): Promise<Claim> {
  const passed: Claim['passed'] = [];
  let nodeAddress: string | undefined;
  for (const id of candidates) {
    const held = await client.localService(id, signal);
    if (held !== null && held.address === '' && nodeAddress === undefined)
      nodeAddress = await client.agentAddress(signal);
    const holder = holderOf(held, self, nodeAddress);
    if (holder !== 'other') return { id, holder, passed };
    passed.push({ id, holder: { address: held!.address || nodeAddress!, port: held!.port } });
  }
  return { id: null, holder: 'other', passed };
}

// HolderWait moved to ../holder-wait.ts (shared with the etcd and Redis registries); re-exported here.
export { type HolderVerdict, HolderWait } from '../holder-wait.ts';
