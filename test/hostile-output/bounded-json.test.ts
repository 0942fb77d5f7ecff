// boundedJson: a caller's value on an access line is valid JSON, free of line breaks, and at most a fixed number of bytes.
import { describe, expect, it } from 'vitest';
import { boundedJson, MAX_PATH_BYTES, MAX_VALUE_BYTES } from '../../src/telemetry/access-log-fields.ts';

/** Bytes of a JSON string's contents as written (UTF-8, without the quotes). */
const contentBytes = (json: string): number => Buffer.byteLength(json) - 2;

describe('boundedJson', () => {
  it('writes a value within the bound as JSON.stringify would, the same string to a parser', () => {
    for (const v of ['', 'GET', '3fb4a708-9fc1-479d-bbd3-6d3fd1d67e2e', '/a?b="c"\\d\te', 'x'.repeat(256)]) {
      expect(boundedJson(v, MAX_VALUE_BYTES)).toBe(JSON.stringify(v));
    }
  });

  it('cuts a long value to the bound and says how long it was', () => {
    const v = 'a'.repeat(61_440);
    const out = boundedJson(v, MAX_PATH_BYTES);
    expect(contentBytes(out)).toBeLessThanOrEqual(MAX_PATH_BYTES);
    const back = JSON.parse(out) as string;
    expect(back.endsWith('...[truncated, 61440 chars]')).toBe(true);
    expect(back.startsWith('a'.repeat(4000))).toBe(true);
  });

  it('counts escapes and multi-byte characters, so control characters cannot multiply the bound by 6', () => {
    for (const unit of ['\u0001', '"', '\\', '\u00ff', '\u0085', '\u2028', '\u20ac', '😀', '\ud800']) {
      const v = unit.repeat(5000);
      const out = boundedJson(v, MAX_VALUE_BYTES);
      expect(contentBytes(out), JSON.stringify(unit)).toBeLessThanOrEqual(MAX_VALUE_BYTES);
      const back = JSON.parse(out) as string;
      expect(back.endsWith(`...[truncated, ${v.length} chars]`)).toBe(true);
      // Never half a surrogate pair or half an escape: the kept part is whole units of the value.
      expect(v.startsWith(back.slice(0, back.indexOf('...[truncated')))).toBe(true);
    }
  });

  it('leaves no character a line reader splits on: C1 controls (NEL), U+2028 and U+2029 are escaped', () => {
    const v = 'a\u0085b\u2028c\u2029d\u0080e\u009ff\u00a0g';
    const out = boundedJson(v, MAX_VALUE_BYTES);
    expect(out).toBe('"a\\u0085b\\u2028c\\u2029d\\u0080e\\u009ff\u00a0g"');
    expect(JSON.parse(out)).toBe(v);
    // What Python's str.splitlines() and an ECMAScript line reader split on, besides \n and \r.
    const splitters = ['\u000b', '\u000c', '\u001c', '\u001d', '\u001e', '\u0085', '\u2028', '\u2029'];
    expect([...out].filter((c) => splitters.includes(c))).toEqual([]);
  });
});
