// Every config snippet a user may copy from README.md is valid: each ```yaml block (named by its section), the defaults its comments state, and the inline flow mappings.
import { readFileSync } from 'node:fs';
import { Service } from 'kubernetes-models/v1/Service';
import { describe, expect, it } from 'vitest';
import { parseYaml, validateConfig } from '../../src/config/load-config.ts';
import type { MeshletConfig } from '../../src/config/schema.ts';
import { parseApiKeys } from '../../src/gateway/api-key-authenticator.ts';
import { parseRecord } from '../../src/registry/kv/instance-record.ts';

const README = readFileSync(new URL('../../README.md', import.meta.url), 'utf8');
/** Config-relative paths resolve as if the file were /etc/meshlet/meshlet.yaml (validation reads no file). */
const CONFIG_DIR = '/etc/meshlet';

type Json = Record<string, unknown>;

/** One fenced block of README.md: `Section (n)` for the n-th block of that language under a heading. */
interface Block {
  id: string;
  /** Line of the opening fence, 1-based. */
  line: number;
  text: string;
}

/** The README's fenced blocks of language `lang`, each named after the heading it sits under. */
function fencedBlocks(readme: string, lang: string): Block[] {
  const lines = readme.split('\n');
  const blocks: Block[] = [];
  const perHeading = new Map<string, number>();
  let heading = '(before any heading)';
  for (let i = 0; i < lines.length; i++) {
    const fence = /^```(\S*)$/.exec(lines[i]!);
    if (fence === null) {
      heading = /^#+ (.*)$/.exec(lines[i]!)?.[1] ?? heading;
      continue;
    }
    const end = lines.indexOf('```', i + 1);
    if (fence[1] === lang) {
      const n = (perHeading.get(heading) ?? 0) + 1;
      perHeading.set(heading, n);
      blocks.push({ id: `${heading} (${n})`, line: i + 1, text: `${lines.slice(i + 1, end).join('\n')}\n` });
    }
    i = end;
  }
  return blocks;
}

