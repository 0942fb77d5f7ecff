// Preloaded (`--import`) into a daemon under test: rewrites $MESHLET_TEST_BUILTINS_LOG with the Node built-in modules loaded so far, every 100 ms.
import { writeFileSync } from 'node:fs';

const out = process.env.MESHLET_TEST_BUILTINS_LOG;
if (out !== undefined) {
  const write = (): void =>
    writeFileSync(
      out,
      (process as unknown as { moduleLoadList: string[] }).moduleLoadList
        .filter((m) => m.startsWith('NativeModule '))
        .map((m) => m.slice('NativeModule '.length))
        .join('\n'),
    );
  write();
  setInterval(write, 100).unref();
}
