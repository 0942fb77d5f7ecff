import { describe, expect, it } from 'vitest';
import { restartKeys } from './restart-keys.ts';

const base = {
  listeners: {
    outbound: { address: '127.0.0.1', port: 15001 },
    admin: { address: '127.0.0.1', port: 15000, token: 'secret-one' },
    inbound: {
      address: '0.0.0.0',
      port: 15443,
      allow: ['web'],
      maxConcurrent: 1024,
      rateLimit: { perSecond: 10 },
      appTimeout: 15_000,
      headersTimeout: 10_000,
    },
  },
};

const edit = (f: (l: typeof base.listeners) => void) => {
  const next = structuredClone(base);
  f(next.listeners);
  return next;
};

describe('restartKeys', () => {
  it('is empty for the same listeners and for changes a reload applies', () => {
    expect(restartKeys(base, structuredClone(base))).toEqual([]);
    const live = edit((l) => {
      l.admin.token = 'secret-two';
      l.inbound.allow = ['web', 'billing'];
      l.inbound.maxConcurrent = 10;
      l.inbound.rateLimit = { perSecond: 99 };
      l.inbound.appTimeout = 2000;
    });
    expect(restartKeys(base, live)).toEqual([]);
  });

  it('leaves out a changed maxConnections on any listener and the gateway body timeout', () => {
    const withGateway = { listeners: { ...base.listeners, gateway: { port: 8080, bodyTimeout: 30_000 } } };
    const next = structuredClone(withGateway);
    Object.assign(next.listeners.outbound, { maxConnections: 100 });
    Object.assign(next.listeners.inbound, { maxConnections: 50 });
    Object.assign(next.listeners.gateway, { maxConnections: 10, bodyTimeout: 5_000 });
    expect(restartKeys(withGateway, next)).toEqual([]);
    next.listeners.gateway.port = 8081;
    expect(restartKeys(withGateway, next)).toEqual(['listeners.gateway.port']);
  });

  it('names each address, port or socket setting that changed, added or went away', () => {
    const next = edit((l) => {
      l.outbound.port = 16001;
      l.inbound.headersTimeout = 5000;
      l.inbound.allow = ['*'];
    });
    expect(restartKeys(base, next)).toEqual(['listeners.inbound.headersTimeout', 'listeners.outbound.port']);
    const { inbound: _gone, ...rest } = base.listeners;
    expect(restartKeys(base, { listeners: rest })).toEqual([
      'listeners.inbound.address',
      'listeners.inbound.headersTimeout',
      'listeners.inbound.port',
    ]);
  });
});
