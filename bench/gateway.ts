// The gateway phase of `npm run bench` (issue 16): req/s through meshlet's gateway listener with an RS256 JWT (key cached from a JWKS) against the same gateway without auth, and nginx as an edge proxy, interleaved in one run.
//
// One meshlet serves both gateway routes (/jwt/ needs a valid RS256 bearer token whose key the
// gateway fetched once from a JWKS served by this process; /open/ is public), so the ratio is the
// cost of authentication alone. The access log is off for both. nginx (1 worker, proxy_pass with
// keep-alive) is the edge proxy baseline. Closed loop, 32 connections, the median of the rounds.
//
// Standalone (prints the section; writes nothing): node bench/gateway.ts [--quick]
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import { join } from 'node:path';
import { exportJWK, generateKeyPair, SignJWT } from 'jose';
import { type ClosedLoopResult, closedLoop, closedLoopTool } from './lib/load.ts';
import { freePort, killAll, start, waitForPort } from './lib/proc.ts';
import { meshletMain, startNginxProxy, startUpstream, type Target } from './lib/targets.ts';

/** What the gateway phase measured. */
export interface GatewayResults {
  plan: { rounds: number; seconds: number; connections: number; tool: string };
  /** Median req/s per target key: `gateway-jwt`, `gateway-open`, `nginx-edge`. */
  rps: Record<string, number>;
  /** Per-round results per target key. */
  runs: Record<string, ClosedLoopResult[]>;
  labels: Record<string, string>;
  /** gateway-jwt ÷ gateway-open (target ≥ 0.7). */
  jwtRatio: number | null;
  /** gateway-jwt-verify ÷ gateway-open: every request's signature checked. */
  verifyRatio: number | null;
  /** gateway-open ÷ nginx-edge. */
  vsNginx: number | null;
  /** gateway-jwt ÷ nginx-edge. */
  jwtVsNginx: number | null;
  notes: string[];
}

const CONNECTIONS = 32;

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s.length === 0 ? Number.NaN : s[Math.floor(s.length / 2)]!;
}

