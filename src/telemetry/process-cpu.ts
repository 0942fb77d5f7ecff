// The process CPU series (`meshlet_process_cpu_*_seconds_total`), read from process.cpuUsage() at scrape time.
import { Counter, type Registry } from 'prom-client';

/**
 * Registers `meshlet_process_cpu_user_seconds_total`, `…_system_seconds_total` and
 * `meshlet_process_cpu_seconds_total`, as prom-client's default collector names them, counting from
 * the process's start (prom-client's count from when it registered). meshlet has its own because
 * prom-client's loads OpenTelemetry's API (51 modules, 43 KiB of JS held in every idle daemon) for
 * exemplars meshlet never enables.
 */
export function registerProcessCpu(registry: Registry, prefix: string): void {
  const registers = [registry];
  let last = { user: 0, system: 0 };
  const user = new Counter({
    name: `${prefix}process_cpu_user_seconds_total`,
    help: 'Total user CPU time spent in seconds.',
    registers,
    // One collect sets all three, as prom-client's does.
    collect() {
      const now = process.cpuUsage();
      const userS = (now.user - last.user) / 1e6;
      const systemS = (now.system - last.system) / 1e6;
      last = now;
      user.inc(userS);
      system.inc(systemS);
      total.inc(userS + systemS);
    },
  });
  const system = new Counter({
    name: `${prefix}process_cpu_system_seconds_total`,
    help: 'Total system CPU time spent in seconds.',
    registers,
  });
  const total = new Counter({
    name: `${prefix}process_cpu_seconds_total`,
    help: 'Total user and system CPU time spent in seconds.',
    registers,
  });
}
