// undici's Pool alone: the daemon's static path loads no fetch, WebSocket or cache code (~13 MiB less RSS).
import { createRequire } from 'node:module';
import type { Pool as UndiciPool } from 'undici';

const require = createRequire(import.meta.url);

/** undici's `Pool` class, loaded from its own module rather than undici's index. */
export const Pool: typeof UndiciPool = require('undici/lib/dispatcher/pool.js');
export type Pool = UndiciPool;
