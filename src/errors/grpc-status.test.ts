import { describe, expect, it } from 'vitest';
import { GRPC, grpcStatusOf } from './grpc-status.ts';

describe('grpcStatusOf', () => {
  it('reads the codes 0-16 written as digits', () => {
    for (let code = 0; code <= 16; code++) expect(grpcStatusOf(String(code))).toBe(code);
    expect(grpcStatusOf('07')).toBe(7);
  });

  it('reads anything else as UNKNOWN, never NaN (a metric label, a JSON log line)', () => {
    for (const bad of ['', 'abc', '99', '17', '1.5', '-1', ' 1', '0x0e', '1e1', '123'])
      expect(grpcStatusOf(bad), JSON.stringify(bad)).toBe(GRPC.UNKNOWN);
  });
});
