// Real backends for the registry tests on 127.0.0.1: etcd and redis-server processes in temp dirs, and a small UDP DNS server.
import { type ChildProcess, spawn } from 'node:child_process';
import { createSocket, type Socket } from 'node:dgram';
import { mkdtempSync, rmSync } from 'node:fs';
import { connect, createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as packet from 'dns-packet';

/** A port free a moment ago. */
export async function freePort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as { port: number };
  await new Promise((resolve) => server.close(resolve));
  return port;
}

async function waitForPort(
  port: number,
  timeoutMs: number,
  proc: ChildProcess,
  log: string[],
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (proc.exitCode !== null)
      throw new Error(`process exited ${proc.exitCode}: ${log.join('').slice(-2000)}`);
    const ok = await new Promise<boolean>((resolve) => {
      const s = connect({ host: '127.0.0.1', port });
      s.once('connect', () => {
        s.destroy();
        resolve(true);
      });
      s.once('error', () => resolve(false));
    });
    if (ok) return;
    if (Date.now() > deadline)
      throw new Error(`port ${port} not open within ${timeoutMs} ms: ${log.join('').slice(-2000)}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

/** A server process this test started: stopped by its PID only. */
abstract class ServerProcess {
  proc: ChildProcess | null = null;
  readonly dir = mkdtempSync(join(tmpdir(), 'meshlet-registry-'));
  readonly log: string[] = [];
  port = 0;

  protected abstract args(): [string, string[]];

  /** Starts (or starts again on the same port and data dir). */
  async start(): Promise<void> {
    if (this.port === 0) this.port = await freePort();
    const [cmd, args] = this.args();
    const proc = spawn(cmd, args, { stdio: ['ignore', 'pipe', 'pipe'], cwd: this.dir });
    proc.stdout!.on('data', (d) => this.log.push(String(d)));
    proc.stderr!.on('data', (d) => this.log.push(String(d)));
    this.proc = proc;
    await waitForPort(this.port, 15_000, proc, this.log);
  }

  /** Stops the process by its PID (SIGTERM, then SIGKILL after 5 s) and waits for its exit. */
  async stop(signal: NodeJS.Signals = 'SIGTERM'): Promise<void> {
    const proc = this.proc;
    this.proc = null;
    if (proc === null || proc.exitCode !== null || proc.signalCode !== null) return;
    const exited = new Promise((resolve) => proc.once('exit', resolve));
    process.kill(proc.pid!, signal);
    const timer = setTimeout(() => proc.pid !== undefined && process.kill(proc.pid, 'SIGKILL'), 5000);
    await exited;
    clearTimeout(timer);
  }

  /** Stops and removes the temp dir. */
  async close(): Promise<void> {
    await this.stop();
    rmSync(this.dir, { recursive: true, force: true });
  }
}

/** One etcd member (Debian's etcd-server) with its data in a temp dir. */
export class EtcdServer extends ServerProcess {
  peerPort = 0;

  get url(): string {
    return `http://127.0.0.1:${this.port}`;
  }

  override async start(): Promise<void> {
    if (this.peerPort === 0) this.peerPort = await freePort();
    await super.start();
  }

  /** Data dir; `wipe` forgets everything (a member restored empty). */
  wipe(): void {
    rmSync(join(this.dir, 'data'), { recursive: true, force: true });
  }

  protected args(): [string, string[]] {
    const peer = `http://127.0.0.1:${this.peerPort}`;
    return [
      'etcd',
      [
        '--name=t',
        `--data-dir=${join(this.dir, 'data')}`,
        `--listen-client-urls=${this.url}`,
        `--advertise-client-urls=${this.url}`,
        `--listen-peer-urls=${peer}`,
        `--initial-advertise-peer-urls=${peer}`,
        `--initial-cluster=t=${peer}`,
        '--log-level=error',
      ],
    ];
  }
}

/** One redis-server without persistence (a restart loses every key), keyspace events on. */
export class RedisServer extends ServerProcess {
  readonly extra: string[];

