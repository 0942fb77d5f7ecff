// `node bench/run.ts --help` prints the usage naming every flag and exits 0 before starting anything.
import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';

const BENCH = fileURLToPath(new URL('../../bench/run.ts', import.meta.url));

/** Runs the bench entry with `args`, killed after `timeoutMs`; resolves with its exit code and output. */
function bench(
  args: string[],
  timeoutMs = 10_000,
): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    const proc = spawn(process.execPath, [BENCH, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    proc.stdout.on('data', (d) => (stdout += d));
    proc.stderr.on('data', (d) => (stderr += d));
    const timer = setTimeout(() => {
      proc.kill('SIGKILL');
      reject(new Error(`bench ${args.join(' ')} still running after ${timeoutMs} ms: ${stderr}`));
    }, timeoutMs);
    proc.on('exit', (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr });
    });
  });
}

describe('bench/run.ts flags', () => {
  it('--help (and -h) prints the usage with every flag, exits 0 and starts no server', async () => {
    for (const flag of ['--help', '-h']) {
      const { code, stdout, stderr } = await bench([flag]);
      expect(code).toBe(0);
      for (const name of ['--quick', '--no-micro', '--profile', '--ref COMMIT', '--help']) {
        expect(stdout).toContain(name);
      }
      expect(stdout).toMatch(/^usage: npm run bench/);
      // The run's first lines ("meshlet bench: N cores", "upstream: ...") never appear.
      expect(stderr).toBe('');
    }
  });

  it('an unknown flag → exit 2 with the reason and the usage, no stack trace', async () => {
    const { code, stdout, stderr } = await bench(['--frobnicate']);
    expect(code).toBe(2);
    expect(stdout).toBe('');
    expect(stderr).toMatch(/^bench: Unknown option '--frobnicate'/);
    expect(stderr).toContain('usage: npm run bench');
    expect(stderr).not.toMatch(/\n\s+at /);
  });
});
