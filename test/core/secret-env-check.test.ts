// `secretEnv` naming an unset or empty variable: `config check` and `run` both refuse the file (exit 2), naming the key path and the variable.
import { afterEach, describe, expect, it } from 'vitest';
import { stringify } from 'yaml';
import { runCli, spawnMeshlet, writeConfig } from '../helpers/meshlet.ts';

const USERS = 'MESHLET_TEST_USERS_JWT_SECRET';
const PARTNERS = 'MESHLET_TEST_PARTNERS_JWT_SECRET';

/** A gateway whose `jwt` authenticators take their HMAC secret from the variables named. */
function gatewayConfig(secrets: Record<string, string>) {
  return {
    listeners: {
      outbound: { port: 0 },
      admin: { port: 0 },
      adminGrpc: { enabled: false },
      gateway: { address: '127.0.0.1', port: 0 },
    },
    registry: { endpoints: { orders: ['127.0.0.1:9'] } },
    gateway: {
      auth: Object.fromEntries(
        Object.entries(secrets).map(([name, variable]) => [name, { type: 'jwt', secretEnv: variable }]),
      ),
      routes: [{ match: { pathPrefix: '/orders/' }, upstream: 'orders', auth: Object.keys(secrets) }],
    },
  };
}

/** Both verbs on `file`: exit code and stderr lines. */
async function bothVerbs(file: string): Promise<{ verb: string; code: number | null; lines: string[] }[]> {
  const out = [];
  for (const args of [
    ['config', 'check', file],
    ['run', '--config', file],
  ]) {
    const { code, stderr } = await runCli(args);
    out.push({ verb: args[0]!, code, lines: stderr.trim().split('\n') });
  }
  return out;
}

afterEach(() => {
  delete process.env[USERS];
  delete process.env[PARTNERS];
});

describe('secretEnv', () => {
  it('an unset variable: config check and run both exit 2 with one line naming the key path and the variable', async () => {
    const file = writeConfig(stringify(gatewayConfig({ users: USERS })));
    for (const { verb, code, lines } of await bothVerbs(file)) {
      expect([verb, code, lines.length]).toEqual([verb, 2, 1]);
      expect(lines[0]).toBe(
        `meshlet: invalid config: ${file}: gateway.auth.users.secretEnv: environment variable ${USERS} is unset or empty`,
      );
    }
  });

  it('config check --offline skips the machine-bound checks (an unset variable, a missing secretFile) and still refuses a bad key', async () => {
    const config = gatewayConfig({ users: USERS });
    const withFile = {
      ...config,
      gateway: {
        ...config.gateway,
        auth: {
          ...config.gateway.auth,
          partners: { type: 'jwt', secretFile: '/nonexistent/meshlet-jwt.secret' },
        },
      },
    };
    const file = writeConfig(stringify(withFile));
    const offline = await runCli(['config', 'check', '--offline', file]);
    expect({ code: offline.code, stdout: offline.stdout.trim() }).toEqual({
      code: 0,
      stdout: `${file}: ok (1 upstream(s), 0 route(s), registry static)`,
    });
    expect((await runCli(['config', 'check', file])).code).toBe(2);
    const bad = writeConfig(
      stringify({ ...withFile, upstreams: { orders: { timeouts: { connect: 'fast' } } } }),
    );
    const refused = await runCli(['config', 'check', '--offline', bad]);
    expect([refused.code, refused.stderr]).toEqual([
      2,
      expect.stringContaining('upstreams.orders.timeouts.connect'),
    ]);
  });

  it('an empty variable counts as unset, as the daemon reads it', async () => {
    process.env[USERS] = '';
    const file = writeConfig(stringify(gatewayConfig({ users: USERS })));
    for (const { verb, code, lines } of await bothVerbs(file)) {
      expect([verb, code, lines.length]).toEqual([verb, 2, 1]);
      expect(lines[0]).toContain(
        `gateway.auth.users.secretEnv: environment variable ${USERS} is unset or empty`,
      );
    }
  });

  it('every unset variable is named, each by its key path', async () => {
    process.env[USERS] = 'a-secret-long-enough-for-hs256-000000';
    const file = writeConfig(
      stringify(gatewayConfig({ users: USERS, partners: PARTNERS, legacy: `${PARTNERS}_OLD` })),
    );
    const { code, stderr } = await runCli(['config', 'check', file]);
    expect(code).toBe(2);
    expect(stderr).toBe(
      `meshlet: invalid config: ${file}: gateway.auth.partners.secretEnv: environment variable ${PARTNERS} is unset or empty; ` +
        `gateway.auth.legacy.secretEnv: environment variable ${PARTNERS}_OLD is unset or empty\n`,
    );
  });

  it('a set variable: config check says ok and run starts', async () => {
    process.env[USERS] = 'a-secret-long-enough-for-hs256-000000';
    const config = gatewayConfig({ users: USERS });
    const check = await runCli(['config', 'check', writeConfig(stringify(config))]);
    expect(check.code).toBe(0);
    expect(check.stdout).toContain(': ok (');
    const m = await spawnMeshlet(config as never);
    try {
      expect(m.stdout.some((l) => l.includes('"meshlet started"'))).toBe(true);
    } finally {
      m.proc.kill('SIGTERM');
      const code = await Promise.race([m.exited, new Promise((r) => setTimeout(() => r('timeout'), 10_000))]);
      if (code === 'timeout') m.proc.kill('SIGKILL');
      expect(code).toBe(0);
    }
  });
});