/** The text of the README section under `heading` (up to the next heading outside a code block), or undefined. */
function sectionText(readme: string, heading: string): string | undefined {
  const lines = readme.split('\n');
  const start = lines.findIndex((l) => /^#+ /.test(l) && l.replace(/^#+ /, '') === heading);
  if (start < 0) return undefined;
  let end = start + 1;
  for (let fenced = false; end < lines.length; end++) {
    if (lines[end]!.startsWith('```')) fenced = !fenced;
    else if (!fenced && /^#+ /.test(lines[end]!)) break;
  }
  return lines.slice(start, end).join('\n');
}

/** 1-based line of the first occurrence of `text` in README.md, or undefined. */
function readmeLine(text: string): number | undefined {
  const at = README.indexOf(text);
  return at < 0 ? undefined : README.slice(0, at).split('\n').length;
}

const isMap = (v: unknown): v is Json => typeof v === 'object' && v !== null && !Array.isArray(v);

/** `fragment` over `base`: maps merge key by key; anything else (lists included) replaces. */
function merge(base: Json, fragment: Json): Json {
  const out: Json = { ...base };
  for (const [k, v] of Object.entries(fragment)) {
    const b = out[k];
    out[k] = isMap(b) && isMap(v) ? merge(b, v) : v;
  }
  return out;
}

/**
 * The smallest valid config the README's fragments need beneath them: an instance to register
 * (`registry.register: true` needs `service`). Written once; a fragment that needs more names it.
 */
const BASE: Json = { service: { name: 'web', port: 8080 } };
/** What `listeners.inbound` needs beside `service`: this instance's identity (`tls.source: files`). */
const TLS: Json = { tls: { cert: './certs/web.pem', key: './certs/web-key.pem', ca: './certs/ca.pem' } };

/** How a block of meshlet config is validated: as a whole file, or merged into BASE (plus `needs`). */
interface ConfigCheck {
  kind: 'whole' | 'fragment';
  needs?: Json;
  /** What the validated config must carry, so a block that validates as something else fails. */
  expect: (config: MeshletConfig) => void;
}
/** A block that is not meshlet config, checked by the parser of the file it is. */
interface OtherCheck {
  kind: 'other';
  check: (text: string) => void;
}

/** Validates parsed config as `meshlet config check --offline` does (parseYaml's duplicate-key rule included). */
function validate(check: ConfigCheck, doc: Json): MeshletConfig {
  const raw = check.kind === 'whole' ? doc : merge(merge(BASE, check.needs ?? {}), doc);
  return validateConfig(raw, 'meshlet.yaml', CONFIG_DIR);
}

function parseMap(text: string): Json {
  const doc = parseYaml(text, 'meshlet.yaml');
  if (!isMap(doc)) throw new Error(`expected a map of config keys, got ${JSON.stringify(doc)}`);
  return doc;
}

/** How each README ```yaml block is checked, by `Section (n)`. */
const YAML_CHECKS: Record<string, ConfigCheck | OtherCheck> = {
  'Configuration (1)': {
    kind: 'whole',
    expect: (c) => {
      expect(c.listeners.inbound?.allow).toEqual(['web', 'billing']);
      expect(c.upstreams.users?.hashOn).toEqual({ header: 'x-user-id' });
      expect(c.routes[0]?.match.headers).toHaveLength(2);
      expect(c.registry.type === 'static' && c.registry.file).toBe('/etc/meshlet/endpoints.yaml');
    },
  },
  'The Consul registry (1)': {
    kind: 'fragment',
    expect: (c) => {
      expect(c.registry.type === 'consul' && c.registry.filters.users?.datacenter).toBe('dc2');
    },
  },
  'The Consul registry (2)': {
    kind: 'whole',
    expect: (c) => {
      expect(c.service?.name).toBe('hello');
      expect(c.registry.type === 'consul' && c.registry.consul.address).toBe('http://consul:8500');
    },
  },
  'The Consul registry (3)': {
    kind: 'whole',
    expect: (c) => {
      expect(c.service).toBeUndefined();
      expect(Object.keys(c.upstreams)).toEqual(['hello']);
    },
  },
  'The DNS registry (Kubernetes, Istio) (1)': {
    kind: 'whole',
    expect: (c) => {
      expect(c.registry.type === 'dns' && Object.keys(c.registry.upstreams)).toEqual([
        'users',
        'orders',
        'pay',
      ]);
    },
  },
  'The DNS registry (Kubernetes, Istio) (2)': {
    kind: 'other',
    check: (text) => {
      // A Kubernetes headless Service: checked against the Kubernetes schema, as deploy/kubernetes is.
      const service = new Service(parseYaml(text) as ConstructorParameters<typeof Service>[0]);
      service.validate();
      expect(service.spec?.clusterIP).toBe('None');
    },
  },
  'The etcd registry (1)': {
    kind: 'fragment',
    expect: (c) => {
      expect(c.registry.type === 'etcd' && c.registry.etcd.auth?.passwordFile).toBe(
        '/etc/meshlet/etcd-password',
      );
    },
  },
  'The Redis registry (1)': {
    kind: 'fragment',
    expect: (c) => {
      expect(c.registry.type === 'redis' && c.registry.redis.sentinel?.name).toBe('mymaster');
    },
  },
  'mTLS between sidecars (1)': {
    kind: 'fragment',
    needs: TLS,
    expect: (c) => {
      expect(c.listeners.inbound?.rateLimit).toEqual({ perSecond: 100, burst: 200 });
    },
  },
  'Gateway mode (1)': {
    kind: 'whole',
    expect: (c) => {
      expect(c.gateway?.routes).toHaveLength(3);
    },
  },
  'Gateway mode (2)': {
    kind: 'other',
    // The `apiKey` authenticator's keys file (`api-keys.yaml`), read by the parser the gateway uses.
    check: (text) => {
      expect(parseApiKeys(text, 'api-keys.yaml').map((k) => k.name)).toEqual(['acme-web', 'ci-bot']);
    },
  },
};

/** README ```yaml blocks no parser checks, `Section (n)` → why. None today: every block is checked above. */
const YAML_SKIPPED: Record<string, string> = {};

/**
 * Defaults the README's comments state that the schema does not fill in (meshlet works them out
 * at run time), `Section (n) key.path` → why. Every other `default X` in a comment is checked.
 */
const RUNTIME_DEFAULTS: Record<string, string> = {
  'Configuration (1) service.address': 'the first non-internal IPv4, found at start',
  'Configuration (1) upstreams.users.protocol':
    'unset in the schema: an endpoint advertising its own wins over http1',
  'Configuration (1) upstreams.users.timeouts.perTry': 'the request timeout',
  'Configuration (1) upstreams.users.retries.retryOn': "per protocol (gRPC's list differs)",
  'Configuration (1) routes': '"default rule" is routing by authority, not a value of routes',
  'The Consul registry (1) registry.consul.datacenter': "the agent's own",
  'The Consul registry (1) registry.register': 'true when service is set',
  'The Consul registry (1) registry.serviceId': 'made of service.name, the hostname and service.port',
  'The Consul registry (1) registry.check.ttl': '3 × check.interval',
  'The DNS registry (Kubernetes, Istio) (1) registry.dns.servers': "the system's resolvers",
  'The etcd registry (1) registry.register': 'true when service is set',
  'The etcd registry (1) registry.serviceId': 'made of service.name, the hostname and service.port',
  'The Redis registry (1) registry.redis.channel': 'the prefix followed by "events"',
  'mTLS between sidecars (1) listeners.inbound.rateLimit':
    "the comment states burst's default (perSecond), not rateLimit's",
  'Gateway mode (1) gateway.routes.rateLimit': "the comment states by's default (ip), not rateLimit's",
};

/** A `key: value  # … default X …` line of a block: where the key sits, and the default its comment states. */
interface StatedDefault {
  path: string[];
  /** YAML text of the stated default; `undefined` when the comment says the line's own value is the default. */
  stated: string | undefined;
}

/** The defaults stated in a block's comments (block-style keys only; list items and flow maps are not followed). */
function statedDefaults(text: string): StatedDefault[] {
  const out: StatedDefault[] = [];
  const stack: { indent: number; key: string }[] = [];
  for (const line of text.split('\n')) {
    const m = /^( *)(- +)?([A-Za-z0-9_-]+):(.*)$/.exec(line);
    if (m === null) continue;
    const indent = m[1]!.length + (m[2]?.length ?? 0);
    while (stack.length > 0 && stack.at(-1)!.indent >= indent) stack.pop();
    stack.push({ indent, key: m[3]! });
    const comment = /\s#\s(.*)$/.exec(m[4]!)?.[1];
    if (comment === undefined || !/\bdefaults?\b/.test(comment)) continue;
    const path = stack.map((s) => s.key);
    const marked = /(\S+) \(default\)/.exec(comment); // `files (default) | consul`
    if (marked !== null) {
      out.push({ path, stated: marked[1] });
      continue;
    }
    const kib = /\bdefault:? (\d+) KiB\b/.exec(comment); // `default 64 KiB`
    // `defaults (Envoy's): …`, `the default; …`, `# default` alone: the line's own value is the default.
    const token = /\bdefault\b:? *(\[[^\]]*\]|\S*)/.exec(comment)?.[1]?.replace(/[:;,)]$/, '') ?? '';
    out.push({
      path,
      stated: kib !== null ? String(Number(kib[1]) * 1024) : token === '' ? undefined : token,
    });
  }
  return out;
}

