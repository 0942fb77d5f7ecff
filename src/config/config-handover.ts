// The validated config, handed from `meshlet run` to the daemon image it re-executes: the daemon then loads neither the schema nor the YAML parser.
import { resolve } from 'node:path';
import type { MeshletConfig } from './schema.ts';

/** The environment variable that carries the handed-over config (JSON) across the re-exec. */
export const HANDOVER_ENV = 'MESHLET_VALIDATED_CONFIG';

/**
 * Largest handover, in bytes of JSON. Linux caps one environment string at 128 KiB; a larger
 * config is not handed over and the daemon validates the file again itself. Default 96 KiB.
 */
export const HANDOVER_MAX_BYTES = 96 * 1024;

interface Handover {
  /** The config file, absolute. */
  readonly file: string;
  readonly config: MeshletConfig;
}

/**
 * Puts `config`, as validated from `file`, into `env` for the daemon image. The config holds only
 * JSON values (durations are numbers of ms; no Infinity, no class instances), so it arrives equal.
 * Returns false, and leaves `env` without a handover, when the JSON exceeds {@link HANDOVER_MAX_BYTES}.
 */
export function handOver(env: NodeJS.ProcessEnv, file: string, config: MeshletConfig): boolean {
  const json = JSON.stringify({ file: resolve(file), config } satisfies Handover);
  if (Buffer.byteLength(json) > HANDOVER_MAX_BYTES) {
    delete env[HANDOVER_ENV];
    return false;
  }
  env[HANDOVER_ENV] = json;
  return true;
}

/**
 * Takes the config handed over for `file` out of `env` (the variable is removed either way).
 * Undefined when there is none, when it was for another file, or when it does not parse.
 */
export function takeHandedOver(
  file: string,
  env: NodeJS.ProcessEnv = process.env,
): MeshletConfig | undefined {
  const json = env[HANDOVER_ENV];
  if (json === undefined) return undefined;
  delete env[HANDOVER_ENV];
  try {
    const handover = JSON.parse(json) as Handover;
    return handover.file === resolve(file) ? handover.config : undefined;
  } catch {
    return undefined;
  }
}
