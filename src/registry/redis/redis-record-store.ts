// Keeps this instance's key in Redis: set by script (never over another instance's), refreshed every ttl/3, set again when Redis lost it, announced on the channel.
import type { Logger } from '../../telemetry/logger.ts';
import type { BackendReachability } from '../backend-reachability.ts';
import {
  type ConditionalDelete,
  type ConditionalPut,
  type Expect,
  IdRefusedError,
  type InstanceIdClaim,
  namesSelf,
} from '../kv/instance-id-claim.ts';
import type { InstanceRecord } from '../kv/instance-record.ts';
import type { RecordStore } from '../kv/instance-registration.ts';
import type { RegistryMetrics } from '../kv/registry-metrics.ts';
import type { RedisClient } from './redis-connection.ts';

/** What the scripts answer for a key of another type (a hash, a list): no instance, never written over. */
const WRONG_TYPE = '(not a string key)';

/**
 * Compare-and-set: SET key value PX ttl when the key holds ARGV[1] ('' = absent). Answers
 * `{1}` when written, else `{0, what the key holds}` ('' = nothing).
 */
const SET_IF = `
local cur = redis.pcall('GET', KEYS[1])
if type(cur) == 'table' then return {0, '${WRONG_TYPE}'} end
if not cur then cur = '' end
if cur == ARGV[1] then
  redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3])
  return {1}
end
return {0, cur}`;

/** Heartbeat: PEXPIRE when the key holds ARGV[1]. Answers `{1}` when extended, `{0}` when gone, `{2, what it holds}` otherwise. */
const EXTEND_IF = `
local cur = redis.pcall('GET', KEYS[1])
if type(cur) == 'table' then return {2, '${WRONG_TYPE}'} end
if not cur then return {0} end
if cur == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return {1}
end
return {2, cur}`;

/** Compare-and-delete: DEL when the key holds one of ARGV. Answers 1 when deleted, else 0. */
const DELETE_IF = `
local cur = redis.pcall('GET', KEYS[1])
for _, v in ipairs(ARGV) do
  if cur == v then return redis.call('DEL', KEYS[1]) end
end
return 0`;

/** Values remembered per key for the delete: the last few this store sent (a write whose answer was lost may have landed). */
const SENT_KEPT = 4;

/**
 * The key `<prefix><service>:<id>` holds the record (JSON) with a TTL of `ttlMs`. A heartbeat every
 * ttl/3 extends it with PEXPIRE; a heartbeat that finds no key (Redis restarted without persistence,
 * someone deleted it) writes the record again. A meshlet that dies stops the heartbeats and the key
 * expires. Every write and delete is announced with `PUBLISH <channel> <key>`.
 *
 * Writes, heartbeats and the delete are small scripts that compare the key's value first, atomic in
 * Redis: a key another live instance holds is never written over (see {@link InstanceIdClaim}),
 * extended or deleted; one naming this instance's address and port (its earlier run) is taken over.
 * While the record is under an interim ID (a key at another address held the default one), the
 * default key is tried every check interval by the same script, and the interim key deleted (only
 * while it holds a value this store wrote) once the record is there. The stop deletes every key
 * this run wrote: the current one, and the interim one if the stop came in the middle of a move.
 */
export class RedisRecordStore implements RecordStore {
  readonly #keyOf: (id: string) => string;
  readonly #claim: InstanceIdClaim;
  readonly #client: RedisClient;
  readonly #ttlMs: number;
  readonly #channel: string;
  readonly #reach: BackendReachability;
  readonly #metrics: RegistryMetrics;
  readonly #logger: Logger;
  readonly #self: { address: string; port: number };
  #record: InstanceRecord | null = null;
  /** The value this store last wrote under the current key (what heartbeats and the delete compare). */
  #value: string | null = null;
  #stored = false;
  #heartbeat: NodeJS.Timeout | null = null;
  #removed = false;
  /** Service ID → the last values this store sent under its key (what the delete compares). */
  readonly #sent = new Map<string, string[]>();
  /** Writes and moves go one at a time. */
  #chain: Promise<unknown> = Promise.resolve();

  /**
   * @param keyOf The key of a service ID (`<prefix><service>:<id>`).
   * @param claim Picks the service ID (the configured one unless another live instance holds it).
   * @param self The address and port this instance registers (a key naming them is its own).
   * @param ttlMs The key's TTL, ms.
   */
  constructor(
    keyOf: (id: string) => string,
    claim: InstanceIdClaim,
    self: { address: string; port: number },
    ttlMs: number,
    channel: string,
    deps: { client: RedisClient; reach: BackendReachability; metrics: RegistryMetrics; logger: Logger },
  ) {
    this.#keyOf = keyOf;
    this.#claim = claim;
    this.#self = self;
    this.#ttlMs = ttlMs;
    this.#channel = channel;
    this.#client = deps.client;
    this.#reach = deps.reach;
    this.#metrics = deps.metrics;
    this.#logger = deps.logger;
  }

  /** The service ID written under. */
  get id(): string {
    return this.#claim.id;
  }

  /** `<prefix><service>:<id>` of {@link id}. */
  get key(): string {
    return this.#keyOf(this.#claim.id);
  }

  get refusal(): string | null {
    return this.#claim.refusal;
  }

  async write(record: InstanceRecord): Promise<void> {
    this.#record = record;
    this.#removed = false;
    this.#startHeartbeat();
    await this.#serial(() => this.#set());
  }

