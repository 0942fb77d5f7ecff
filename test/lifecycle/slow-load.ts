// Preloaded (`--import`) into `meshlet run` under test: one of its two images loads a module $MESHLET_TEST_SLOW_LOAD_MS longer (the CLI's verbs, or the daemon).
import { registerHooks } from 'node:module';

const ms = Number(process.env.MESHLET_TEST_SLOW_LOAD_MS ?? 0);
// `cli`: the image `meshlet run` starts as loads src/cli/verbs.ts slowly (yargs, the config loader);
// otherwise the image it re-executes into (MESHLET_GC_TUNED is set only there) loads src/daemon.ts slowly.
const cli = process.env.MESHLET_TEST_SLOW_STAGE === 'cli';
const slowHere = cli ? process.env.MESHLET_GC_TUNED !== '1' : process.env.MESHLET_GC_TUNED === '1';
const slowModule = cli ? /\/src\/cli\/verbs\.ts$/ : /\/src\/daemon\.ts$/;
if (ms > 0 && slowHere) {
  let slowed = false;
  registerHooks({
    load(url, context, nextLoad) {
      if (!slowed && slowModule.test(url)) {
        slowed = true;
        Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, ms);
      }
      return nextLoad(url, context);
    },
  });
}
