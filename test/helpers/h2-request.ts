// One HTTP/2 request on a fresh session (h2c prior knowledge, or h2 over TLS): what node:http2 sends, for a listener's HTTP/2 side.
import { connect, type IncomingHttpHeaders, type OutgoingHttpHeaders } from 'node:http2';

/** Client certificate and CA (PEM contents) for h2 over TLS; the server's name is not checked. */
export interface H2Tls {
  ca: Buffer;
  cert?: Buffer;
  key?: Buffer;
}

/**
 * Sends `headers` (no body) on a fresh session to `origin` (`http://…` for h2c, `https://…` with
 * `tls`) and resolves with the response head and body (UTF-8) once the stream ends; rejects on a
 * session or stream error, or when no whole response came within `timeoutMs` (default 5000 ms).
 */
export function h2Exchange(
  origin: string,
  headers: OutgoingHttpHeaders,
  tls?: H2Tls,
  timeoutMs = 5000,
): Promise<{ head: IncomingHttpHeaders; body: string }> {
  return new Promise((resolve, reject) => {
    const session = connect(
      origin,
      tls === undefined ? {} : { ...tls, checkServerIdentity: () => undefined },
    );
    const timer = setTimeout(() => {
      session.destroy();
      reject(new Error(`no HTTP/2 response from ${origin} within ${timeoutMs} ms`));
    }, timeoutMs);
    const fail = (err: Error): void => {
      clearTimeout(timer);
      session.destroy();
      reject(err);
    };
    session.on('error', fail);
    const stream = session.request(headers, { endStream: true });
    stream.on('error', fail);
    stream.on('response', (head) => {
      const body: Buffer[] = [];
      stream.on('data', (d: Buffer) => body.push(d));
      stream.on('end', () => {
        clearTimeout(timer);
        session.close();
        resolve({ head, body: Buffer.concat(body).toString('utf8') });
      });
    });
  });
}

/** {@link h2Exchange}, resolving with the response head only. */
export async function h2Request(
  origin: string,
  headers: OutgoingHttpHeaders,
  tls?: H2Tls,
  timeoutMs = 5000,
): Promise<IncomingHttpHeaders> {
  return (await h2Exchange(origin, headers, tls, timeoutMs)).head;
}