  /** Runs `step` after the writes queued before it. */
  #serial<T>(step: () => Promise<T>): Promise<T> {
    const next = this.#chain.then(step);
    this.#chain = next.catch(() => undefined);
    return next;
  }

  /** One script: SET `record` under `id` when the key holds what `expect` says, else what it holds. `onWrite` learns of a write. */
  #conditionalPut(record: InstanceRecord, onWrite: (expect: Expect) => void): ConditionalPut {
    return async (id: string, expect: Expect) => {
      const expected = expect.kind === 'absent' ? '' : expect.kind === 'mine' ? this.#value! : expect.version;
      const value = JSON.stringify({ ...record, id });
      const key = this.#keyOf(id);
      const sent = (this.#sent.get(id) ?? []).concat(value).slice(-SENT_KEPT);
      this.#sent.set(id, sent);
      const [written, held] = (await this.#client.eval(SET_IF, 1, key, expected, value, this.#ttlMs)) as [
        number,
        string?,
      ];
      if (written === 1) {
        this.#sent.set(id, [value]);
        this.#value = value;
        onWrite(expect);
        return { written: true };
      }
      const left = sent.filter((v) => v !== value);
      if (left.length === 0) this.#sent.delete(id);
      else this.#sent.set(id, left);
      if (held === undefined || held === '') return { written: false, held: null };
      return { written: false, held: { value: held, version: held, mine: held === this.#value } };
    };
  }

  /** One script: DEL the key of `id` while it holds a value this store sent there (announced on the channel). */
  readonly #conditionalDelete: ConditionalDelete = async (id: string) => {
    const values = this.#sent.get(id);
    if (values === undefined) return false;
    const key = this.#keyOf(id);
    const deleted = await this.#client.eval(DELETE_IF, 1, key, ...values);
    this.#sent.delete(id);
    if (deleted !== 1) return false;
    await this.#client.publish(this.#channel, key);
    return true;
  };

  followUp(): Promise<void> {
    return this.#serial(async () => {
      const record = this.#record;
      if (record === null || this.#removed || !this.#stored) return;
      const put = this.#conditionalPut(record, () => undefined);
      const announced: ConditionalPut = async (id, expect) => {
        const out = await put(id, expect);
        // Announced at once: the interim key's delete, announced next, must not reach peers first.
        if (out.written) await this.#client.publish(this.#channel, this.#keyOf(id)).catch(() => undefined);
        return out;
      };
      if (await this.#claim.followUp(announced, this.#conditionalDelete)) this.#metrics.registrations.inc();
    }).catch(() => undefined);
  }

  dropStale(): Promise<void> {
    return this.#serial(() => this.#claim.dropStale(this.#conditionalDelete)).catch(() => undefined);
  }

  async #set(): Promise<void> {
    const record = this.#record;
    if (record === null || this.#removed) return;
    let created = false;
    const put = this.#conditionalPut(record, (expect) => {
      created = expect.kind === 'absent';
    });
    try {
      await this.#claim.write(put, this.#stored && this.#value !== null);
      await this.#client.publish(this.#channel, this.key);
      this.#reach.ok();
      if (created || !this.#stored) this.#metrics.registrations.inc();
      this.#stored = true;
    } catch (err) {
      this.#stored = false;
      if (err instanceof IdRefusedError) {
        // Redis answered: another instance holds the key. The registration's next check retries.
        this.#reach.ok();
      } else {
        this.#reach.failed('register', err as Error);
      }
      throw err;
    }
  }

  #startHeartbeat(): void {
    if (this.#heartbeat !== null) return;
    const every = Math.max(100, Math.floor(this.#ttlMs / 3));
    this.#heartbeat = setInterval(() => void this.#beat(), every);
  }

  async #beat(): Promise<void> {
    if (this.#removed || this.#record === null || this.#claim.refusal !== null) return;
    try {
      const [state, held] = this.#stored
        ? ((await this.#client.eval(EXTEND_IF, 1, this.key, this.#value!, this.#ttlMs)) as [number, string?])
        : [0];
      this.#reach.ok();
      if (state === 1) return;
      // A second meshlet for this same instance (its address and port) wrote its record: that one
      // keeps it alive, and the two never take turns (this one's next status change takes it over).
      if (state === 2 && namesSelf(held!, this.#self)) return;
      if (this.#stored)
        this.#logger.warn({
          msg:
            state === 0
              ? 'Redis lost this instance; registering again'
              : "another instance's record replaced this instance's; registering again",
          registryKey: this.key,
        });
      await this.#serial(() => this.#set());
    } catch (err) {
      if (err instanceof IdRefusedError) return;
      this.#stored = false;
      this.#reach.failed('check_update', err as Error);
    }
  }

  /**
   * Stops the heartbeat and deletes every key this run wrote (the current one, an interim one left
   * by a move) while it holds this instance's record (never another instance's).
   */
  async remove(): Promise<void> {
    this.#removed = true;
    if (this.#heartbeat !== null) clearInterval(this.#heartbeat);
    this.#heartbeat = null;
    await this.#chain;
    this.#stored = false;
    for (const id of [...this.#sent.keys()]) {
      try {
        await this.#conditionalDelete(id);
      } catch (err) {
        this.#reach.failed('deregister', err as Error);
      }
    }
  }
}
