// Fixture of the gateway reload tests: a daemon run from a config file the test rewrites and reloads, and its gateway metric series by label.
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { stringify } from 'yaml';
import { validateConfig } from '../../src/config/load-config.ts';
import type { ConfigInput } from '../../src/config/schema.ts';
import { Daemon } from '../../src/daemon.ts';
import { createLogger } from '../../src/telemetry/logger.ts';
import { tempDir } from '../helpers/temp-dir.ts';
import { gatewayUrl } from './fixtures.ts';

/** Listeners on free loopback ports with a gateway, without the gRPC admin API. */
export const GATEWAY_LISTENERS = {
  outbound: { port: 0 },
  admin: { port: 0 },
  adminGrpc: { enabled: false },
  gateway: { address: '127.0.0.1', port: 0 },
};

/** A running gateway daemon whose config file the test rewrites. */
export interface ReloadableGateway {
  readonly daemon: Daemon;
  /** The gateway's base URL. */
  readonly gw: string;
  /** The admin API's base URL. */
  readonly admin: string;
  /** Writes `input` as the config file and reloads it; whether it was applied. */
  reload(input: ConfigInput): Promise<boolean>;
  /** The `meshlet_gateway_*` sample lines carrying a `label` label (`route`, `tenant`, …), sorted. */
  series(label: string): Promise<string[]>;
  close(): Promise<void>;
}

/** Starts a daemon from `input`, written to `meshlet.yaml` in `dir` (default a new temporary directory). */
export async function startReloadableGateway(
  input: ConfigInput,
  dir: string = tempDir('meshlet-gw-reload-'),
): Promise<ReloadableGateway> {
  const file = join(dir, 'meshlet.yaml');
  writeFileSync(file, stringify(input));
  const daemon = await Daemon.start(validateConfig(input), {
    logger: createLogger('error'),
    configFile: file,
    processMetrics: false,
  });
  const admin = `http://127.0.0.1:${daemon.addresses().admin.port}`;
  return {
    daemon,
    gw: gatewayUrl(daemon),
    admin,
    reload: (next) => {
      writeFileSync(file, stringify(next));
      return daemon.reload();
    },
    series: async (label) =>
      (await (await fetch(`${admin}/metrics`)).text())
        .split('\n')
        .filter((l) => l.startsWith('meshlet_gateway_') && l.includes(`${label}="`))
        .sort(),
    close: () => daemon.shutdown('test'),
  };
}