/** The value at `path` in `doc` (a list on the way is entered at its first item). */
function at(doc: unknown, path: readonly string[]): unknown {
  let v = doc;
  for (const k of path) v = Array.isArray(v) ? (v[0] as Json | undefined)?.[k] : isMap(v) ? v[k] : undefined;
  return v;
}

/** A copy of `doc` with `path` set to `value`, or removed when `value` is undefined. */
function withValue(doc: Json, path: readonly string[], value: unknown): Json {
  const copy = structuredClone(doc);
  const found = at(copy, path.slice(0, -1));
  const parent = Array.isArray(found) ? found[0] : found;
  if (!isMap(parent)) throw new Error(`no map at ${path.slice(0, -1).join('.')}`);
  if (value === undefined) delete parent[path.at(-1)!];
  else parent[path.at(-1)!] = value;
  return copy;
}

/** What the stated default makes of `path` once validated (the line's own value when `stated` is undefined). */
function statedValue(how: ConfigCheck, doc: Json, path: string[], stated: string | undefined): unknown {
  if (stated === undefined) return at(validate(how, doc), path);
  if (stated === 'none' || stated === 'unlimited') return undefined;
  return at(validate(how, withValue(doc, path, parseYaml(stated))), path);
}

describe('README.md ```yaml blocks', () => {
  const blocks = fencedBlocks(README, 'yaml');

  it('each block is checked below or skipped with a reason: a new block cannot go unchecked', () => {
    expect(blocks.length).toBeGreaterThan(0);
    expect(blocks.map((b) => b.id).sort()).toEqual(
      [...Object.keys(YAML_CHECKS), ...Object.keys(YAML_SKIPPED)].sort(),
    );
  });

  for (const block of blocks) {
    const how = YAML_CHECKS[block.id];
    if (how === undefined) continue; // the test above names it
    if (how.kind === 'other') {
      it(`${block.id}, README.md:${block.line}: parses as the file it is`, () => how.check(block.text));
      continue;
    }
    it(`${block.id}, README.md:${block.line}: validates as ${how.kind === 'whole' ? 'a whole config' : 'a fragment merged into the base config'}`, () => {
      how.expect(validate(how, parseMap(block.text)));
    });
  }

  it("the defaults the blocks' comments state are the schema's", () => {
    const wrong: string[] = [];
    const runtime = new Set<string>();
    let compared = 0;
    for (const block of blocks) {
      const how = YAML_CHECKS[block.id];
      if (how === undefined || how.kind === 'other') continue;
      const doc = parseMap(block.text);
      try {
        validate(how, doc);
      } catch (err) {
        wrong.push(`${block.id}: the block itself does not validate: ${(err as Error).message}`);
        continue;
      }
      for (const { path, stated } of statedDefaults(block.text)) {
        const id = `${block.id} ${path.join('.')}`;
        if (RUNTIME_DEFAULTS[id] !== undefined) {
          runtime.add(id);
          continue;
        }
        const unset = at(validate(how, withValue(doc, path, undefined)), path);
        let given: unknown;
        try {
          given = statedValue(how, doc, path, stated);
        } catch (err) {
          wrong.push(`${id}: the comment's default ${stated} is no valid value: ${(err as Error).message}`);
          continue;
        }
        compared++;
        if (JSON.stringify(given) !== JSON.stringify(unset)) {
          wrong.push(
            `${id}: the comment says ${stated ?? 'this value'} (${JSON.stringify(given)}), the schema ${JSON.stringify(unset)}`,
          );
        }
      }
    }
    expect(wrong).toEqual([]);
    expect([...runtime].sort()).toEqual(Object.keys(RUNTIME_DEFAULTS).sort()); // no stale entry
    expect(compared).toBeGreaterThan(80);
  });
});

