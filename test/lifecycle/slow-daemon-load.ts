// Preloaded (`--import`) into `meshlet run` under test: in the image `meshlet run` re-executes into, loading src/daemon.ts takes $MESHLET_TEST_SLOW_LOAD_MS longer.
import { registerHooks } from 'node:module';

const ms = Number(process.env.MESHLET_TEST_SLOW_LOAD_MS ?? 0);
// MESHLET_GC_TUNED is set only in the re-executed image: the CLI before it loads at its own pace.
if (ms > 0 && process.env.MESHLET_GC_TUNED === '1') {
  let slowed = false;
  registerHooks({
    load(url, context, nextLoad) {
      if (!slowed && /\/src\/daemon\.ts$/.test(url)) {
        slowed = true;
        Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, ms);
      }
      return nextLoad(url, context);
    },
  });
}
