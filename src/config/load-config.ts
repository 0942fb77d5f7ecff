// Reads, parses and validates a config file (or text) into a MeshletConfig, or throws one ConfigError.
import { readFileSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import { LineCounter, parseDocument } from 'yaml';
import type { z } from 'zod';
import { ConfigError } from '../errors/config-error.ts';
import { resolveRouteOverride, resolveUpstreamSettings } from '../upstream/upstream-settings.ts';
import { configSchema, endpointMap, type MeshletConfig } from './schema.ts';
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

/** Parses YAML text, throwing a ConfigError with line and column on a syntax error. */
export function parseYaml(text: string, file?: string): unknown {
  const lineCounter = new LineCounter();
  const doc = parseDocument(text, { prettyErrors: false, uniqueKeys: true, lineCounter });
  const err = doc.errors[0];
  if (err !== undefined) {
    const pos = lineCounter.linePos(err.pos[0]);
    const at = pos === undefined ? '' : ` at line ${pos.line}, column ${pos.col}`;
    throw new ConfigError('', `not valid YAML${at}: ${err.message.split('\n')[0]}`, file);
  }
  return doc.toJS() ?? {};
}

function readText(file: string, what: string): string {
  try {
    return readFileSync(file, 'utf8');
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code ?? 'error';
    throw new ConfigError('', `cannot read ${what}: ${code === 'ENOENT' ? 'no such file' : code}`, file);
  }
}

/** Validates an already parsed config object. Relative paths are resolved against `baseDir`. */
export function validateConfig(raw: unknown, file?: string, baseDir = process.cwd()): MeshletConfig {
  const parsed = configSchema.safeParse(raw);
  if (!parsed.success) throw configErrorFrom(parsed.error, file);
  const config = parsed.data;
  if (config.registry.type === 'static' && config.registry.file !== undefined) {
    config.registry.file = resolve(baseDir, config.registry.file);
  }
  if (config.registry.type === 'consul') checkConsul(config, file, baseDir);
  checkTls(config, file, baseDir);
  checkPorts(config, file);
  checkPolicies(config, file);
  return config;
}

/** Consul settings that zod cannot check alone; resolves the token and TLS files against `baseDir`. */
function checkConsul(config: MeshletConfig, file: string | undefined, baseDir: string): void {
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
  if (consul.tokenFile !== undefined) consul.tokenFile = resolve(baseDir, consul.tokenFile);
  if (consul.tls !== undefined) {
    for (const k of ['ca', 'cert', 'key'] as const) {
      const path = consul.tls[k];
      if (path !== undefined) consul.tls[k] = resolve(baseDir, path);
    }
  }
}

/** Listener ports must not collide (0 means "any free port" and never collides). */
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
  for (const [name, upstream] of Object.entries(config.upstreams)) {
    if (upstream.port !== undefined) claim(upstream.port, `upstreams.${name}.port`);
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

/** Reads and validates the config file at `file`. Throws ConfigError. */
export function loadConfigFile(file: string): MeshletConfig {
  const path = resolve(file);
  return validateConfig(parseYaml(readText(path, 'config file'), file), file, dirname(path));
}

/** Reads and validates a static endpoints file (`registry.file`): upstream → endpoints. */
export function loadEndpointsFile(file: string): z.output<typeof endpointMap> {
  const raw = parseYaml(readText(file, 'endpoints file'), file);
  const parsed = endpointMap.safeParse(raw);
  if (!parsed.success) throw configErrorFrom(parsed.error, file);
  return parsed.data;
}
