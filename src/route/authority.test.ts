import { describe, expect, it } from 'vitest';
import { upstreamNameOf } from './authority.ts';

describe('upstreamNameOf', () => {
  it.each([
    ['users', 'users'],
    ['users:80', 'users'],
    ['Users', 'users'],
    ['users.service.consul', 'users'],
    ['users.service.dc1.consul', 'users'],
    ['users.service', 'users'],
    ['users.service.consul:8080', 'users'],
    ['users.example.com', 'users.example.com'],
    ['users.service.example.com', 'users.service.example.com'],
    ['127.0.0.1:15001', '127.0.0.1'],
    ['[::1]:15001', '[::1]'],
    ['', ''],
  ])('%s → %s', (authority, name) => {
    expect(upstreamNameOf(authority)).toBe(name);
  });
});
