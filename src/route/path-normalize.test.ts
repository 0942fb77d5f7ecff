// Pins normalizePath: RFC 3986 dot segments, escaped unreserved characters, merged slashes, refusals, and the untouched fast path.
import { describe, expect, it } from 'vitest';
import { BACKSLASH, ENCODED_SLASH, normalizePath } from './path-normalize.ts';

describe('normalizePath', () => {
  it.each([
    // RFC 3986 §5.2.4 remove_dot_segments
    ['/a/./b', '/a/b'],
    ['/a/b/../c', '/a/c'],
    ['/a/b/..', '/a/'],
    ['/a/b/.', '/a/b/'],
    ['/a/b/./', '/a/b/'],
    ['/.', '/'],
    ['/..', '/'],
    ['/./', '/'],
    ['/public/../secret', '/secret'],
    ['/public/./x', '/public/x'],
    // above the root: clamped, as the RFC says
    ['/../x', '/x'],
    ['/a/../../../x', '/x'],
    ['/public/../../secret', '/secret'],
    // %2e is a dot, either case, in or out of a dot segment
    ['/public/%2e%2e/secret', '/secret'],
    ['/public/%2E%2e/secret', '/secret'],
    ['/public/.%2E/secret', '/secret'],
    ['/public/%2e/x', '/public/x'],
    ['/file%2ejson', '/file.json'],
    // repeated slashes are one, before dot segments count
    ['/public//x', '/public/x'],
    ['//x', '/x'],
    ['/a//../b', '/b'],
    ['/a///', '/a/'],
    // not dot segments
    ['/a/.../b', '/a/.../b'],
    ['/a/..b/c.', '/a/..b/c.'],
    // the query is kept byte for byte, even with what the path may not hold
    ['/a/../b?x=/../%2F\\&y=//', '/b?x=/../%2F\\&y=//'],
    ['/a/./b#frag/../x', '/a/b#frag/../x'],
    ['/?', '/?'],
    // a target without a leading slash gets one
    ['a/b', '/a/b'],
    ['', '/'],
  ])('%s → %s', (input, output) => {
    expect(normalizePath(input)).toBe(output);
  });

  it.each([
    ['/public/..%2fsecret'],
    ['/public/..%2Fsecret'],
    ['/public/a%2fb'],
    ['/public/..%5csecret'],
    ['/public/..%5Csecret'],
  ])('refuses an encoded slash or backslash: %s', (input) => {
    expect(normalizePath(input)).toBe(ENCODED_SLASH);
  });

  it.each([['/public/..\\secret'], ['/a\\b'], ['\\x']])('refuses a raw backslash: %s', (input) => {
    expect(normalizePath(input)).toBe(BACKSLASH);
  });

  it('decodes every escaped unreserved character (RFC 3986 §6.2.2.2), so a prefix cannot be spelled around', () => {
    expect(normalizePath('/%61dmin/x')).toBe('/admin/x');
    expect(normalizePath('/%61%64%6D%69%6E/x')).toBe('/admin/x');
    expect(normalizePath('/a%2db%5fc%7Ed%30')).toBe('/a-b_c~d0');
    expect(normalizePath('/%41PI/v1?q=%61')).toBe('/API/v1?q=%61');
  });

  it('leaves other escapes alone: %25 (so %252e stays), %20, %3A, %40, and bad escapes', () => {
    expect(normalizePath('/a/%252e%252e/b')).toBe('/a/%252e%252e/b');
    expect(normalizePath('/a%20b/%2d/../c')).toBe('/a%20b/c');
    expect(normalizePath('/a%3Ab%40c')).toBe('/a%3Ab%40c');
    expect(normalizePath('/a%zz/%6')).toBe('/a%zz/%6');
    expect(normalizePath('/a%3Ab/%61')).toBe('/a%3Ab/a');
  });

  it('returns a path that needs nothing as it is (the fast path: dots, escapes and slashes that are fine)', () => {
    for (const path of [
      '/',
      '/v1/users/42',
      '/v1.2/file.json?x=..&y=//',
      '/a%20b',
      '/a/.well-known/x',
      '/a/',
    ]) {
      expect(normalizePath(path)).toBe(path);
    }
  });

  it('is idempotent: a normalised path normalises to itself', () => {
    for (const path of ['/a/./b/../c//d/', '/public/%2e%2e/x', '/../..//x/.', '/%61b/%7e', '/%61%20b']) {
      const once = normalizePath(path) as string;
      expect(normalizePath(once)).toBe(once);
    }
  });
});
