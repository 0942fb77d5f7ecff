// The process logger: pino JSON on stdout, buffered, with secrets redacted wherever they appear.
import pino, { type Logger } from 'pino';
import { pinoIsoTime } from './utc-time.ts';

export type { Logger } from 'pino';

/** Log levels `--log-level` accepts. */
export const LOG_LEVELS = ['trace', 'debug', 'info', 'warn', 'error', 'fatal', 'silent'] as const;
export type LogLevel = (typeof LOG_LEVELS)[number];

/** What a secret is replaced by in a log line. */
export const REDACTED = '[redacted]';

/** Keys whose values never reach a log line. */
const REDACT = ['token', '*.token', 'key', '*.key', 'headers["x-consul-token"]', 'headers.authorization'];

/**
 * Creates the logger. Writes are asynchronous (batched while one is in progress), off the request path, and flushed on exit.
 * @param destination a writable stream for tests; default stdout.
 */
export function createLogger(level: LogLevel = 'info', destination?: NodeJS.WritableStream): Logger {
  const stream = destination ?? pino.destination({ dest: 1, sync: false });
  return pino(
    {
      level,
      base: { service: 'meshlet' },
      timestamp: pinoIsoTime,
      redact: { paths: REDACT, censor: REDACTED },
      formatters: { level: (label) => ({ level: label }) },
    },
    stream,
  );
}

/** Flushes a buffered logger (before exit). */
export function flushLogger(logger: Logger): void {
  try {
    logger.flush();
  } catch {
    // A destination that is not ready yet has nothing to flush.
  }
}
