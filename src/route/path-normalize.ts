// Normalises a request path before route matching (RFC 3986 dot segments, escaped unreserved characters, `//`), or refuses it.

/**
 * Why a path was refused; the router answers it with 400 `bad_request`. The two refusals are
 * allocated once, so a caller may compare them by identity.
 */
export interface PathRefusal {
  /** One line for the error message: what the path holds that meshlet will not forward. */
  readonly reason: string;
}

/** `%2F`/`%5C` (either case) in the path: what is a segment depends on who decodes it. */
export const ENCODED_SLASH: PathRefusal = Object.freeze({
  reason: 'has an encoded slash or backslash (%2F, %5C)',
});

/** A raw `\` in the path: some servers read it as `/`, others as a character. */
export const BACKSLASH: PathRefusal = Object.freeze({ reason: 'has a backslash' });

const SLASH = 47;
const DOT = 46;
const PERCENT = 37;
const BACK = 92;
const QUESTION = 63;
const HASH = 35;
const ENCODED = /%([0-9a-f]{2})/gi;

/** The value of one hex digit's code, or -1. */
function hexValue(code: number): number {
  if (code >= 48 && code <= 57) return code - 48;
  const l = code | 0x20;
  return l >= 97 && l <= 102 ? l - 87 : -1;
}

/** Whether `code` is an unreserved character (RFC 3986 §2.3: ALPHA, DIGIT, `-`, `.`, `_`, `~`). */
function isUnreserved(code: number): boolean {
  const l = code | 0x20;
  return (
    (l >= 97 && l <= 122) ||
    (code >= 48 && code <= 57) ||
    code === 45 ||
    code === DOT ||
    code === 95 ||
    code === 126
  );
}

/** Decodes an escape of an unreserved character; any other escape stays as it came. */
function decodeUnreserved(escape: string, hex: string): string {
  const code = Number.parseInt(hex, 16);
  return isUnreserved(code) ? String.fromCharCode(code) : escape;
}

/** True when `path[from, to)` is `.` or `..`: a dot segment, once `%2e` reads as `.` too. */
function isDotSegment(path: string, from: number, to: number): boolean {
  const n = to - from;
  return (n === 1 || n === 2) && path.charCodeAt(from) === DOT && path.charCodeAt(to - 1) === DOT;
}

/** Lower-cases an ASCII letter's code (only used to compare hex digits). */
function lower(code: number): number {
  return code | 0x20;
}

/**
 * Normalises the path of an origin-form request target (`/a/./b/../c?q`), as Envoy's
 * `normalize_path` + `merge_slashes` with `path_with_escaped_slashes_action: REJECT_REQUEST` do:
 * - an escaped unreserved character is decoded (RFC 3986 §6.2.2.2: `%2e` is `.`, `%61` is `a`, as
 *   the upstream will read them), so `/%61dmin/` matches a route for `/admin/`; no other escape is
 *   decoded, and `%25` stays as it is;
 * - repeated slashes are one slash (`/a//b` → `/a/b`), so `/a//../b` is `/b`;
 * - dot segments are removed (RFC 3986 §5.2.4): `/a/./b` → `/a/b`, `/a/b/../c` → `/a/c`; a `..`
 *   above the root is dropped, as the RFC says (`/../x` → `/x`), so the result never climbs;
 * - a path holding `%2F`, `%5C` (either case) or a raw `\` is refused, not rewritten: whether they
 *   separate segments depends on the upstream, so no prefix checked here could be trusted.
 * The query (from the first `?` or `#`) is kept byte for byte and is never inspected.
 *
 * Runs on every request: a path that needs none of this (no dot segment, no escaped unreserved
 * character, no `//`) is
 * returned as the very same string, after one scan and no allocation.
 * @param target the request target, starting with `/`; a target that does not gets one.
 * @returns the normalised target, or {@link ENCODED_SLASH} / {@link BACKSLASH}.
 */
export function normalizePath(target: string): string | PathRefusal {
  let dirty = target.charCodeAt(0) !== SLASH;
  let end = target.length;
  let segment = dirty ? 0 : 1;
  for (let i = segment; i < end; i++) {
    const c = target.charCodeAt(i);
    if (c === SLASH) {
      if (i === segment || isDotSegment(target, segment, i)) dirty = true;
      segment = i + 1;
    } else if (c === PERCENT) {
      const hi = target.charCodeAt(i + 1);
      const lo = lower(target.charCodeAt(i + 2));
      if (hi === 50 /* 2 */ && lo === 102 /* f */) return ENCODED_SLASH;
      if (hi === 53 /* 5 */ && lo === 99 /* c */) return ENCODED_SLASH;
      const h = hexValue(hi);
      const l = hexValue(lo);
      if (h >= 0 && l >= 0 && isUnreserved(h * 16 + l)) dirty = true;
    } else if (c === BACK) {
      return BACKSLASH;
    } else if (c === QUESTION || c === HASH) {
      end = i;
    }
  }
  if (isDotSegment(target, segment, end)) dirty = true;
  if (!dirty) return target;
  return rewrite(target, end);
}

/** The slow path: decode escaped unreserved characters, drop empty and `.` segments, let `..` pop, keep a trailing slash. */
function rewrite(target: string, end: number): string {
  const segments = target.slice(0, end).replace(ENCODED, decodeUnreserved).split('/');
  const kept: string[] = [];
  for (const s of segments) {
    if (s === '' || s === '.') continue;
    if (s === '..') kept.pop();
    else kept.push(s);
  }
  const last = segments[segments.length - 1];
  const trailing = kept.length !== 0 && (last === '' || last === '.' || last === '..');
  const path = `/${kept.join('/')}${trailing ? '/' : ''}`;
  return end === target.length ? path : path + target.slice(end);
}
