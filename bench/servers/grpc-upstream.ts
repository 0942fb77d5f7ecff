// The gRPC phase's upstream: a real @grpc/grpc-js server of the Echo service, h2c on 127.0.0.1,
// with grpc-js's defaults. Unary echoes the request's message; Bidi answers each message as it
// arrives, writing with backpressure. Every reply says servedBy "bench", so all replies are the
// same size (h2load's DATA bytes ÷ reply size = calls answered with a message).
//
//   node bench/servers/grpc-upstream.ts PORT
import { EchoClient, type EchoReply, type EchoRequest, grpc, SERVED_BY } from '../lib/grpc-echo.ts';

const port = Number(process.argv[2]);
if (!(port > 0)) {
  process.stderr.write('usage: grpc-upstream.ts PORT\n');
  process.exit(2);
}

const server = new grpc.Server();
server.addService(EchoClient.service, {
  Unary(call: grpc.ServerUnaryCall<EchoRequest, EchoReply>, callback: grpc.sendUnaryData<EchoReply>) {
    callback(null, { message: call.request.message ?? '', servedBy: SERVED_BY, index: 0 });
  },
  Bidi(call: grpc.ServerDuplexStream<EchoRequest, EchoReply>) {
    let i = 0;
    call.on('data', (r: EchoRequest) => {
      // Backpressure: stop reading while the reply side is full.
      if (!call.write({ message: r.message ?? '', servedBy: SERVED_BY, index: i++ })) {
        call.pause();
        call.once('drain', () => call.resume());
      }
    });
    call.on('end', () => call.end());
    call.on('error', () => {});
  },
});
server.bindAsync(`127.0.0.1:${port}`, grpc.ServerCredentials.createInsecure(), (err) => {
  if (err !== null) {
    process.stderr.write(`grpc-upstream: ${err.message}\n`);
    process.exit(1);
  }
});
process.on('SIGTERM', () => {
  server.forceShutdown();
  process.exit(0);
});
