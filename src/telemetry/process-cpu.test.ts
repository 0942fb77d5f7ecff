// The process CPU series count the process's CPU time from its start, and grow with work.
import { Registry } from 'prom-client';
import { describe, expect, it } from 'vitest';
import { registerProcessCpu } from './process-cpu.ts';

async function read(registry: Registry): Promise<Record<string, number>> {
  const out: Record<string, number> = {};
  for (const m of await registry.getMetricsAsJSON()) out[m.name] = m.values[0]?.value ?? NaN;
  return out;
}

describe('registerProcessCpu', () => {
  it("reads the process's CPU time since start, user + system = total, growing with work", async () => {
    const registry = new Registry();
    registerProcessCpu(registry, 'meshlet_');
    const before = process.cpuUsage();
    const first = await read(registry);
    expect(first.meshlet_process_cpu_user_seconds_total).toBeGreaterThanOrEqual(before.user / 1e6);
    expect(first.meshlet_process_cpu_system_seconds_total).toBeGreaterThanOrEqual(before.system / 1e6);
    expect(first.meshlet_process_cpu_seconds_total).toBeCloseTo(
      first.meshlet_process_cpu_user_seconds_total! + first.meshlet_process_cpu_system_seconds_total!,
      6,
    );
    const until = performance.now() + 50;
    let x = 0;
    while (performance.now() < until) x += Math.sqrt(x + 1);
    expect(x).toBeGreaterThan(0);
    const second = await read(registry);
    expect(second.meshlet_process_cpu_user_seconds_total).toBeGreaterThan(
      first.meshlet_process_cpu_user_seconds_total!,
    );
    expect(second.meshlet_process_cpu_seconds_total).toBeGreaterThan(
      first.meshlet_process_cpu_seconds_total!,
    );
  });
});
