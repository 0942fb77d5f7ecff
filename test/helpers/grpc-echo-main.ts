// An Echo server in its own process (so a test can SIGKILL it): prints its port, serves until killed.
import { startEchoServer } from './grpc.ts';

const server = await startEchoServer(process.argv[2]);
process.stdout.write(`${server.port}\n`);
process.on('SIGTERM', () => {
  // Graceful: GOAWAY, in-flight calls finish, then exit.
  void server.shutdown().then(() => process.exit(0));
});
