import { describe, expect, it } from 'vitest';
import { ManualClock } from '../clock.ts';
import { EndpointHandle, makeEndpoint } from '../upstream/endpoint.ts';
import { OutlierDetector, type OutlierDetectorOptions, type OutlierFailureKind } from './outlier-detector.ts';

const handles = (n: number) =>
  Array.from({ length: n }, (_, i) => new EndpointHandle(makeEndpoint('127.0.0.1', 9000 + i)));

const setup = (n: number, options: OutlierDetectorOptions = {}) => {
  const clock = new ManualClock();
  const eps = handles(n);
  const od = new OutlierDetector({ clock, ...options });
  od.update(eps);
  return { clock, eps, od };
};

const fail = (od: OutlierDetector, h: EndpointHandle, kind: OutlierFailureKind, times: number) => {
  let ejected = false;
  for (let i = 0; i < times; i++) ejected = od.onFailure(h, kind) || ejected;
  return ejected;
};

describe('OutlierDetector', () => {
  it('ejects after 5 consecutive 5xx, not 4', () => {
    const { eps, od } = setup(4);
    expect(fail(od, eps[0]!, '5xx', 4)).toBe(false);
    expect(eps[0]!.ejected).toBe(false);
    expect(od.onFailure(eps[0]!, '5xx')).toBe(true);
    expect(eps[0]!.ejected).toBe(true);
    expect(od.ejectionsTotal).toBe(1);
    expect(od.ejectionsActive).toBe(1);
    expect(od.ejectionsByKind['5xx']).toBe(1);
  });

  it('a success clears the count', () => {
    const { eps, od } = setup(4);
    fail(od, eps[0]!, '5xx', 4);
    od.onSuccess(eps[0]!);
    expect(fail(od, eps[0]!, '5xx', 4)).toBe(false);
  });

  it('counts gateway failures toward both counts, and connect failures separately', () => {
    const { eps, od } = setup(4, {
      consecutive5xx: 10,
      consecutiveGatewayFailure: 3,
      consecutiveLocalOriginFailure: 2,
    });
    fail(od, eps[0]!, '5xx', 2);
    expect(fail(od, eps[0]!, 'gateway', 2)).toBe(false);
    expect(od.onFailure(eps[0]!, 'gateway')).toBe(true);
    expect(od.ejectionsByKind.gateway).toBe(1);
    // A 5xx answer proves connecting works: it clears the connect count.
    od.onFailure(eps[1]!, 'connect');
    od.onFailure(eps[1]!, '5xx');
    expect(od.onFailure(eps[1]!, 'connect')).toBe(false);
    expect(od.onFailure(eps[1]!, 'connect')).toBe(true);
    expect(od.ejectionsByKind.connect).toBe(1);
  });

  it('mixed 5xx and gateway failures reach consecutive5xx', () => {
    const { eps, od } = setup(4, { consecutiveGatewayFailure: 0 });
    fail(od, eps[0]!, 'gateway', 3);
    expect(fail(od, eps[0]!, '5xx', 2)).toBe(true);
  });

  it('a count of 0 turns that check off', () => {
    const { eps, od } = setup(4, { consecutiveLocalOriginFailure: 0 });
    expect(fail(od, eps[0]!, 'connect', 100)).toBe(false);
  });

  it('returns the endpoint after base × ejections, capped at the maximum', () => {
    const { clock, eps, od } = setup(2, {
      baseEjectionTimeMs: 1000,
      maxEjectionTimeMs: 2500,
      intervalMs: 60_000,
    });
    const h = eps[0]!;
    const lengths: number[] = [];
    for (let n = 0; n < 4; n++) {
      fail(od, h, '5xx', 5);
      const start = clock.now();
      expect(od.nextTickAtMs()).toBeGreaterThan(start);
      clock.advance(od.nextTickAtMs()! - start - 1);
      expect(od.tick()).toBe(0);
      expect(h.ejected).toBe(true);
      clock.advance(1);
      expect(od.tick()).toBe(1);
      expect(h.ejected).toBe(false);
      lengths.push(clock.now() - start);
    }
    expect(lengths).toEqual([1000, 2000, 2500, 2500]);
    expect(od.nextTickAtMs()).toBeUndefined();
  });

  it('lowers the multiplier by one per interval spent healthy', () => {
    const { clock, eps, od } = setup(2, { baseEjectionTimeMs: 1000, intervalMs: 10_000 });
    const h = eps[0]!;
    for (let n = 0; n < 3; n++) {
      fail(od, h, '5xx', 5);
      clock.advance(od.nextTickAtMs()! - clock.now());
      od.tick();
    }
    // Multiplier is 3; two intervals healthy bring it to 1, so the next ejection lasts 2 × base.
    clock.advance(20_000);
    fail(od, h, '5xx', 5);
    expect(od.nextTickAtMs()! - clock.now()).toBe(2000);
  });

  it('never ejects beyond maxEjectionPercent, and never the only endpoint', () => {
    const { eps, od } = setup(4); // 50%: two of four
    expect(fail(od, eps[0]!, '5xx', 5)).toBe(true);
    expect(fail(od, eps[1]!, '5xx', 5)).toBe(true);
    expect(fail(od, eps[2]!, '5xx', 5)).toBe(false);
    expect(eps[2]!.ejected).toBe(false);
    expect(od.ejectionsOverflowTotal).toBe(1);
    const single = setup(1);
    expect(fail(single.od, single.eps[0]!, '5xx', 50)).toBe(false);
    const envoy = setup(9, { maxEjectionPercent: 10 });
    expect(fail(envoy.od, envoy.eps[0]!, '5xx', 5)).toBe(false);
  });

  it('ignores failures of an ejected endpoint and of unknown endpoints', () => {
    const { eps, od } = setup(4);
    fail(od, eps[0]!, '5xx', 5);
    expect(fail(od, eps[0]!, '5xx', 20)).toBe(false);
    expect(od.ejectionsTotal).toBe(1);
    expect(fail(od, handles(1)[0]!, '5xx', 20)).toBe(false);
  });

  it('tells the upstream of every change by callback and version', () => {
    let calls = 0;
    const { clock, eps, od } = setup(4, { onChange: () => calls++, baseEjectionTimeMs: 100 });
    const v0 = od.version;
    fail(od, eps[0]!, '5xx', 5);
    expect(calls).toBe(1);
    expect(od.version).toBe(v0 + 1);
    clock.advance(100);
    od.tick();
    expect(calls).toBe(2);
    expect(od.version).toBe(v0 + 2);
    od.tick();
    expect(calls).toBe(2);
  });

  it('eligible: all when none is ejected, the rest otherwise, all again in panic', () => {
    const { eps, od } = setup(4, { maxEjectionPercent: 100 });
    expect(od.eligible(eps)).toBe(eps);
    fail(od, eps[0]!, '5xx', 5);
    expect(od.eligible(eps)).toEqual([eps[1], eps[2], eps[3]]);
    fail(od, eps[1]!, '5xx', 5);
    expect(od.eligible(eps)).toEqual([eps[2], eps[3]]); // exactly 50%: not panic
    expect(od.panic).toBe(false);
    fail(od, eps[2]!, '5xx', 5);
    expect(od.eligible(eps)).toBe(eps); // 25% healthy < 50%: panic
    expect(od.panic).toBe(true);
    const off = setup(2, { maxEjectionPercent: 100, panicThresholdPercent: 0 });
    fail(off.od, off.eps[0]!, '5xx', 5);
    fail(off.od, off.eps[1]!, '5xx', 5);
    expect(off.od.eligible(off.eps)).toEqual([]);
  });

  it('keeps state for endpoints that stay and forgets those that leave', () => {
    const { eps, od } = setup(4);
    fail(od, eps[0]!, '5xx', 5);
    fail(od, eps[1]!, '5xx', 4);
    od.update([eps[1]!, eps[2]!, eps[3]!]);
    expect(eps[0]!.ejected).toBe(false);
    expect(od.ejectionsActive).toBe(0);
    expect(od.onFailure(eps[1]!, '5xx')).toBe(true);
  });

  it('refuses bad options', () => {
    expect(() => new OutlierDetector({ consecutive5xx: -1 })).toThrow(/consecutive5xx/);
    expect(() => new OutlierDetector({ baseEjectionTimeMs: 0 })).toThrow(/baseEjectionTimeMs/);
    expect(() => new OutlierDetector({ maxEjectionPercent: 150 })).toThrow(/maxEjectionPercent/);
  });

  describe('configure (a reload)', () => {
    it('a new threshold applies from the next failure, keeping the counts so far', () => {
      const { eps, od } = setup(4, { consecutive5xx: 5 });
      fail(od, eps[0]!, '5xx', 2);
      od.configure({ consecutive5xx: 3 });
      expect(od.onFailure(eps[0]!, '5xx')).toBe(true);
      od.configure({ consecutive5xx: 8 });
      expect(fail(od, eps[1]!, '5xx', 7)).toBe(false);
      expect(od.onFailure(eps[1]!, '5xx')).toBe(true);
    });

    it('keeps ejections and counters; a new ejection time applies to the next ejection only', () => {
      const { clock, eps, od } = setup(4, { baseEjectionTimeMs: 1000 });
      fail(od, eps[0]!, '5xx', 5);
      const due = od.nextTickAtMs()!;
      od.configure({ baseEjectionTimeMs: 5000 });
      expect(eps[0]!.ejected).toBe(true);
      expect([od.ejectionsActive, od.ejectionsTotal]).toEqual([1, 1]);
      expect(od.nextTickAtMs()).toBe(due);
      fail(od, eps[1]!, '5xx', 5);
      clock.advance(1000);
      expect(od.tick()).toBe(1);
      expect(od.nextTickAtMs()! - clock.now()).toBe(4000);
    });

    it('a new maxEjectionPercent and panic threshold apply at once', () => {
      const { eps, od } = setup(4, { maxEjectionPercent: 25 });
      fail(od, eps[0]!, '5xx', 5);
      expect(fail(od, eps[1]!, '5xx', 5)).toBe(false);
      od.configure({ maxEjectionPercent: 100, panicThresholdPercent: 0 });
      expect(fail(od, eps[1]!, '5xx', 5)).toBe(true);
      expect(fail(od, eps[2]!, '5xx', 5)).toBe(true);
      expect(od.eligible(eps)).toEqual([eps[3]]);
      od.configure({ maxEjectionPercent: 100, panicThresholdPercent: 50 });
      expect(od.eligible(eps)).toBe(eps);
      expect(od.panic).toBe(true);
    });

    it('turned off (counts 0) stops ejecting, and returnAll brings every ejected endpoint back', () => {
      let changes = 0;
      const { eps, od } = setup(4, { onChange: () => changes++ });
      fail(od, eps[0]!, '5xx', 5);
      fail(od, eps[1]!, 'connect', 5);
      od.configure({ consecutive5xx: 0, consecutiveGatewayFailure: 0, consecutiveLocalOriginFailure: 0 });
      expect(od.returnAll()).toBe(2);
      expect(eps.some((h) => h.ejected)).toBe(false);
      expect([od.ejectionsActive, od.nextTickAtMs(), changes]).toEqual([0, undefined, 3]);
      expect(fail(od, eps[2]!, 'gateway', 50)).toBe(false);
      expect(od.returnAll()).toBe(0);
      expect(changes).toBe(3);
    });

    it('an invalid option throws and changes nothing', () => {
      const { eps, od } = setup(4);
      expect(() => od.configure({ consecutive5xx: 1, maxEjectionPercent: 101 })).toThrow(
        /maxEjectionPercent/,
      );
      expect(fail(od, eps[0]!, '5xx', 4)).toBe(false);
      expect(od.onFailure(eps[0]!, '5xx')).toBe(true);
    });
  });
});
