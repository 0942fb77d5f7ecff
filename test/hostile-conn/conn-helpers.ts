// Raw TCP clients for the connection tests: a held connection, a dropped one, a request on a held one, and metric samples read from /metrics.
import { connect, type Socket } from 'node:net';
import { request } from 'undici';

/** Opens a TCP connection to 127.0.0.1:port and resolves once connected (rejects after `timeoutMs`). */
export function openConnection(port: number, timeoutMs = 2000): Promise<Socket> {
  return new Promise((resolve, reject) => {
    const socket = connect(port, '127.0.0.1');
    const timer = setTimeout(() => {
      socket.destroy();
      reject(new Error(`no connection to port ${port} within ${timeoutMs} ms`));
    }, timeoutMs);
    socket.once('connect', () => {
      clearTimeout(timer);
      resolve(socket);
    });
    socket.once('error', (err) => {
      clearTimeout(timer);
      reject(err);
    });
  });
}

/**
 * What became of a fresh connection to 127.0.0.1:port within `ms`: `dropped` when the listener
 * closed it without sending a byte, `open` when it was still open (then it is destroyed).
 */
export async function fateOf(port: number, ms = 1000): Promise<'dropped' | 'open'> {
  const socket = await openConnection(port);
  return new Promise((resolve) => {
    let bytes = 0;
    socket.on('data', (d: Buffer) => (bytes += d.length));
    socket.on('error', () => undefined);
    const timer = setTimeout(() => {
      socket.destroy();
      resolve('open');
    }, ms);
    socket.once('close', () => {
      clearTimeout(timer);
      resolve(bytes === 0 ? 'dropped' : 'open');
    });
  });
}

/** The value of one sample of GET /metrics on `admin` (0 when the series is absent). */
export async function metric(admin: string, name: string, labels: Record<string, string>): Promise<number> {
  const res = await request(`${admin}/metrics`, { signal: AbortSignal.timeout(5000) });
  const text = await res.body.text();
  const want = Object.entries(labels).map(([k, v]) => `${k}="${v}"`);
  for (const line of text.split('\n')) {
    if (!line.startsWith(`${name}{`) && !line.startsWith(`${name} `)) continue;
    if (want.every((l) => line.includes(l))) return Number(line.slice(line.lastIndexOf(' ') + 1));
  }
  return 0;
}

/** Polls `read` every 20 ms until it returns `want`; throws naming `what` and the last value after `ms`. */
export async function waitFor<T>(read: () => Promise<T>, want: T, what: string, ms = 3000): Promise<void> {
  const t0 = performance.now();
  let last = await read();
  while (last !== want) {
    if (performance.now() - t0 > ms)
      throw new Error(`${what}: ${String(last)}, not ${String(want)}, after ${ms} ms`);
    await new Promise((r) => setTimeout(r, 20));
    last = await read();
  }
}

/**
 * Writes `GET path` for `host` on an open socket (keep-alive) and resolves with the whole reply
 * (sized or chunked body); rejects after `timeoutMs`.
 */
export function requestOn(socket: Socket, host: string, path = '/', timeoutMs = 5000): Promise<string> {
  return new Promise((resolve, reject) => {
    let text = '';
    const onData = (d: Buffer) => {
      text += d.toString('latin1');
      const end = text.indexOf('\r\n\r\n');
      if (end === -1) return;
      const length = /content-length: (\d+)/i.exec(text.slice(0, end));
      const whole =
        length !== null ? text.length >= end + 4 + Number(length[1]) : text.endsWith('\r\n0\r\n\r\n');
      if (!whole) return;
      clearTimeout(timer);
      socket.off('data', onData);
      resolve(text);
    };
    const timer = setTimeout(() => {
      socket.off('data', onData);
      reject(new Error(`no whole reply within ${timeoutMs} ms: ${JSON.stringify(text.slice(0, 300))}`));
    }, timeoutMs);
    socket.on('data', onData);
    socket.write(`GET ${path} HTTP/1.1\r\nhost: ${host}\r\n\r\n`);
  });
}
