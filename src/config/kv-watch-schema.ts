// The `registry.watch` block of the etcd and redis registries: on-demand discovery's idle timeout and cap, as Consul's.
import { z } from 'zod';
import { duration } from './duration-schema.ts';

/**
 * On-demand upstreams of the etcd and redis registries (names config does not mention, discovered
 * on first use): the same keys, defaults and meaning as the Consul registry's `registry.watch`
 * (without `wait`, which only Consul's blocking queries have).
 */
export const onDemandWatch = z
  .strictObject({
    /** An on-demand upstream (a name config does not mention) unused this long is removed. Default 5 m. */
    idleTimeout: duration.default(300_000),
    /** Most on-demand upstreams at once; a request for one more new name gets `no_route`; 0 disables on-demand discovery. Default 100. */
    maxOnDemand: z.number().int().min(0).default(100),
  })
  .prefault({});
