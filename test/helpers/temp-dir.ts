// Temp directories for one test file: made under the OS temp dir, removed with their contents after the file's tests.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll } from 'vitest';

/** Directories made by `tempDir` in this test file (vitest evaluates this module once per file). */
const dirs: string[] = [];

// Registered when the first helper that uses it is imported, so it runs after the file's own afterAll hooks
// (vitest runs after-hooks in reverse order), when nothing reads the files any more.
afterAll(() => {
  for (const dir of dirs.splice(0)) rmSync(dir, { recursive: true, force: true });
});

/**
 * A fresh directory `<os temp dir>/<prefix>XXXXXX`, removed (recursively) after this test file's tests.
 * @param prefix - name prefix (default `meshlet-test-`)
 */
export function tempDir(prefix = 'meshlet-test-'): string {
  const dir = mkdtempSync(join(tmpdir(), prefix));
  dirs.push(dir);
  return dir;
}
