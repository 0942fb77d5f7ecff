// The zod type for durations in config, shared by every part of the schema.
import { z } from 'zod';
import { parseDuration } from './duration.ts';

/** A duration: `"250ms"`, `"1s"`, `"5m"`, `"1m30s"` or a number of milliseconds; parsed to ms. */
export const duration = z.union([z.string(), z.number()]).transform((value, ctx) => {
  const ms = parseDuration(value);
  if (ms === undefined) {
    ctx.addIssue({
      code: 'custom',
      message: `expected a duration like "250ms", "1s" or "5m", got ${JSON.stringify(value)}`,
    });
    return z.NEVER;
  }
  return ms;
});
