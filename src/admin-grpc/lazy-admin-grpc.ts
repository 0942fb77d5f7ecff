// The gRPC admin port, bound at start; grpc-js is loaded on its first connection, so an idle meshlet never pays for it.
import { connect, createServer, type AddressInfo, type Socket } from 'node:net';
import type { Logger } from '../telemetry/logger.ts';
import type { AdminGrpcServer, AdminGrpcView } from './admin-grpc-server.ts';

/** Longest wait for a relayed connection's last bytes once the server side closed, ms (as admin-grpc-server's CLOSE_GRACE_MS). */
const CLOSE_GRACE_MS = 250;

/** Whether an address is loopback (only then may connections reach grpc-js through a local relay). */
export function isLoopback(address: string): boolean {
  return address === 'localhost' || address === '::1' || address.startsWith('127.');
}

/**
 * Binds `address:port` for the gRPC admin API without loading grpc-js (about 9 MiB of a sidecar's
 * idle RSS): the first connection starts the real server (admin-grpc-server.ts) on a private
 * 127.0.0.1 port, and every connection is relayed to it byte for byte. Only for a loopback
 * `address`: the relay hides the caller's address, which the admin rules read when bound beyond
 * loopback. Rejects when the port cannot be bound (`code` EADDRINUSE when it is taken).
 */
export async function listenAdminGrpcLazily(
  view: AdminGrpcView,
  address: string,
  port: number,
  logger: Logger,
): Promise<AdminGrpcServer> {
  let backend: Promise<AdminGrpcServer> | null = null;
  const sockets = new Set<Socket>();
  const start = (): Promise<AdminGrpcServer> =>
    (backend ??= import('./admin-grpc-server.ts').then(({ startAdminGrpc }) =>
      startAdminGrpc(view, '127.0.0.1', 0, logger),
    ));
  const front = createServer({ noDelay: true }, (client) => {
    sockets.add(client);
    client.once('close', () => sockets.delete(client));
    client.pause();
    client.on('error', () => client.destroy());
    start().then(
      (server) => {
        if (client.destroyed) return;
        const upstream = connect({ host: '127.0.0.1', port: server.port, noDelay: true });
        sockets.add(upstream);
        upstream.once('close', () => {
          sockets.delete(upstream);
          // What the server wrote last (a watch's final status) may still be on its way out.
          client.end();
          setTimeout(() => client.destroy(), CLOSE_GRACE_MS).unref();
        });
        upstream.on('error', () => upstream.destroy());
        client.once('close', () => upstream.destroy());
        client.pipe(upstream);
        upstream.pipe(client);
        client.resume();
      },
      (err: Error) => {
        logger.error({ msg: 'gRPC admin API could not start', reason: err.message });
        client.destroy();
      },
    );
  });
  await new Promise<void>((resolve, reject) => {
    front.once('error', reject);
    front.listen({ host: address, port }, () => {
      front.off('error', reject);
      resolve();
    });
  });
  const bound = (front.address() as AddressInfo).port;
  return {
    address,
    port: bound,
    async close() {
      front.close();
      // The real server ends its calls first (their last messages relayed), then what is left is cut.
      await backend?.then(
        (server) => server.close(),
        () => undefined,
      );
      for (const s of sockets) s.destroy();
    },
  };
}