/** Runs the phase; `log` gets progress lines. */
export async function runGatewayPhase(o: {
  quick: boolean;
  dir: string;
  log: (line: string) => void;
  stopping: () => boolean;
}): Promise<GatewayResults> {
  const rounds = o.quick ? 1 : 3;
  const seconds = o.quick ? 3 : 6;
  const notes: string[] = [];
  const { target: upstream } = await startUpstream(o.dir);

  // The JWKS the gateway fetches once, and a token signed with its key.
  const { privateKey, publicKey } = await generateKeyPair('RS256');
  const jwk = { ...(await exportJWK(publicKey)), kid: 'bench', alg: 'RS256', use: 'sig' };
  let jwksFetches = 0;
  const jwks = createServer((_req, res) => {
    jwksFetches++;
    res.writeHead(200, { 'content-type': 'application/json' });
    res.end(JSON.stringify({ keys: [jwk] }));
  });
  await new Promise<void>((resolve) => jwks.listen(0, '127.0.0.1', resolve));
  const jwksPort = (jwks.address() as AddressInfo).port;
  const token = await new SignJWT({ sub: 'bench-user', tenant: 'bench' })
    .setProtectedHeader({ alg: 'RS256', kid: 'bench' })
    .setAudience('bench')
    .setExpirationTime('2h')
    .sign(privateKey);

  const [gwPort, outbound, admin] = [await freePort(), await freePort(), await freePort()];
  const conf = join(o.dir, 'gateway.yaml');
  writeFileSync(
    conf,
    `listeners:
  outbound: { port: ${outbound} }
  admin: { port: ${admin} }
  adminGrpc: { enabled: false }
  gateway: { address: 127.0.0.1, port: ${gwPort} }
registry: { type: static, endpoints: { bench: ["127.0.0.1:${upstream.port}"] } }
accessLog: { enabled: false }
gateway:
  auth:
    partners: { type: jwt, jwksUrl: "http://127.0.0.1:${jwksPort}/jwks.json", audience: bench, claims: { sub: x-user-id } }
    uncached: { type: jwt, jwksUrl: "http://127.0.0.1:${jwksPort}/jwks.json", audience: bench, claims: { sub: x-user-id }, verifiedCacheSize: 0 }
  routes:
    - { match: { pathPrefix: /jwt/ }, upstream: bench, stripPrefix: true, auth: [partners] }
    - { match: { pathPrefix: /jwt-verify/ }, upstream: bench, stripPrefix: true, auth: [uncached] }
    - { match: { pathPrefix: /open/ }, upstream: bench, stripPrefix: true }
`,
  );
  const child = start(process.execPath, [meshletMain(), 'run', '--config', conf], {
    logFile: join(o.dir, 'gateway.log'),
  });
  await waitForPort(gwPort, 20_000, child);
  const nginx = await startNginxProxy(upstream.port, o.dir);
  if (nginx === null) notes.push('nginx not installed: no edge proxy row');

  const labels: Record<string, string> = {
    'gateway-jwt': 'meshlet gateway, RS256 JWT (key cached from the JWKS, verified token cached)',
    'gateway-jwt-verify': 'meshlet gateway, RS256 JWT verified on every request (verifiedCacheSize: 0)',
    'gateway-open': 'meshlet gateway, public route (no auth)',
    'nginx-edge': 'nginx edge proxy (1 worker, keep-alive upstream)',
  };
  const loads: { key: string; port: number; path: string; headers?: string[] }[] = [
    { key: 'gateway-jwt', port: gwPort, path: '/jwt/', headers: [`Authorization: Bearer ${token}`] },
    {
      key: 'gateway-jwt-verify',
      port: gwPort,
      path: '/jwt-verify/',
      headers: [`Authorization: Bearer ${token}`],
    },
    { key: 'gateway-open', port: gwPort, path: '/open/' },
    ...(nginx === null ? [] : [{ key: 'nginx-edge', port: (nginx as Target).port, path: '/' }]),
  ];
  const runs: Record<string, ClosedLoopResult[]> = {};
  // Warm-up: JIT, pools, and the one JWKS fetch.
  for (const l of loads) {
    await closedLoop(l.port, {
      connections: CONNECTIONS,
      durationS: 1,
      path: l.path,
      ...(l.headers ? { headers: l.headers } : {}),
    });
  }
  for (let r = 0; r < rounds && !o.stopping(); r++) {
    for (const l of loads) {
      const res = await closedLoop(l.port, {
        connections: CONNECTIONS,
        durationS: seconds,
        path: l.path,
        ...(l.headers ? { headers: l.headers } : {}),
      });
      if (res.errors > 0) notes.push(`${l.key} round ${r + 1}: ${res.errors} errors or non-2xx answers`);
      (runs[l.key] ??= []).push(res);
      o.log(`  ${l.key.padEnd(14)} ${Math.round(res.rps)} req/s, p99 ${res.p99Ms.toFixed(2)} ms`);
    }
  }
  notes.push(`JWKS fetched ${jwksFetches} time(s) during the phase (one per jwt authenticator)`);
  await new Promise<void>((resolve) => jwks.close(() => resolve()));
  const rps: Record<string, number> = {};
  for (const [k, v] of Object.entries(runs)) rps[k] = median(v.map((x) => x.rps));
  const ratio = (a: string, b: string) =>
    rps[a] === undefined || rps[b] === undefined ? null : Math.round((rps[a] / rps[b]) * 100) / 100;
  return {
    plan: { rounds, seconds, connections: CONNECTIONS, tool: closedLoopTool },
    rps,
    runs,
    labels,
    jwtRatio: ratio('gateway-jwt', 'gateway-open'),
    verifyRatio: ratio('gateway-jwt-verify', 'gateway-open'),
    vsNginx: ratio('gateway-open', 'nginx-edge'),
    jwtVsNginx: ratio('gateway-jwt', 'nginx-edge'),
    notes,
  };
}

/** The markdown section of the phase. */
export function renderGateway(g: GatewayResults): string[] {
  const L = [
    '',
    '## Gateway mode (edge listener)',
    '',
    `Closed loop, ${g.plan.connections} connections, ${g.plan.tool}, median of ${g.plan.rounds} × ${g.plan.seconds} s, interleaved.`,
    '',
    '| target | req/s | p99 ms |',
    '| --- | --- | --- |',
  ];
  for (const [key, list] of Object.entries(g.runs)) {
    L.push(
      `| ${g.labels[key] ?? key} | ${Math.round(g.rps[key] ?? 0)} | ${median(list.map((x) => x.p99Ms)).toFixed(2)} |`,
    );
  }
  const fmt = (x: number | null) => (x === null ? 'n/a' : `${x.toFixed(2)}×`);
  L.push('');
  L.push(
    `- JWT (RS256, cached key) vs no auth: **${fmt(g.jwtRatio)}** (target ≥ 0.70×: ${g.jwtRatio === null ? 'n/a' : g.jwtRatio >= 0.7 ? 'met' : 'NOT met'})`,
  );
  L.push(`- JWT verified on every request (no token cache) vs no auth: ${fmt(g.verifyRatio)}`);
  L.push(`- gateway without auth vs nginx edge proxy: **${fmt(g.vsNginx)}**; with JWT: ${fmt(g.jwtVsNginx)}`);
  for (const n of g.notes) L.push(`- ${n}`);
  return L;
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const quick = process.argv.includes('--quick');
  const dir = mkdtempSync(join(os.tmpdir(), 'meshlet-bench-gw-'));
  try {
    const g = await runGatewayPhase({ quick, dir, log: (l) => console.error(l), stopping: () => false });
    process.stdout.write(`${renderGateway(g).join('\n')}\n`);
  } finally {
    await killAll();
    rmSync(dir, { recursive: true, force: true });
  }
}
