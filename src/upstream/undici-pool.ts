// undici's Pool alone: the daemon's static path loads no fetch, WebSocket or cache code (~13 MiB less RSS).
import PoolClass from 'undici/lib/dispatcher/pool.js';
import type { Pool as UndiciPool } from 'undici';

/** undici's `Pool` class, loaded from its own module rather than undici's index. */
export const Pool: typeof UndiciPool = PoolClass;
export type Pool = UndiciPool;
