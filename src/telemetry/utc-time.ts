// UTC timestamps (ISO 8601 for logs and JSON, IMF-fixdate for HTTP `Date`) from UTC getters, never V8's date-to-string builtins.
//
// Why: every V8 date-to-string builtin (toISOString and toUTCString included) looks up the local
// time zone's display name in ICU first, which faults about 1.1 MiB of the node binary's ICU data
// and code into memory for good. An idle sidecar formats a timestamp for every log line and every
// admin answer, so the first one would cost it that memory; these formatters read only the UTC
// getters, which need no ICU. The result is the same text (years 0–9999, as the log contract needs).

const DAYS = ['Sun', 'Mon', 'Tue', 'Wed', 'Thu', 'Fri', 'Sat'];
const MONTHS = ['Jan', 'Feb', 'Mar', 'Apr', 'May', 'Jun', 'Jul', 'Aug', 'Sep', 'Oct', 'Nov', 'Dec'];

const scratch = new Date(0);

function pad2(n: number): string {
  return n < 10 ? `0${n}` : `${n}`;
}

function year4(y: number): string {
  return y < 1000 ? `000${y}`.slice(-4) : `${y}`;
}

function pad3(n: number): string {
  return n < 10 ? `00${n}` : n < 100 ? `0${n}` : `${n}`;
}

/** The second an ISO prefix below was made for, and the prefix (`2026-12-04T22:10:05.`). */
let isoSecond = Number.NaN;
let isoPrefix = '';

/**
 * `ms` (Unix epoch milliseconds) as `Date.prototype.toISOString` writes it:
 * `2026-12-04T22:10:05.123Z`. The text up to the second is cached, so a burst of calls within one
 * second builds one string each.
 */
export function isoTime(ms: number): string {
  const second = Math.floor(ms / 1000);
  if (second !== isoSecond) {
    scratch.setTime(second * 1000);
    isoPrefix =
      `${year4(scratch.getUTCFullYear())}-${pad2(scratch.getUTCMonth() + 1)}-${pad2(scratch.getUTCDate())}` +
      `T${pad2(scratch.getUTCHours())}:${pad2(scratch.getUTCMinutes())}:${pad2(scratch.getUTCSeconds())}.`;
    isoSecond = second;
  }
  return `${isoPrefix}${pad3(ms - second * 1000)}Z`;
}

/** pino's `timestamp` option: `,"time":"<isoTime(now)>"`, as `pino.stdTimeFunctions.isoTime` writes. */
export function pinoIsoTime(): string {
  return `,"time":"${isoTime(Date.now())}"`;
}

let httpSecond = Number.NaN;
let httpText = '';

/**
 * `ms` (Unix epoch milliseconds) as an HTTP `Date` field value (RFC 9110 §5.6.7 IMF-fixdate, what
 * `Date.prototype.toUTCString` and node:http write): `Fri, 04 Dec 2026 22:10:05 GMT`. Cached per second.
 */
export function httpDate(ms: number): string {
  const second = Math.floor(ms / 1000);
  if (second !== httpSecond) {
    scratch.setTime(second * 1000);
    httpText =
      `${DAYS[scratch.getUTCDay()]}, ${pad2(scratch.getUTCDate())} ${MONTHS[scratch.getUTCMonth()]} ` +
      `${year4(scratch.getUTCFullYear())} ${pad2(scratch.getUTCHours())}:${pad2(scratch.getUTCMinutes())}:` +
      `${pad2(scratch.getUTCSeconds())} GMT`;
    httpSecond = second;
  }
  return httpText;
}
