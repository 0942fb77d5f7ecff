// `meshlet wait`: blocks until a running meshlet is ready (exit 0) or the timeout passes (exit 1).
import { AdminUnreachable, getAdmin, type ReadyAnswer } from './admin-client.ts';
import { EXIT } from './exit-codes.ts';

/** Time between two readiness polls, ms. */
const POLL_MS = 100;

/** How long the one poll of `--timeout 0` may wait for its answer, ms. */
const ONCE_BUDGET_MS = 1000;

/**
 * Polls `ADMIN/ready?ignore=app` (meshlet's own readiness: registry synced, not draining; the local
 * app's check is left out, since the app is usually what waits) until it answers 200, then exits 0.
 * After `timeoutMs` it prints why it is not ready (the failing checks, or why the admin API could
 * not be reached) and exits 1. It always asks at least once: `timeoutMs` 0 asks once (the answer
 * may take up to 1 s), as `kubectl wait --timeout=0` checks once.
 */
export async function waitCommand(admin: string, timeoutMs: number): Promise<number> {
  const started = performance.now();
  let why = 'no answer yet';
  let answered = false;
  for (let attempt = 0; ; attempt++) {
    const left = timeoutMs - (performance.now() - started);
    if (left <= 0 && attempt > 0) break;
    const budget = timeoutMs === 0 ? ONCE_BUDGET_MS : Math.max(1, Math.ceil(Math.min(1000, left)));
    try {
      const { status, body } = await getAdmin<ReadyAnswer>(admin, '/ready?ignore=app', budget);
      if (status === 200) return EXIT.ok;
      answered = true;
      why =
        Object.entries(body.checks ?? {})
          .filter(([, c]) => !c.ok)
          .map(([name, c]) => `${name}: ${c.detail}`)
          .join('; ') || `status ${status}`;
    } catch (err) {
      if (!(err instanceof AdminUnreachable)) throw err;
      // A last poll cut short by the deadline says less than the answer before it.
      if (!(answered && budget < 1000)) why = err.message;
    }
    const pause = Math.min(POLL_MS, timeoutMs - (performance.now() - started));
    if (pause > 0) await new Promise((r) => setTimeout(r, pause));
  }
  process.stderr.write(`meshlet: not ready after ${Math.round(timeoutMs)} ms: ${why}\n`);
  return EXIT.runtime;
}