/** How each README ```json block is checked. */
const JSON_CHECKS: Record<string, (text: string) => void> = {
  // An instance record as etcd and Redis hold it ("so other platforms can write the same keys").
  'The etcd registry (1)': (text) => {
    const record = parseRecord(text);
    expect(record).toMatchObject({ address: '10.0.0.7', port: 15443 });
    expect('endpoint' in record && record.endpoint?.transport).toBe('mtls');
  },
};

describe('README.md ```json blocks', () => {
  const blocks = fencedBlocks(README, 'json');

  it('each block is checked below', () => {
    expect(blocks.map((b) => b.id).sort()).toEqual(Object.keys(JSON_CHECKS).sort());
  });

  for (const block of blocks) {
    const check = JSON_CHECKS[block.id];
    if (check !== undefined) it(`${block.id}, README.md:${block.line}: parses`, () => check(block.text));
  }
});

/** Where an inline snippet sits in a config file. */
const place = {
  topLevel: (s: Json): Json => s,
  route: (s: Json): Json => ({ routes: [s] }),
  /** Keys of an upstream's settings (`upstreams.users`), or of one of its blocks (`retries`, `outlierDetection`). */
  upstream:
    (block?: string) =>
    (s: Json): Json => ({ upstreams: { users: block === undefined ? s : { [block]: s } } }),
  /** Keys of a static endpoint object. */
  staticEndpoint: (s: Json): Json => ({
    registry: { endpoints: { users: [{ address: '10.0.0.7', port: 15443, ...s }] } },
  }),
  /** A dotted key path (`metrics.consulUi: false`), plus what it needs beside BASE. */
  keyPath:
    (needs: Json = {}) =>
    (s: Json): Json => {
      const [[dotted, value]] = Object.entries(s) as [[string, unknown]];
      const nested = dotted
        .split('.')
        .reverse()
        .reduce<unknown>((inner, key) => ({ [key]: inner }), value) as Json;
      return merge(needs, nested);
    },
};

/**
 * Config the README shows inline (tables, paragraphs) for users to paste: the literal text, the
 * section it is in, where it goes, and what the validated config must then carry.
 */
