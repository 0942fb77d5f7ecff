// `meshlet breakers` and `meshlet breakers reset NAME`: circuit breaker states, and closing one by hand.
import { AdminUnreachable, postAdmin, readAdmin, table } from './admin-client.ts';
import { EXIT } from './exit-codes.ts';

interface BreakerView {
  upstreams: Record<string, { circuitBreaker?: string; healthy: number; total: number }>;
}

/**
 * Prints each upstream's breaker state (closed, open, half_open, disabled) as a table or JSON.
 * Exit 0 when no breaker is open or half-open, 1 when one is or the admin API cannot be read.
 */
export async function breakersCommand(admin: string, json: boolean): Promise<number> {
  let view: BreakerView;
  try {
    view = (await readAdmin<BreakerView>(admin, '/upstreams', ['upstreams'])).body;
  } catch (err) {
    if (!(err instanceof AdminUnreachable)) throw err;
    process.stderr.write(`meshlet: ${err.message}\n`);
    return EXIT.runtime;
  }
  const names = Object.keys(view.upstreams).sort();
  const states = names.map((name) => ({ name, state: view.upstreams[name]!.circuitBreaker ?? 'disabled' }));
  if (json) process.stdout.write(`${JSON.stringify({ breakers: states }, null, 2)}\n`);
  else process.stdout.write(`${table([['UPSTREAM', 'BREAKER'], ...states.map((s) => [s.name, s.state])])}\n`);
  return states.some((s) => s.state === 'open' || s.state === 'half_open') ? EXIT.runtime : EXIT.ok;
}

/** Closes an upstream's breaker. Exit 0 when closed, 1 when the upstream is unknown or the call failed. */
export async function breakerResetCommand(
  admin: string,
  name: string,
  token: string | undefined,
): Promise<number> {
  try {
    const { status, body } = await postAdmin<{ circuitBreaker?: string; message?: string; error?: string }>(
      admin,
      `/upstreams/${encodeURIComponent(name)}/breaker/reset`,
      token,
    );
    if (status === 200) {
      process.stdout.write(`${name}: circuit breaker ${body.circuitBreaker}\n`);
      return EXIT.ok;
    }
    process.stderr.write(`meshlet: ${name}: ${body.message ?? body.error ?? `admin answered ${status}`}\n`);
    return EXIT.runtime;
  } catch (err) {
    if (!(err instanceof AdminUnreachable)) throw err;
    process.stderr.write(`meshlet: ${err.message}\n`);
    return EXIT.runtime;
  }
}
