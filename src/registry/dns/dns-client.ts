// A minimal DNS stub client: one question to the configured servers over UDP (EDNS0, 4096 bytes), TCP when the answer was truncated.
import { randomInt } from 'node:crypto';
import { createSocket } from 'node:dgram';
import { connect } from 'node:net';
import * as packet from 'dns-packet';

/** The record types meshlet asks for. */
export type QueryType = 'A' | 'AAAA' | 'SRV';

/** A name server, `{host, port}`. */
export interface DnsServer {
  host: string;
  port: number;
}

/** One resource record as dns-packet decodes it. */
export interface Rr {
  type: string;
  name: string;
  ttl?: number;
  data: unknown;
}

/** One answer: the response code and the record sections. */
export interface DnsResponse {
  /** `NOERROR`, `NXDOMAIN`, `SERVFAIL`, `REFUSED`, ... */
  rcode: string;
  answers: Rr[];
  authorities: Rr[];
  additionals: Rr[];
}

/** A query no server answered usably (timeout, network error, SERVFAIL, REFUSED...). */
export class DnsQueryError extends Error {
  readonly code = 'DNS_QUERY_FAILED';
}

/** Parses `"host"`, `"host:port"` or `"[v6]:port"` (port 53 by default). */
export function parseServer(s: string): DnsServer {
  const v6 = /^\[([^\]]+)\](?::(\d+))?$/.exec(s);
  if (v6 !== null) return { host: v6[1]!, port: Number(v6[2] ?? 53) };
  const colons = s.split(':').length - 1;
  if (colons === 1) {
    const [host, port] = s.split(':');
    return { host: host!, port: Number(port) };
  }
  return { host: s, port: 53 };
}

function encodeQuery(id: number, name: string, type: QueryType): Buffer {
  return packet.encode({
    type: 'query',
    id,
    flags: packet.RECURSION_DESIRED,
    questions: [{ type, name, class: 'IN' }],
    additionals: [{ type: 'OPT', name: '.', udpPayloadSize: 4096 } as packet.Answer],
  });
}

function matches(res: packet.Packet, id: number, name: string, type: QueryType): boolean {
  const q = res.questions?.[0];
  return res.id === id && q !== undefined && q.type === type && q.name.toLowerCase() === name.toLowerCase();
}

function toResponse(res: packet.Packet): DnsResponse {
  return {
    rcode: (res as { rcode?: string }).rcode ?? 'NOERROR',
    answers: (res.answers ?? []) as Rr[],
    authorities: (res.authorities ?? []) as Rr[],
    additionals: ((res.additionals ?? []) as Rr[]).filter((a) => a.type !== 'OPT'),
  };
}

function queryUdp(
  server: DnsServer,
  name: string,
  type: QueryType,
  timeoutMs: number,
): Promise<packet.Packet> {
  return new Promise((resolve, reject) => {
    const id = randomInt(0, 65536);
    const socket = createSocket(server.host.includes(':') ? 'udp6' : 'udp4');
    const done = (err: Error | null, res?: packet.Packet): void => {
      clearTimeout(timer);
      socket.close();
      if (err !== null) reject(err);
      else resolve(res!);
    };
    const timer = setTimeout(() => done(new DnsQueryError(`no answer within ${timeoutMs} ms`)), timeoutMs);
    socket.on('error', (err) => done(err));
    socket.on('message', (msg, rinfo) => {
      if (rinfo.port !== server.port) return;
      let res: packet.Packet;
      try {
        res = packet.decode(msg);
      } catch {
        return; // not a DNS message: keep waiting for the real answer
      }
      if (matches(res, id, name, type)) done(null, res);
    });
    socket.send(encodeQuery(id, name, type), server.port, server.host);
  });
}

function queryTcp(
  server: DnsServer,
  name: string,
  type: QueryType,
  timeoutMs: number,
): Promise<packet.Packet> {
  return new Promise((resolve, reject) => {
    const id = randomInt(0, 65536);
    const socket = connect({ host: server.host, port: server.port });
    let buf = Buffer.alloc(0);
    const done = (err: Error | null, res?: packet.Packet): void => {
      clearTimeout(timer);
      socket.destroy();
      if (err !== null) reject(err);
      else resolve(res!);
    };
    const timer = setTimeout(
      () => done(new DnsQueryError(`no answer over TCP within ${timeoutMs} ms`)),
      timeoutMs,
    );
    socket.on('error', (err) => done(err));
    socket.on('connect', () => socket.write(packet.streamEncode(packetFor(id, name, type))));
    socket.on('data', (chunk: Buffer) => {
      buf = Buffer.concat([buf, chunk]);
      if (buf.length < 2 || buf.length < 2 + buf.readUInt16BE(0)) return;
      try {
        const res = packet.streamDecode(buf);
        if (matches(res, id, name, type)) done(null, res);
        else done(new DnsQueryError('answer to another question'));
      } catch (err) {
        done(err as Error);
      }
    });
  });
}

function packetFor(id: number, name: string, type: QueryType): packet.Packet {
  return { type: 'query', id, flags: packet.RECURSION_DESIRED, questions: [{ type, name, class: 'IN' }] };
}

/**
 * Asks `servers` in order until one answers with NOERROR or NXDOMAIN (an authoritative "no").
 * SERVFAIL, REFUSED, timeouts and network errors move to the next server; when none is left the
 * query rejects with the last reason.
 */
export async function query(
  servers: readonly DnsServer[],
  name: string,
  type: QueryType,
  timeoutMs: number,
): Promise<DnsResponse> {
  let last: Error = new DnsQueryError('no name servers');
  for (const server of servers) {
    try {
      let res = await queryUdp(server, name, type, timeoutMs);
      if ((res.flags ?? 0) & packet.TRUNCATED_RESPONSE) res = await queryTcp(server, name, type, timeoutMs);
      const answer = toResponse(res);
      if (answer.rcode === 'NOERROR' || answer.rcode === 'NXDOMAIN') return answer;
      last = new DnsQueryError(`${server.host}:${server.port} answered ${answer.rcode}`);
    } catch (err) {
      const e = err as NodeJS.ErrnoException;
      last = new DnsQueryError(`${server.host}:${server.port}: ${e.code ?? e.message}`);
    }
  }
  throw last;
}