  constructor(extra: string[] = []) {
    super();
    this.extra = extra;
  }

  get url(): string {
    return `redis://127.0.0.1:${this.port}`;
  }

  protected args(): [string, string[]] {
    return [
      'redis-server',
      [
        '--port',
        String(this.port),
        '--bind',
        '127.0.0.1',
        '--save',
        '',
        '--appendonly',
        'no',
        '--dir',
        this.dir,
        '--notify-keyspace-events',
        'K$gx',
        ...this.extra,
      ],
    ];
  }
}

/** Records the DNS test server answers with. */
export interface ZoneRecord {
  type: 'A' | 'AAAA' | 'SRV';
  ttl: number;
  data: string | { priority: number; weight: number; port: number; target: string };
}

/**
 * An authoritative-enough DNS server over UDP for tests: answers A/AAAA/SRV from `zone` (with the
 * targets' A records in the additional section for SRV, as Kubernetes does), NXDOMAIN for unknown
 * names, and drops every query while `down` (clients time out).
 */
export class DnsServer {
  readonly zone = new Map<string, ZoneRecord[]>();
  /**
   * Record types this server fails to answer, as broken resolvers do (some never answer AAAA):
   * `servfail` answers SERVFAIL, `drop` does not answer (the client times out).
   */
  readonly failTypes = new Map<string, 'servfail' | 'drop'>();
  /** Names (lower case) this server fails to answer, like `failTypes`; they are left out of SRV additionals too. */
  readonly failNames = new Map<string, 'servfail' | 'drop'>();
  down = false;
  queries = 0;
  #socket: Socket | null = null;
  port = 0;

  async start(): Promise<void> {
    const socket = createSocket('udp4');
    socket.on('message', (msg, rinfo) => {
      let q: packet.Packet;
      try {
        q = packet.decode(msg);
      } catch {
        return;
      }
      this.queries++;
      if (this.down) return;
      const question = q.questions?.[0];
      const fail =
        this.failNames.get(question?.name.toLowerCase() ?? '') ?? this.failTypes.get(question?.type ?? '');
      if (fail === 'drop') return;
      const answer =
        fail === 'servfail'
          ? packet.encode({ type: 'response', id: q.id, questions: q.questions, flags: 2 })
          : this.#answer(q);
      socket.send(answer, rinfo.port, rinfo.address);
    });
    await new Promise<void>((resolve) => socket.bind(this.port, '127.0.0.1', resolve));
    this.port = socket.address().port;
    this.#socket = socket;
  }

  get address(): string {
    return `127.0.0.1:${this.port}`;
  }

  /** Sets the records of `name` (replacing those of the same types). */
  set(name: string, records: ZoneRecord[]): void {
    this.zone.set(name.toLowerCase(), records);
  }

  #answer(q: packet.Packet): Buffer {
    const question = q.questions![0]!;
    const records = this.zone.get(question.name.toLowerCase());
    const base = { type: 'response' as const, id: q.id, questions: q.questions };
    if (records === undefined) {
      return packet.encode({ ...base, flags: packet.AUTHORITATIVE_ANSWER | 3 });
    }
    const answers = records
      .filter((r) => r.type === question.type)
      .map((r) => ({ type: r.type, name: question.name, ttl: r.ttl, data: r.data }) as packet.Answer);
    const additionals: packet.Answer[] = [];
    for (const r of records) {
      if (r.type !== 'SRV' || question.type !== 'SRV' || typeof r.data === 'string') continue;
      if (this.failNames.has(r.data.target.toLowerCase())) continue;
      for (const t of this.zone.get(r.data.target.toLowerCase()) ?? []) {
        if (t.type === 'A')
          additionals.push({ type: 'A', name: r.data.target, ttl: t.ttl, data: t.data as string });
      }
    }
    return packet.encode({ ...base, flags: packet.AUTHORITATIVE_ANSWER, answers, additionals });
  }

  async close(): Promise<void> {
    const s = this.#socket;
    this.#socket = null;
    if (s !== null) await new Promise<void>((resolve) => s.close(() => resolve()));
  }
}
