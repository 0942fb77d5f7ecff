// The static registry: endpoints from the config file and an optional watched endpoints file.
import type { z } from 'zod';
import { type FileWatch, watchFiles } from '../../config/file-watch.ts';
import type { loadEndpointsFile, readEndpointsText } from '../../config/load-config.ts';
import type { EndpointSpec, endpointMap, MeshletConfig } from '../../config/schema.ts';
import type { Logger } from '../../telemetry/logger.ts';
import type { Metrics } from '../../telemetry/metrics.ts';
import { type Endpoint, makeEndpoint } from '../../upstream/endpoint.ts';
import type { UpstreamTable } from '../../upstream/upstream-table.ts';
import type { Registry } from '../registry.ts';

type EndpointMap = z.output<typeof endpointMap>;

/** The endpoints-file reader and loader, imported on first use: without `registry.file` the daemon loads no schema or YAML parser. */
async function endpointsFileLoader(): Promise<{
  readEndpointsText: typeof readEndpointsText;
  loadEndpointsFile: typeof loadEndpointsFile;
}> {
  return import('../../config/load-config.ts');
}

/**
 * Converts an endpoint as config writes it (`"host:port"` or an object) to an Endpoint. The object
 * form's `protocol` becomes the endpoint's own; without it the upstream's `protocol` applies.
 */
export function toEndpoint(spec: EndpointSpec): Endpoint {
  if (typeof spec === 'string') {
    const colon = spec.lastIndexOf(':');
    let host = spec.slice(0, colon);
    if (host.startsWith('[')) host = host.slice(1, -1);
    return makeEndpoint(host, Number(spec.slice(colon + 1)));
  }
  return makeEndpoint(spec.address, spec.port, {
    weight: spec.weight ?? 1,
    tags: spec.tags ?? [],
    meta: spec.meta ?? {},
    // As in Consul: an endpoint whose meshlet speaks mTLS says so in its meta.
    transport: spec.meta?.meshlet_inbound === 'mtls' ? 'mtls' : 'plain',
    protocol: spec.protocol,
  });
}

/**
 * One upstream's list as endpoints, each `address:port` once (the first entry wins): an endpoint
 * listed twice is one endpoint, as in every registry (give it a `weight` to send it more).
 */
export function toEndpoints(specs: readonly EndpointSpec[]): Endpoint[] {
  const byId = new Map<string, Endpoint>();
  for (const spec of specs) {
    const endpoint = toEndpoint(spec);
    if (!byId.has(endpoint.id)) byId.set(endpoint.id, endpoint);
  }
  return [...byId.values()];
}

/** Whether YAML text holds nothing but whitespace and comments. */
function blank(text: string): boolean {
  return text.replace(/^\s*#.*$/gm, '').trim() === '';
}

/** Options of the static registry. */
export interface StaticRegistryOptions {
  /** `registry.endpoints` from the config file. */
  endpoints: EndpointMap;
  /** Absolute path of `registry.file`, watched; its upstreams override same-named ones in `endpoints`. */
  file: string | undefined;
  table: UpstreamTable;
  metrics: Metrics;
  logger: Logger;
  /** Debounce of file-change events, ms. Default 50. */
  debounceMs?: number;
  /** How often the file is looked at in case a change event was missed, ms; 0 = never. Default 10 000. */
  pollMs?: number;
}

/**
 * Endpoints written in config, or in a file that is watched ({@link watchFiles}: rename-style saves
 * and Kubernetes ConfigMap updates included): an edit is validated and applied as a new snapshot
 * per upstream within ~100 ms; an invalid edit (an empty file too: a write in
 * progress) is logged, counted (`meshlet_config_reloads_total{source="endpoints_file",result="failed"}`)
 * and the last good set kept. A save whose text is byte for byte the text last applied is not parsed
 * again: it is counted `ok` and logged at debug, and the endpoints stay as they are.
 */
export class StaticRegistry implements Registry {
  readonly type = 'static';
  #options: StaticRegistryOptions;
  #watch: FileWatch | null = null;
  #fromFile: EndpointMap = {};
  /** The endpoints file's text that `#fromFile` was parsed from (null before the first load). */
  #appliedText: string | null = null;
  #lastError: string | null = null;
  #synced = false;

  constructor(options: StaticRegistryOptions) {
    this.#options = options;
  }

  get synced(): boolean {
    return this.#synced;
  }

  async start(): Promise<void> {
    const { file } = this.#options;
    if (file !== undefined) {
      const loader = await endpointsFileLoader();
      const text = loader.readEndpointsText(file);
      this.#fromFile = loader.loadEndpointsFile(file, text);
      this.#appliedText = text;
      this.#watch = watchFiles([file], {
        onChange: () => void this.#reload(file),
        debounceMs: this.#options.debounceMs,
        pollMs: this.#options.pollMs,
      });
    }
    this.#apply();
    this.#synced = true;
  }

  /** Applies `registry.endpoints` from a reloaded config. */
  updateConfigEndpoints(endpoints: EndpointMap): void {
    this.#options = { ...this.#options, endpoints };
    this.#apply();
  }

  /** Applies a reloaded config's `registry.endpoints`. */
  reload(config: MeshletConfig): void {
    if (config.registry.type === 'static') this.updateConfigEndpoints(config.registry.endpoints);
  }

  async stop(): Promise<void> {
    this.#watch?.close();
    this.#watch = null;
  }

  status(): Record<string, unknown> {
    return {
      type: 'static',
      file: this.#options.file ?? null,
      synced: this.#synced,
      lastError: this.#lastError,
    };
  }

  #apply(): void {
    const merged: EndpointMap = { ...this.#options.endpoints, ...this.#fromFile };
    const { table } = this.#options;
    for (const [name, specs] of Object.entries(merged)) table.setEndpoints(name, toEndpoints(specs));
    // An upstream that left the files keeps existing with no endpoints (503, not a silent 404).
    for (const upstream of table.values()) if (!(upstream.name in merged)) upstream.setEndpoints([]);
  }

  async #reload(file: string): Promise<void> {
    const { metrics, logger } = this.#options;
    let text: string;
    try {
      const loader = await endpointsFileLoader();
      text = loader.readEndpointsText(file);
      // Saved again as it was (an editor's save, a config manager's rewrite): the endpoints in use
      // are this text's already, so it is not parsed again (a 25 KB file allocates ~12 MiB to parse).
      if (text === this.#appliedText) {
        this.#lastError = null;
        metrics.configReloads.labels('endpoints_file', 'ok').inc();
        logger.debug({ msg: 'endpoints file unchanged; nothing to apply', file });
        return;
      }
      // A writer that truncates the file before writing it leaves it empty for a moment: that is
      // not "no upstreams" (write `{}` for that), so the last good endpoints stay.
      if (blank(text)) {
        throw new Error(
          `${file}: the file is empty (a write in progress?); write {} to remove every upstream`,
        );
      }
      this.#fromFile = loader.loadEndpointsFile(file, text);
    } catch (err) {
      this.#lastError = (err as Error).message;
      metrics.configReloads.labels('endpoints_file', 'failed').inc();
      logger.error({
        msg: 'endpoints file refused; keeping the last good endpoints',
        file,
        reason: this.#lastError,
      });
      return;
    }
    this.#lastError = null;
    this.#apply();
    this.#appliedText = text;
    metrics.configReloads.labels('endpoints_file', 'ok').inc();
    logger.info({ msg: 'endpoints file reloaded', file, upstreams: Object.keys(this.#fromFile).length });
  }
}
