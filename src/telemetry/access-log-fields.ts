// Bounded access-log fields: a value a caller chooses, as a JSON string that takes at most a fixed number of bytes of the line.

/**
 * Most bytes a request's path (query included, credentials already redacted) takes on an access
 * line, as written (UTF-8, JSON escapes counted), the truncation marker included. Default 4096.
 */
export const MAX_PATH_BYTES = 4096;

/**
 * Most bytes any other value a caller chooses takes on an access line (`requestId`, `method`, a
 * gateway principal's `subject` and `tenant`, a tunnel's `upstream`), as written, the truncation marker included. Default 256.
 */
export const MAX_VALUE_BYTES = 256;

/** What a cut value ends with: `...[truncated, N chars]`, N its length as received (UTF-16 units). */
function marker(length: number): string {
  return `...[truncated, ${length} chars]`;
}

/** Bytes one UTF-16 unit (at `i` of `s`) takes in JSON.stringify's output, encoded as UTF-8; a pair counts on its first unit. */
function width(s: string, i: number): number {
  const c = s.charCodeAt(i);
  if (c < 0x20) return c === 8 || c === 9 || c === 10 || c === 12 || c === 13 ? 2 : 6;
  if (c === 0x22 || c === 0x5c) return 2;
  if (c < 0x80) return 1;
  if (c < 0xa0) return 6;
  if (c < 0x800) return 2;
  if (c === 0x2028 || c === 0x2029) return 6;
  if (c >= 0xd800 && c <= 0xdbff) {
    const next = s.charCodeAt(i + 1);
    return next >= 0xdc00 && next <= 0xdfff ? 4 : 6;
  }
  if (c >= 0xdc00 && c <= 0xdfff) {
    const prev = s.charCodeAt(i - 1);
    return prev >= 0xd800 && prev <= 0xdbff ? 0 : 6;
  }
  return 3;
}

/** What JSON.stringify leaves raw but a line reader may take for a line break or a control: C1 controls (NEL), U+2028, U+2029. */
const UNSAFE = /[\u0080-\u009f\u2028\u2029]/;
const UNSAFE_ALL = new RegExp(UNSAFE.source, 'g');

/** JSON.stringify, with {@link UNSAFE} characters escaped too (`\u0085`, `\u2028`): valid JSON, and the same value to a parser. */
function json(value: string): string {
  const out = JSON.stringify(value);
  return UNSAFE.test(out)
    ? out.replace(UNSAFE_ALL, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`)
    : out;
}

/**
 * `value` as a JSON string (quoted, escaped: one line whatever it holds, no C1 control, U+2028 or
 * U+2029 left raw for a line reader to split on) whose contents take at most `maxBytes` bytes of
 * UTF-8: a longer value is cut (never inside an escape or a surrogate pair) and ends with
 * `...[truncated, N chars]`. A cut costs one pass over at most `maxBytes` units.
 * @param maxBytes {@link MAX_PATH_BYTES} or {@link MAX_VALUE_BYTES}; at least 64.
 */
export function boundedJson(value: string, maxBytes: number): string {
  // Every unit takes at least a byte (a surrogate pair 4): a longer value is cut for sure.
  if (value.length <= maxBytes) {
    const out = json(value);
    // A unit of the output takes at most 3 bytes: most values need no count.
    if (out.length * 3 <= maxBytes + 2 || Buffer.byteLength(out) <= maxBytes + 2) return out;
  }
  const end = marker(value.length);
  const room = maxBytes - end.length;
  let used = 0;
  let cut = 0;
  // A low surrogate (width 0) goes with its pair's first unit, or not at all.
  for (; cut < value.length; cut++) {
    const w = width(value, cut);
    if (used + w > room) break;
    used += w;
  }
  return json(value.slice(0, cut) + end);
}
