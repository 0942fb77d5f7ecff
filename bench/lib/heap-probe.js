// Loaded by bench/memory.ts with NODE_OPTIONS=--import: on SIGUSR2, appends V8's heap figures as one JSON line to $MESHLET_PROBE_FILE.
//
// Plain JavaScript on purpose: a .ts file here would make Node load its type stripper into the
// process being measured. NODE_OPTIONS reaches both images of `meshlet run` (the CLI, then the
// daemon it re-executes into, same PID); `argv1` tells them apart.
import { appendFileSync } from 'node:fs';
import v8 from 'node:v8';

const file = process.env.MESHLET_PROBE_FILE;
if (file !== undefined && file !== '') {
  // A signal listener does not keep the process alive.
  process.on('SIGUSR2', () => {
    const line = {
      argv1: process.argv[1] ?? null,
      spaces: v8.getHeapSpaceStatistics(),
      heap: v8.getHeapStatistics(),
      code: v8.getHeapCodeStatistics(),
      usage: process.memoryUsage(),
    };
    appendFileSync(file, `${JSON.stringify(line)}\n`);
  });
}
