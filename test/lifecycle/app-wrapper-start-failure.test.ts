// `meshlet run -- CMD` when CMD cannot run: a shell's exit status (126/127) and bash's words for why, on stderr.
import { chmodSync } from 'node:fs';
import { dirname } from 'node:path';
import { describe, expect, it } from 'vitest';
import { writeConfig } from '../helpers/meshlet.ts';
import { runWrapped } from './wrapper-helpers.ts';

/** Runs `meshlet run -- file`; resolves with its exit code and stderr. */
async function runFile(file: string): Promise<{ code: number | null; stderr: string }> {
  const run = runWrapped({ registry: { type: 'static', endpoints: {} } }, [file]);
  const { code } = await run.exited;
  return { code, stderr: run.stderr.join('') };
}

describe('meshlet run -- CMD that cannot run', () => {
  it('not executable → 126 "permission denied"; a directory → 126 "is a directory"; a script whose #! interpreter is missing → 127 "required file not found"', async () => {
    const notExecutable = writeConfig('#!/bin/sh\necho hi\n', 'app.sh');
    chmodSync(notExecutable, 0o644);
    const directory = dirname(writeConfig('', 'placeholder'));
    const badInterpreter = writeConfig('#!/nonexistent/meshlet-test-interpreter\n', 'app2.sh');
    chmodSync(badInterpreter, 0o755);
    const [a, b, c] = await Promise.all([
      runFile(notExecutable),
      runFile(directory),
      runFile(badInterpreter),
    ]);
    expect(a.code).toBe(126);
    expect(a.stderr).toContain(`cannot start the app: ${notExecutable}: permission denied (not executable)`);
    expect(b.code).toBe(126);
    expect(b.stderr).toContain(`cannot start the app: ${directory}: is a directory`);
    expect(c.code).toBe(127);
    expect(c.stderr).toContain(
      `cannot start the app: ${badInterpreter}: cannot execute: required file not found`,
    );
  });
});
