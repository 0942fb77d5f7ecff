// Reads an in-process meshlet's access lines for the refused-request suites: one line by a predicate, without the fields every line has.
import { expect } from 'vitest';
import type { InProcessMeshlet } from '../helpers/meshlet.ts';

/** A request id meshlet generates (a UUID). */
export const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;

/** An access line without the fields every line has (`level`, `time`, `service`, `msg`). */
export type Fields = Record<string, unknown>;

/** The duration of a refusal's line: measured (a number, at least 0), never left out. */
export const DURATION = expect.any(Number) as unknown;

/** Waits (≤ 2 s) for the one access line `pick` selects; returns it without the common fields. */
export async function accessLine(m: InProcessMeshlet, pick: (l: Fields) => boolean): Promise<Fields> {
  const deadline = Date.now() + 2000;
  for (;;) {
    const found = m.logs.filter((l) => l.msg === 'access' && pick(l));
    if (found.length > 1) throw new Error(`${found.length} access lines match, expected one`);
    if (found.length === 1) {
      const { level, time, service, msg, ...rest } = found[0]!;
      expect({ level, service, msg, time: typeof time }).toEqual({
        level: 'info',
        service: 'meshlet',
        msg: 'access',
        time: 'string',
      });
      return rest;
    }
    if (Date.now() > deadline) throw new Error('no matching access line within 2 s');
    await new Promise((r) => setTimeout(r, 20));
  }
}
