// Forwarding-loop guard: whether an endpoint, or the peer of a connection just opened to one, is one of this meshlet's own listening sockets.
import { isIP, type Socket } from 'node:net';
import { hostname, networkInterfaces } from 'node:os';
import type { buildConnector } from 'undici';
import type { Endpoint } from './endpoint.ts';

/** The warning logged (once per endpoint while it stays refused) for an endpoint that is meshlet's own listener. */
export const FORWARDING_LOOP_WARNING = "endpoint is meshlet's own listener: forwarding loop refused";

/** The `code` of {@link ForwardingLoopError}. */
export const FORWARDING_LOOP_CODE = 'MESHLET_FORWARDING_LOOP';

/**
 * A connection to an endpoint reached one of meshlet's own listeners (its host name resolved to
 * this host): closed before any byte was written. Nothing was sent; the endpoint is no failing one.
 */
export class ForwardingLoopError extends Error {
  readonly code = FORWARDING_LOOP_CODE;
  constructor(endpoint: string, peer: string) {
    super(
      `endpoint ${endpoint} connected to ${peer}, meshlet's own listener: forwarding loop refused, nothing sent`,
    );
    this.name = 'ForwardingLoopError';
  }
}

/**
 * Checks a connection to an endpoint once it is open, before any byte is written on it: null to use
 * it, else the error the connection attempt fails with (the socket is then destroyed).
 */
export type ConnectCheck = (socket: Socket) => Error | null;

/**
 * `connector` with every connection it opens passed to `check` first (once per connection, never
 * per request); a connection `check` refuses is destroyed and the attempt fails with its error.
 * The socket `connector` returns is returned too (undici cancels a connect through it).
 */
export function checkedConnector(
  connector: buildConnector.connector,
  check: ConnectCheck,
): buildConnector.connector {
  return (options, callback) =>
    connector(options, (...args) => {
      // undici's connector calls back with the error alone when it fails.
      const socket = args[1] as Socket | null | undefined;
      const refused = args[0] === null && socket !== null && socket !== undefined ? check(socket) : null;
      if (refused === null) {
        callback(...args);
        return;
      }
      socket!.destroy();
      callback(refused, null);
    });
}

/** This host's own names and interface addresses (normalized), read once per process and cached. */
let hostAddresses: ReadonlySet<string> | null = null;

function ownHostAddresses(): ReadonlySet<string> {
  if (hostAddresses !== null) return hostAddresses;
  const found = new Set<string>();
  try {
    for (const infos of Object.values(networkInterfaces())) {
      for (const info of infos ?? []) found.add(normalizeAddress(info.address));
    }
  } catch {
    // No interface list (a sandbox without netlink): loopback and unspecified are still recognized.
  }
  try {
    found.add(hostname().toLowerCase());
  } catch {
    // no host name
  }
  hostAddresses = found;
  return found;
}

/**
 * An address as one canonical string: IPv4 dotted-quad (`127.1` and `0x7f.0.0.1` become
 * `127.0.0.1`), IPv6 compressed and lower case, IPv4-mapped IPv6 unmapped, zone (`%eth0`) dropped;
 * a host name lower case, without a trailing dot.
 */
export function normalizeAddress(address: string): string {
  let a = address.trim().toLowerCase();
  if (a.startsWith('[') && a.endsWith(']')) a = a.slice(1, -1);
  const zone = a.indexOf('%');
  if (zone !== -1) a = a.slice(0, zone);
  if (a.endsWith('.')) a = a.slice(0, -1);
  try {
    a = new URL(`http://${a.includes(':') ? `[${a}]` : a}/`).hostname;
  } catch {
    return a;
  }
  if (a.startsWith('[')) a = a.slice(1, -1);
  const mapped = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/.exec(a);
  if (mapped !== null) return mapped[1]!;
  // The URL parser writes a mapped IPv4 address in hex groups: `::ffff:7f00:1`.
  const hex = /^::ffff:([0-9a-f]{1,4}):([0-9a-f]{1,4})$/.exec(a);
  if (hex !== null) {
    const hi = parseInt(hex[1]!, 16);
    const lo = parseInt(hex[2]!, 16);
    return `${hi >> 8}.${hi & 255}.${lo >> 8}.${lo & 255}`;
  }
  return a;
}

/**
 * Whether `address` reaches this host: loopback (`127.0.0.0/8`, `::1`, `localhost`), unspecified
 * (`0.0.0.0`, `::`: connecting there reaches this host), this host's name, or one of its interface
 * addresses (`os.networkInterfaces()`, read once). Other host names are not resolved.
 */
