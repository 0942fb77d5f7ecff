// Preloaded (`--import`) into `meshlet run` under test: appends each module URL the daemon image resolves to $MESHLET_TEST_MODULE_LOG.
import { appendFileSync } from 'node:fs';
import { registerHooks } from 'node:module';

const out = process.env.MESHLET_TEST_MODULE_LOG;
// MESHLET_GC_TUNED is set only in the image `meshlet run` re-executes into: the CLI before it is not recorded.
if (out !== undefined && process.env.MESHLET_GC_TUNED === '1') {
  registerHooks({
    resolve(specifier, context, nextResolve) {
      const resolved = nextResolve(specifier, context);
      appendFileSync(out, `${resolved.url}\n`);
      return resolved;
    },
  });
}
