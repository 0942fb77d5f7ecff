// Loaded by bench/memory.ts with NODE_OPTIONS=--import: records every module the process loads; on SIGUSR2 appends them as one JSON line to $MESHLET_PROBE_FILE.
//
// Plain JavaScript on purpose (see heap-probe.js). `module.registerHooks` (Node 22.15+/23.5+) sees
// both import and require(). Sizes are of the file on disk (the source Node read); built-ins have none.
import { appendFileSync, statSync } from 'node:fs';
import { registerHooks } from 'node:module';
import { fileURLToPath } from 'node:url';

const file = process.env.MESHLET_PROBE_FILE;
if (file !== undefined && file !== '') {
  /** @type {Map<string, number>} url → bytes (0 for built-ins) */
  const loaded = new Map();
  registerHooks({
    load(url, context, nextLoad) {
      const result = nextLoad(url, context);
      if (!loaded.has(url)) {
        let bytes = 0;
        if (url.startsWith('file:')) {
          try {
            bytes = statSync(fileURLToPath(url)).size;
          } catch {
            // gone since
          }
        }
        loaded.set(url, bytes);
      }
      return result;
    },
  });
  process.on('SIGUSR2', () => {
    const modules = [...loaded].map(([url, bytes]) => ({ url, bytes }));
    appendFileSync(file, `${JSON.stringify({ argv1: process.argv[1] ?? null, modules })}\n`);
  });
}
