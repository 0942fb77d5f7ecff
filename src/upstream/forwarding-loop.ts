// Forwarding-loop guard: whether an endpoint, or the peer of a connection just opened to one, is one of this meshlet's own listening sockets.
import type { Socket } from 'node:net';
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
 * The ports meshlet listens on that lead back into its request path or admin API: the outbound,
 * per-upstream, gateway, admin and gRPC admin listeners (not the inbound listener: it forwards only to
 * the local app at `service.port`, which config validation keeps apart from every listener port, so
 * an app calling its own service through its own inbound listener is no loop). An endpoint on one of
 * these ports at an address of this host is refused ({@link isOwnListener}); adding a port tells
 * every subscriber, so endpoints set before a listener was bound (port 0) are checked again.
 */
export class OwnListeners {
  readonly #ports = new Set<number>();
  readonly #subscribers = new Set<() => void>();

  /** Records a bound listener's port (0 is ignored) and, when new, tells every subscriber. */
  add(port: number): void {
    if (port === 0 || this.#ports.has(port)) return;
    this.#ports.add(port);
    for (const s of this.#subscribers) s();
  }

  /** The ports recorded so far. */
  get ports(): ReadonlySet<number> {
    return this.#ports;
  }

  /** Whether `endpoint` is one of meshlet's own listening sockets (its port first: the address is read only on a match). */
  isOwnListener(endpoint: Endpoint): boolean {
    return this.#ports.has(endpoint.port) && isOwnHostAddress(endpoint.address);
  }

  /**
   * Whether a connected socket's peer is one of meshlet's own listening sockets: the same test as
   * {@link isOwnListener} on the address and port it actually reached (a host name resolved to this
   * host included). Its port first: the address is read only on a match.
   */
  isOwnPeer(socket: Socket): boolean {
    const port = socket.remotePort;
    if (port === undefined || !this.#ports.has(port)) return false;
    const address = socket.remoteAddress;
    return address !== undefined && isOwnHostAddress(address);
  }

  /** Calls `cb` each time a new port is added; returns a function that stops it. */
  onChange(cb: () => void): () => void {
    this.#subscribers.add(cb);
    return () => this.#subscribers.delete(cb);
  }
}
