// Hooks for a suite of tests against one upstream behind one in-process meshlet: both started before the suite's tests and closed after them.
import { afterAll, beforeAll } from 'vitest';
import type { ConfigInput } from '../../src/config/schema.ts';
import { type InProcessMeshlet, startMeshlet } from './meshlet.ts';
import { type Handler, startUpstream, type TestUpstream } from './upstream-server.ts';

/** What a suite's tests reach once its `beforeAll` ran (reading it earlier throws). */
export interface MeshletSuite {
  /** The upstream behind meshlet. */
  readonly up: TestUpstream;
  readonly mesh: InProcessMeshlet;
  /** The port of meshlet's outbound listener, for raw sockets. */
  readonly port: number;
}

/** `value`, or a clear error when a test reads it before the suite's `beforeAll` set it. */
function started<T>(value: T | undefined, what: string): T {
  if (value === undefined) throw new Error(`${what} read before the suite's beforeAll started it`);
  return value;
}

/**
 * Registers, in the calling `describe` (or file), a `beforeAll` that starts an upstream answering with
 * `handler` (the echo handler by default), then a meshlet on `config(up)`; and an `afterAll` that
 * closes the meshlet, then the upstream (whichever of them started).
 * @param config the meshlet's config, naming the upstream by `up.endpoint`; may be async (a closed port, a PKI)
 * @param handler how the upstream answers (see {@link startUpstream})
 */
export function meshletSuite(
  config: (up: TestUpstream) => ConfigInput | Promise<ConfigInput>,
  handler?: Handler,
): MeshletSuite {
  let up: TestUpstream | undefined;
  let mesh: InProcessMeshlet | undefined;
  beforeAll(async () => {
    up = await startUpstream(handler);
    mesh = await startMeshlet(await config(up));
  });
  afterAll(async () => {
    await mesh?.close();
    await up?.close();
  });
  return {
    get up() {
      return started(up, 'up');
    },
    get mesh() {
      return started(mesh, 'mesh');
    },
    get port() {
      return Number(new URL(started(mesh, 'mesh').outbound).port);
    },
  };
}
