// `meshlet health`: this instance's checks, each upstream's healthy/total, and an overall status.
import {
  AdminUnreachable,
  readAdmin,
  type ReadyAnswer,
  table,
  type UpstreamsAnswer,
} from './admin-client.ts';
import { EXIT } from './exit-codes.ts';

/** The overall verdict and its reasons. */
export interface HealthReport {
  status: 'healthy' | 'degraded';
  reasons: string[];
  checks: ReadyAnswer['checks'];
  registry: UpstreamsAnswer['registry'];
  upstreams: { name: string; healthy: number; total: number; synced: boolean }[];
}

/**
 * Degraded when `/ready` is not 200 (a failing check: registry not synced, app critical, draining),
 * when the Consul agent is unreachable, or when an upstream has no healthy endpoint.
 */
export function judge(readyStatus: number, ready: ReadyAnswer, answer: UpstreamsAnswer): HealthReport {
  const reasons: string[] = [];
  if (readyStatus !== 200) {
    for (const [name, c] of Object.entries(ready.checks)) if (!c.ok) reasons.push(`${name}: ${c.detail}`);
    if (reasons.length === 0) reasons.push(`/ready answered ${readyStatus}`);
  }
  if (answer.registry.type === 'consul' && answer.registry.reachable === false) {
    reasons.push(`consul: ${ready.checks.consul?.detail ?? 'unreachable'}`);
  }
  const upstreams = Object.keys(answer.upstreams)
    .sort()
    .map((name) => {
      const u = answer.upstreams[name]!;
      return { name, healthy: u.healthy, total: u.total, synced: u.synced };
    });
  for (const u of upstreams) if (u.healthy === 0) reasons.push(`upstream ${u.name}: no healthy endpoint`);
  return {
    status: reasons.length === 0 ? 'healthy' : 'degraded',
    reasons,
    checks: ready.checks,
    registry: answer.registry,
    upstreams,
  };
}

/** Prints the report (text or `--json`). Exit 0 healthy, 1 degraded or admin API unreachable. */
export async function healthCommand(admin: string, json: boolean): Promise<number> {
  let report: HealthReport;
  try {
    const [ready, upstreams] = await Promise.all([
      readAdmin<ReadyAnswer>(admin, '/ready', ['checks'], [200, 503]),
      readAdmin<UpstreamsAnswer>(admin, '/upstreams', ['registry', 'upstreams']),
    ]);
    report = judge(ready.status, ready.body, upstreams.body);
  } catch (err) {
    if (!(err instanceof AdminUnreachable)) throw err;
    process.stderr.write(`meshlet: ${err.message}\n`);
    return EXIT.runtime;
  }
  if (json) {
    const { status, reasons, checks, upstreams } = report;
    process.stdout.write(`${JSON.stringify({ status, reasons, checks, upstreams }, null, 2)}\n`);
  } else {
    const lines = [`status: ${report.status}`];
    for (const r of report.reasons) lines.push(`  - ${r}`);
    lines.push('', 'checks:');
    const checkRows = Object.entries(report.checks).map(([name, c]) => [
      `  ${name}`,
      c.ok ? 'ok' : 'FAIL',
      c.detail,
    ]);
    if (checkRows.length > 0) lines.push(table(checkRows));
    lines.push('', 'upstreams:');
    const upstreamRows = report.upstreams.map((u) => [
      `  ${u.name}`,
      `${u.healthy}/${u.total}`,
      u.healthy === 0 ? 'no healthy endpoint' : u.synced ? 'ok' : 'not synced',
    ]);
    lines.push(upstreamRows.length === 0 ? '  none' : table(upstreamRows));
    process.stdout.write(`${lines.join('\n')}\n`);
  }
  return report.status === 'healthy' ? EXIT.ok : EXIT.runtime;
}
