// Reads an in-process meshlet's access lines for the refused-request suites (one line by a predicate, without the fields every line has) and sends their raw requests.
import { connect as tcpConnect, type Socket } from 'node:net';
import { connect as tlsConnect } from 'node:tls';
import { expect } from 'vitest';
import type { InProcessMeshlet } from '../helpers/meshlet.ts';
import { collectReply } from '../helpers/raw-http.ts';

/** A request id meshlet generates (a UUID). */
export const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;

/** An access line without the fields every line has (`level`, `time`, `service`, `msg`). */
export type Fields = Record<string, unknown>;

/** The duration of a refusal's line: measured (a number, at least 0), never left out. */
export const DURATION = expect.any(Number) as unknown;

/** Waits (≤ 2 s) for the one access line `pick` selects; returns it without the common fields. */
export async function accessLine(m: InProcessMeshlet, pick: (l: Fields) => boolean): Promise<Fields> {
  const deadline = Date.now() + 2000;
  for (;;) {
    const found = m.logs.filter((l) => l.msg === 'access' && pick(l));
    if (found.length > 1) throw new Error(`${found.length} access lines match, expected one`);
    if (found.length === 1) {
      const { level, time, service, msg, ...rest } = found[0]!;
      expect({ level, service, msg, time: typeof time }).toEqual({
        level: 'info',
        service: 'meshlet',
        msg: 'access',
        time: 'string',
      });
      return rest;
    }
    if (Date.now() > deadline) throw new Error('no matching access line within 2 s');
    await new Promise((r) => setTimeout(r, 20));
  }
}

/** What `socket` read until it closed; throws when it was not closed within 5 s. */
async function untilClosed(socket: Socket): Promise<string> {
  const reply = await collectReply(socket, { timeoutMs: 5000 });
  if (reply.timedOut) throw new Error(`not closed within 5 s: ${JSON.stringify(reply.text.slice(0, 200))}`);
  return reply.text;
}

/** Writes `text` on a plain TCP connection to 127.0.0.1 and resolves with all that came back until it closed (≤ 5 s). */
export function overTcp(port: number, text: string): Promise<string> {
  const socket = tcpConnect(port, '127.0.0.1', () => socket.write(text));
  return untilClosed(socket);
}

/** Writes `text` on a fresh HTTP/1.1-over-mTLS connection as `who`; resolves with all that came back until it closed (≤ 5 s). */
export function overMtls(
  port: number,
  who: { ca: Buffer; cert: Buffer; key: Buffer },
  text: string,
): Promise<string> {
  const socket = tlsConnect(
    {
      port,
      host: '127.0.0.1',
      ca: who.ca,
      cert: who.cert,
      key: who.key,
      checkServerIdentity: () => undefined,
      ALPNProtocols: ['http/1.1'],
    },
    () => socket.write(Buffer.from(text, 'latin1')),
  );
  return untilClosed(socket);
}
