// Reads, parses and validates a config file (or text) into a MeshletConfig, or throws one ConfigError.
import { closeSync, openSync, readSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import { type Document, isMap, isScalar, LineCounter, parseDocument, visit } from 'yaml';
import type { z } from 'zod';
import { ConfigError } from '../errors/config-error.ts';
import { resolveRouteOverride, resolveUpstreamSettings } from '../upstream/upstream-settings.ts';
import { ADMIN_GRPC_DEFAULT_PORT, configSchema, endpointMap, type MeshletConfig } from './schema.ts';
import { resolveConfigPaths } from './config-paths.ts';
import { checkSecretEnvs, checkSecretFiles } from './secret-env.ts';
import { checkTls } from './tls-schema.ts';

/** Formats a zod issue path as a key path: `upstreams.users.timeouts.connect`, `routes[0].upstream`. */
function keyPathOf(path: readonly PropertyKey[]): string {
  let out = '';
  for (const part of path) {
    if (typeof part === 'number') out += `[${part}]`;
    else out += out === '' ? String(part) : `.${String(part)}`;
  }
  return out;
}

/** Turns the first zod issue into a ConfigError naming the key. */
export function configErrorFrom(
  error: z.ZodError,
  file?: string,
  prefix: readonly PropertyKey[] = [],
): ConfigError {
  const issue = error.issues[0]!;
  if (issue.code === 'unrecognized_keys') {
    const key = issue.keys[0]!;
    return new ConfigError(keyPathOf([...prefix, ...issue.path, key]), 'unknown key', file);
  }
  let message = issue.message.replace(/^Invalid input: /, '');
  if (issue.code === 'invalid_type' && message.endsWith('received undefined')) message = 'required';
  else if (issue.code === 'invalid_union' && 'errors' in issue) {
    // Report the branch that got furthest, so "wrong type inside an object" beats "not a string".
    const deepest = issue.errors
      .flat()
      .sort((a, b) => b.path.length - a.path.length)
      .at(0);
    if (deepest !== undefined) {
      return new ConfigError(keyPathOf([...prefix, ...issue.path, ...deepest.path]), deepest.message, file);
    }
  }
  return new ConfigError(keyPathOf([...prefix, ...issue.path]), message, file);
}

/**
 * Most alias expansions a file may make (YAML's `*name`), the `yaml` package's own guard against
 * "billion laughs" files: beyond it the file is refused. Default of the package: 100.
 */
export const MAX_ALIAS_COUNT = 100;

/** Parses YAML text, throwing a ConfigError with line and column on a syntax error. */
export function parseYaml(text: string, file?: string): unknown {
  const lineCounter = new LineCounter();
  // The package's own duplicate-key check scans every earlier key of the map for each key (80,000
  // upstreams took 38 s): keys are checked below, in one pass.
  const doc = parseDocument(text, { prettyErrors: false, uniqueKeys: false, lineCounter });
  const at = (offset: number): string => {
    const pos = lineCounter.linePos(offset);
    return pos === undefined ? '' : ` at line ${pos.line}, column ${pos.col}`;
  };
  const err = doc.errors[0];
  if (err !== undefined) {
    throw new ConfigError('', `not valid YAML${at(err.pos[0])}: ${err.message.split('\n')[0]}`, file);
  }
  const duplicate = firstDuplicateKey(doc);
  if (duplicate !== undefined) {
    throw new ConfigError('', `not valid YAML${at(duplicate)}: Map keys must be unique`, file);
  }
  let js: unknown;
  try {
    js = doc.toJS({ maxAliasCount: MAX_ALIAS_COUNT });
  } catch (e) {
    // An alias bomb: the package throws a ReferenceError rather than report a document error.
    if (e instanceof ReferenceError && /alias/i.test(e.message)) {
      throw new ConfigError(
        '',
        `not valid YAML: aliases expand too far (more than ${MAX_ALIAS_COUNT} alias expansions)`,
        file,
      );
    }
    throw e;
  }
  rejectProtoKeys(js, [], file);
  return js ?? {};
}

/**
 * A `__proto__` key: the parsed object gets it as its prototype, not as a key, so a map of names
 * (`upstreams`, `registry.endpoints`) would lose it without a word. Refused like an unknown key.
 */
function rejectProtoKeys(value: unknown, path: PropertyKey[], file?: string): void {
  if (value === null || typeof value !== 'object') return;
  if (Array.isArray(value)) {
    value.forEach((v, i) => rejectProtoKeys(v, [...path, i], file));
    return;
  }
  if (Object.getPrototypeOf(value) !== Object.prototype || Object.hasOwn(value, '__proto__')) {
    throw new ConfigError(keyPathOf([...path, '__proto__']), 'unknown key', file);
  }
  for (const [k, v] of Object.entries(value)) rejectProtoKeys(v, [...path, k], file);
}

/**
 * Where the first key that repeats an earlier key of its map starts (an offset into the text), or
 * undefined. Keys are compared as the object keys they become (`1` and `"1"` are the same key).
 */
function firstDuplicateKey(doc: Document): number | undefined {
  let found: number | undefined;
  visit(doc, {
    Map(_key, map) {
      if (!isMap(map)) return undefined;
      const seen = new Set<string>();
      for (const pair of map.items) {
        const key = pair.key;
        const name = isScalar(key) ? String(key.value) : JSON.stringify(key);
        if (seen.has(name)) {
          found = (isScalar(key) ? key.range?.[0] : undefined) ?? 0;
          return visit.BREAK;
        }
        seen.add(name);
      }
      return undefined;
    },
  });
  return found;
}

/**
 * Largest config or endpoints file read, bytes: 16 MiB (a 1 MiB file of 20,000 upstreams parses in
 * about 2.5 s). Past it the file is refused before it is parsed: a reload reads the file on the
 * event loop, and `/dev/zero` given as a config took 8 GiB in 20 s.
 */
export const MAX_CONFIG_BYTES = 16 * 1024 * 1024;

/** Reads `file` as UTF-8, refusing more than {@link MAX_CONFIG_BYTES}; a pipe (`<(…)`) is read too. */
function readText(file: string, what: string): string {
  let fd: number;
  try {
    fd = openSync(file, 'r');
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code ?? 'error';
    throw new ConfigError('', `cannot read ${what}: ${code === 'ENOENT' ? 'no such file' : code}`, file);
  }
  try {
    const chunks: Buffer[] = [];
    let size = 0;
    for (;;) {
      const chunk = Buffer.allocUnsafe(Math.min(1024 * 1024, MAX_CONFIG_BYTES + 1 - size));
      const n = readSync(fd, chunk, 0, chunk.length, null);
      if (n === 0) break;
      chunks.push(chunk.subarray(0, n));
      size += n;
      if (size > MAX_CONFIG_BYTES) {
        throw new ConfigError('', `cannot read ${what}: larger than ${MAX_CONFIG_BYTES / 1048576} MiB`, file);
      }
    }
    return Buffer.concat(chunks, size).toString('utf8');
  } catch (err) {
    if (err instanceof ConfigError) throw err;
    const code = (err as NodeJS.ErrnoException).code ?? 'error';
    throw new ConfigError('', `cannot read ${what}: ${code}`, file);
  } finally {
    closeSync(fd);
  }
}

/**
 * Validates an already parsed config object. Every relative file path it names is resolved against
 * `baseDir` ({@link resolveConfigPaths}): the config file's directory when a file is loaded.
 */
export function validateConfig(raw: unknown, file?: string, baseDir = process.cwd()): MeshletConfig {
  const parsed = configSchema.safeParse(raw);
  if (!parsed.success) throw configErrorFrom(parsed.error, file);
  const config = parsed.data;
  if (config.registry.type === 'consul') checkConsul(config, file);
  checkTls(config, file);
  checkPorts(config, file);
  checkPolicies(config, file);
  resolveConfigPaths(config, baseDir);
  return config;
}

/** Consul settings that zod cannot check alone. */
function checkConsul(config: MeshletConfig, file: string | undefined): void {
  if (config.registry.type !== 'consul') return;
  const { consul, check } = config.registry;
  if (consul.token !== undefined && consul.tokenFile !== undefined) {
    throw new ConfigError('registry.consul.tokenFile', 'set either token or tokenFile, not both', file);
  }
  if (check.http !== undefined && check.tcp === true) {
    throw new ConfigError('registry.check.tcp', 'set either http or tcp: true, not both', file);
  }
  if (check.timeout >= check.interval) {
    throw new ConfigError('registry.check.timeout', 'must be shorter than registry.check.interval', file);
  }
  if (config.registry.register === true && config.service === undefined) {
    throw new ConfigError('service', 'required when registry.register is true', file);
  }
}

/**
 * Listener ports must not collide (0 means "any free port" and never collides): the gateway's
 * too, and the gRPC admin API's default (15002) when its port is unset, since it is bound before
 * the outbound, inbound, gateway and per-upstream listeners and would take the port from them.
 * `service.port` (the local app's port) must be none of these listener ports: the inbound listener
 * (and the app health check) would call meshlet itself instead of the app, a forwarding loop.
 */
function checkPorts(config: MeshletConfig, file?: string): void {
  const seen = new Map<number, string>();
  const claim = (port: number, key: string) => {
    if (port === 0) return;
    const other = seen.get(port);
    if (other !== undefined) throw new ConfigError(key, `port ${port} is already used by ${other}`, file);
    seen.set(port, key);
  };
  claim(config.listeners.outbound.port, 'listeners.outbound.port');
  claim(config.listeners.admin.port, 'listeners.admin.port');
  const adminGrpc = config.listeners.adminGrpc;
  if (adminGrpc.enabled && adminGrpc.port !== undefined) claim(adminGrpc.port, 'listeners.adminGrpc.port');
  if (config.tls !== undefined && config.service !== undefined)
    claim(config.listeners.inbound?.port ?? 15443, 'listeners.inbound.port');
  if (config.listeners.gateway !== undefined) claim(config.listeners.gateway.port, 'listeners.gateway.port');
  for (const [name, upstream] of Object.entries(config.upstreams)) {
    if (upstream.port !== undefined) claim(upstream.port, `upstreams.${name}.port`);
  }
  const app = config.service?.port;
  const listener = app === undefined ? undefined : seen.get(app);
  if (listener !== undefined) {
    throw new ConfigError(
      'service.port',
      `port ${app} is meshlet's own ${listener}, not the local app's: the inbound listener would forward to meshlet itself (a forwarding loop)`,
      file,
    );
  }
  const taken = seen.get(ADMIN_GRPC_DEFAULT_PORT);
  if (adminGrpc.enabled && adminGrpc.port === undefined && taken !== undefined) {
    throw new ConfigError(
      'listeners.adminGrpc.port',
      `unset, so the gRPC admin API takes ${ADMIN_GRPC_DEFAULT_PORT}, which ${taken} names: set another port, or enabled: false`,
      file,
    );
  }
}

/** Resolves every upstream and route policy once, so a bad retryOn or fallback fails at load time. */
function checkPolicies(config: MeshletConfig, file?: string): void {
  const withFile = (err: unknown) =>
    err instanceof ConfigError
      ? new ConfigError(err.keyPath, err.message.replace(/^config: [^:]*: /, ''), file)
      : err;
  try {
    for (const [name, spec] of Object.entries(config.upstreams)) {
      resolveUpstreamSettings(spec, name);
      if (spec.fallback === name)
        throw new ConfigError(`upstreams.${name}.fallback`, 'an upstream cannot be its own fallback');
    }
    config.routes.forEach((route, i) => resolveRouteOverride(route, i));
  } catch (err) {
    throw withFile(err);
  }
}

/** Options of {@link loadConfigFile}. */
export interface LoadConfigOptions {
  /**
   * Check what the file needs from the machine it runs on: each `secretEnv` variable set and each
   * `secretFile` readable (`run` cannot start without them). Default true; `meshlet config check
   * --offline` turns it off, to validate a deployment's config where its secrets are not.
   */
  secrets?: boolean;
}

/** Reads and validates the config file at `file`. Throws ConfigError. */
export function loadConfigFile(file: string, options: LoadConfigOptions = {}): MeshletConfig {
  const path = resolve(file);
  const config = validateConfig(parseYaml(readText(path, 'config file'), file), file, dirname(path));
  if (options.secrets === false) return config;
  checkSecretEnvs(config, file);
  return checkSecretFiles(config, file);
}

/** Reads a static endpoints file's text (`registry.file`), refusing more than {@link MAX_CONFIG_BYTES}. Throws ConfigError. */
export function readEndpointsText(file: string): string {
  return readText(file, 'endpoints file');
}

/**
 * Reads and validates a static endpoints file (`registry.file`): upstream → endpoints. `text` is the
 * file's text when the caller has read it already ({@link readEndpointsText}).
 */
export function loadEndpointsFile(
  file: string,
  text = readEndpointsText(file),
): z.output<typeof endpointMap> {
  const raw = parseYaml(text, file);
  const parsed = endpointMap.safeParse(raw);
  if (!parsed.success) throw configErrorFrom(parsed.error, file);
  return parsed.data;
}
