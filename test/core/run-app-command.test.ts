// `meshlet run --config FILE -- CMD` is refused (exit 2, one line) until the app wrapper exists, before anything starts.
import { connect, createServer } from 'node:net';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { runCli, writeConfig } from '../helpers/meshlet.ts';

const DAEMON_ENTRY = fileURLToPath(new URL('../../src/cli/daemon-main.ts', import.meta.url));

/** A port free a moment ago on 127.0.0.1. */
async function freePort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as { port: number };
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return port;
}

/** Whether something accepts connections on 127.0.0.1:port. */
function listening(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = connect(port, '127.0.0.1');
    socket.once('connect', () => {
      socket.destroy();
      resolve(true);
    });
    socket.once('error', () => resolve(false));
  });
}

describe('meshlet run -- CMD (app wrapper not built yet)', () => {
  it('exits 2 with one line naming the command; nothing started, nothing listening', async () => {
    const [outbound, admin] = [await freePort(), await freePort()];
    const file = writeConfig({
      listeners: { outbound: { port: outbound }, admin: { port: admin } },
      registry: { type: 'static', endpoints: {} },
    });
    const { code, stdout, stderr } = await runCli(['run', '--config', file, '--', 'node', '-e', '1'], 10_000);
    expect(code).toBe(2);
    expect(stderr).toBe(
      'meshlet: running an app under meshlet (-- node -e 1) is not supported yet; start the app separately\n',
    );
    // No "meshlet started" (or any other) log line: the daemon never ran.
    expect(stdout).toBe('');
    expect(await listening(outbound)).toBe(false);
    expect(await listening(admin)).toBe(false);
  });

  it('the daemon entry refuses a trailing command the same way', async () => {
    const file = writeConfig({ listeners: { outbound: { port: 0 }, admin: { port: 0 } } });
    const args = ['--config', file, '--log-level', 'info', '--', 'sleep', '30'];
    const { code, stdout, stderr } = await runCli(args, 10_000, DAEMON_ENTRY);
    expect(code).toBe(2);
    expect(stderr).toMatch(/^meshlet: running an app under meshlet \(-- sleep 30\) is not supported yet/);
    expect(stdout).toBe('');
  });
});