export function isOwnHostAddress(address: string): boolean {
  const a = normalizeAddress(address);
  if (a === '::1' || a === '::' || a === '0.0.0.0' || a.startsWith('127.')) return true;
  if (a === 'localhost' || a.endsWith('.localhost')) return true;
  return ownHostAddresses().has(a);
}

/**
 * What a listener bound to `address` is reached through: {@link ANY_ADDRESS} for a wildcard (`0.0.0.0`,
 * `::`, which with dual-stack takes IPv4 too) or a host name meshlet did not resolve itself (it may
 * have been bound to any address of this host), else the one address it is bound to, normalized.
 */
function boundAddress(address: string): string {
  const a = normalizeAddress(address);
  return a === '0.0.0.0' || a === '::' || isIP(a) === 0 ? ANY_ADDRESS : a;
}

/** A listener reached through any address of this host (see {@link boundAddress}). */
const ANY_ADDRESS = '*';

function isLoopback(address: string): boolean {
  return address === '::1' || address.startsWith('127.');
}

/**
 * Whether a connection to `address` reaches a listener on one of the `bound` addresses (from
 * {@link boundAddress}, of one port). A wildcard listener: when `address` is any address of this
 * host ({@link isOwnHostAddress}). A listener on one address: when `address` is that address
 * (`127.0.0.2` does not reach a listener on `127.0.0.1`), an unspecified one (`0.0.0.0`, `::`:
 * the kernel sends it to loopback), `localhost` when the listener is on loopback, or this host's
 * name (not resolved here: it may be that address).
 */
function reachesBound(address: string, bound: readonly string[]): boolean {
  if (bound.includes(ANY_ADDRESS)) return isOwnHostAddress(address);
  const a = normalizeAddress(address);
  if (bound.includes(a) || a === '0.0.0.0' || a === '::') return true;
  if (isIP(a) !== 0) return false;
  if (a === 'localhost' || a.endsWith('.localhost')) return bound.some(isLoopback);
  return isOwnHostAddress(a);
}

/**
 * The listeners meshlet runs that lead back into its request path or admin API, each an address and
 * a port: the outbound, per-upstream, gateway, admin and gRPC admin listeners (not the inbound
 * listener: it forwards only to the local app at `service.port`, which config validation keeps apart
 * from every listener port, so an app calling its own service through its own inbound listener is no
 * loop). An endpoint that reaches one is refused ({@link isOwnListener}): on its port, and at any
 * address of this host for a listener on a wildcard address, or at the listener's own address for
 * one bound to a single address (a real service on `127.0.0.2:P` is no loop when meshlet listens on
 * `127.0.0.1:P`). Adding a listener tells every subscriber, so endpoints set before it was bound
 * (port 0) are checked again.
 */
export class OwnListeners {
  /** Per listener port, the addresses listened on there ({@link boundAddress}). */
  readonly #ports = new Map<number, string[]>();
  readonly #subscribers = new Set<() => void>();

  /**
   * Records a bound listener (port 0 is ignored) and, when new, tells every subscriber.
   *
   * @param port the port it is bound to.
   * @param address the address it is bound to (`server.address().address`, or the configured one):
   *   a wildcard or a host name counts as every address of this host.
   */
  add(port: number, address: string): void {
    if (port === 0) return;
    const bound = boundAddress(address);
    const known = this.#ports.get(port);
    if (known?.includes(bound) === true) return;
    if (known === undefined) this.#ports.set(port, [bound]);
    else known.push(bound);
    for (const s of this.#subscribers) s();
  }

  /** Whether `endpoint` is one of meshlet's own listening sockets (its port first: the address is read only on a match). */
  isOwnListener(endpoint: Endpoint): boolean {
    const bound = this.#ports.get(endpoint.port);
    return bound !== undefined && reachesBound(endpoint.address, bound);
  }

  /**
   * Whether a connected socket's peer is one of meshlet's own listening sockets: the same test as
   * {@link isOwnListener} on the address and port it actually reached (a host name resolved to this
   * host included). Its port first: the address is read only on a match.
   */
  isOwnPeer(socket: Socket): boolean {
    const port = socket.remotePort;
    const bound = port === undefined ? undefined : this.#ports.get(port);
    if (bound === undefined) return false;
    const address = socket.remoteAddress;
    return address !== undefined && reachesBound(address, bound);
  }

  /** Calls `cb` each time a new listener is added; returns a function that stops it. */
  onChange(cb: () => void): () => void {
    this.#subscribers.add(cb);
    return () => this.#subscribers.delete(cb);
  }
}
