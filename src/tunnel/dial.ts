// Opens a raw connection to an endpoint for a tunnel: TCP, or mTLS to a peer meshlet (the TLS layer supplies that).
import { connect, type Socket } from 'node:net';
import type { Endpoint } from '../upstream/endpoint.ts';
import type { ConnectCheck } from '../upstream/forwarding-loop.ts';

/**
 * Connects to `endpoint` (of upstream `upstream`, the identity an mTLS server must prove) within
 * `connectTimeoutMs`. Rejects with an error whose `code` marks a connect failure. `check` (the
 * forwarding-loop guard), when given, runs once TCP connected, before any byte is written (an mTLS
 * dial's client hello included): a connection it refuses is destroyed and the dial rejects with its
 * error.
 */
export type EndpointDialer = (
  endpoint: Endpoint,
  upstream: string,
  connectTimeoutMs: number,
  check?: ConnectCheck,
) => Promise<Socket>;

/** A TCP connection to the endpoint's address and port. */
export const plainDial: EndpointDialer = (endpoint, _upstream, connectTimeoutMs, check) =>
  dialTcp(endpoint.address, endpoint.port, connectTimeoutMs, check);

/**
 * A TCP connection to host:port within `timeoutMs` (`UND_ERR_CONNECT_TIMEOUT` past it, as undici
 * names it). Half-open allowed: an endpoint's FIN must only end the client's direction of a tunnel
 * (the Tunnel passes it on), not close the connection while the client still sends. `check`, when
 * given, runs once connected: a connection it refuses is destroyed and the dial rejects with its error.
 */
export function dialTcp(
  host: string,
  port: number,
  timeoutMs: number,
  check?: ConnectCheck,
): Promise<Socket> {
  return new Promise((resolve, reject) => {
    const socket = connect({ host, port, noDelay: true, allowHalfOpen: true });
    const timer = setTimeout(() => {
      socket.destroy();
      reject(
        Object.assign(new Error(`connect to ${host}:${port} timed out after ${timeoutMs} ms`), {
          code: 'UND_ERR_CONNECT_TIMEOUT',
        }),
      );
    }, timeoutMs);
    socket.once('connect', () => {
      clearTimeout(timer);
      socket.off('error', reject);
      const refused = check?.(socket) ?? null;
      if (refused === null) {
        resolve(socket);
        return;
      }
      socket.destroy();
      reject(refused);
    });
    socket.once('error', (err) => {
      clearTimeout(timer);
      reject(err);
    });
  });
}