const INLINE: {
  section: string;
  text: string;
  place: (s: Json) => Json;
  expect: (c: MeshletConfig) => void;
}[] = [
  {
    section: 'Pointing an app at meshlet',
    text: '{match: {pathPrefix: /users/}, upstream: users, stripPrefix: true}',
    place: place.route,
    expect: (c) => expect(c.routes[0]).toMatchObject({ match: { pathPrefix: '/users/' }, stripPrefix: true }),
  },
  {
    section: 'Pointing an app at meshlet',
    text: 'upstreams: {users: {port: 9001}}',
    place: place.topLevel,
    expect: (c) => expect(c.upstreams.users?.port).toBe(9001),
  },
  {
    section: 'Pointing an app at meshlet',
    text: '{match: {authority: users}, upstream: users, normalizePath: false}',
    place: place.route,
    expect: (c) => expect(c.routes[0]).toMatchObject({ match: { authority: 'users' }, normalizePath: false }),
  },
  {
    section: 'Protocols: HTTP/1.1, HTTP/2 and gRPC',
    text: 'retries: {retryOn: [connect-failure, refused-stream]}',
    place: place.upstream(),
    expect: (c) => expect(c.upstreams.users?.retries.retryOn).toEqual(['connect-failure', 'refused-stream']),
  },
  {
    section: 'Protocols: HTTP/1.1, HTTP/2 and gRPC',
    text: 'grpcResponseHold: 0',
    place: place.upstream('retries'),
    expect: (c) => expect(c.upstreams.users?.retries.grpcResponseHold).toBe(0),
  },
  {
    section: 'Protocols: HTTP/1.1, HTTP/2 and gRPC',
    text: 'upstreams: {users: {protocol: grpc, port: 9001}}',
    place: place.topLevel,
    expect: (c) => expect(c.upstreams.users).toMatchObject({ protocol: 'grpc', port: 9001 }),
  },
  {
    section: 'WebSocket and CONNECT tunnels',
    text: 'upgrades: [tcp]',
    place: place.upstream(),
    expect: (c) => expect(c.upstreams.users?.upgrades).toEqual(['tcp']),
  },
  {
    section: 'Resilience: what meshlet decides, and why',
    text: 'panicThreshold: 0',
    place: place.upstream('outlierDetection'),
    expect: (c) => expect(c.upstreams.users?.outlierDetection.panicThreshold).toBe(0),
  },
  {
    section: 'Resilience: what meshlet decides, and why',
    text: 'consecutiveGatewayFailure: 1',
    place: place.upstream('outlierDetection'),
    expect: (c) => expect(c.upstreams.users?.outlierDetection.consecutiveGatewayFailure).toBe(1),
  },
  {
    section: 'The etcd registry',
    text: 'maxOnDemand: 0',
    place: (s) => ({ registry: { type: 'etcd', watch: s } }),
    expect: (c) => expect(c.registry.type === 'etcd' && c.registry.watch.maxOnDemand).toBe(0),
  },
  {
    section: 'mTLS between sidecars',
    text: 'meta: {meshlet_inbound: mtls}',
    place: place.staticEndpoint,
    expect: (c) =>
      expect(c.registry.type === 'static' && c.registry.endpoints.users?.[0]).toMatchObject({
        meta: { meshlet_inbound: 'mtls' },
      }),
  },
  {
    section: 'mTLS between sidecars',
    text: 'tls.source: consul',
    place: place.keyPath({ registry: { type: 'consul' } }),
    expect: (c) => expect(c.tls?.source).toBe('consul'),
  },
  {
    section: 'See it in the Consul UI',
    text: 'registry.sidecarProxy.enabled: false',
    place: place.keyPath({ registry: { type: 'consul' } }),
    expect: (c) => expect(c.registry.type === 'consul' && c.registry.sidecarProxy.enabled).toBe(false),
  },
  {
    section: 'See it in the Consul UI',
    text: 'metrics.consulUi: false',
    place: place.keyPath(),
    expect: (c) => expect(c.metrics.consulUi).toBe(false),
  },
  {
    section: 'Metrics',
    text: 'metrics.gcDurations: true',
    place: place.keyPath(),
    expect: (c) => expect(c.metrics.gcDurations).toBe(true),
  },
  {
    section: 'Gateway mode',
    text: 'failOpen: true',
    place: (s) => ({
      gateway: {
        auth: { identity: { type: 'validate', url: 'http://identity-service/auth/validate', ...s } },
      },
    }),
    expect: (c) => expect(c.gateway?.auth.identity).toMatchObject({ failOpen: true }),
  },
];

describe('README.md inline config', () => {
  for (const snippet of INLINE) {
    it(`${snippet.section}: \`${snippet.text}\`, README.md:${readmeLine(snippet.text) ?? 'not found'}`, () => {
      // Verbatim in its section, so a README edit of the snippet fails here until this table follows it.
      expect(sectionText(README, snippet.section), `section "${snippet.section}"`).toContain(snippet.text);
      const parsed = parseMap(snippet.text);
      snippet.expect(validateConfig(merge(BASE, snippet.place(parsed)), 'meshlet.yaml', CONFIG_DIR));
    });
  }

  it('Gateway mode: `keys: []` (revokes every key) is a valid API keys file', () => {
    expect(README).toContain('(`keys: []`)');
    expect(parseApiKeys('keys: []', 'api-keys.yaml')).toEqual([]);
  });
});
