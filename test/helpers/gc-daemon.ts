// Test-only entry: meshlet's daemon (the same entry `meshlet run` re-execs) that runs a full GC on SIGUSR2.
import { daemonMain } from '../../src/cli/daemon-main.ts';

// Run with `node --expose-gc`: a memory test can then measure RSS after a collection.
process.on('SIGUSR2', () => (globalThis as { gc?: () => void }).gc?.());
const code = await daemonMain(process.argv.slice(2));
process.exitCode = code;
setImmediate(() => process.exit(code));
