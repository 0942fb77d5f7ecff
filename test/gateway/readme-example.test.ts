// The README's "Gateway mode" example config is valid, and its keys file parses.
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { parse } from 'yaml';
import { validateConfig } from '../../src/config/load-config.ts';
import { parseApiKeys } from '../../src/gateway/api-key-authenticator.ts';

describe('README gateway example', () => {
  const readme = readFileSync(new URL('../../README.md', import.meta.url), 'utf8');
  const section = readme.slice(
    readme.indexOf('## Gateway mode'),
    readme.indexOf('## Errors meshlet returns'),
  );
  const blocks = [...section.matchAll(/```yaml\n([\s\S]*?)```/g)].map((m) => m[1]!);

  it('the complete example validates, with every gateway key it shows', () => {
    const config = validateConfig(parse(blocks[0]!), 'meshlet.yaml', '/etc/meshlet');
    expect(config.listeners.gateway?.tls?.cert).toBe('/etc/meshlet/gw.pem'); // relative to the config file
    expect(Object.keys(config.gateway!.auth)).toEqual(['users-jwt', 'partners-jwt', 'identity', 'keys']);
    expect(config.gateway!.routes).toHaveLength(3);
    expect(config.gateway!.tenants.acme?.upstreamTags).toEqual(['acme']);
  });

  it('the keys file example parses', () => {
    const keys = parseApiKeys(blocks[1]!, 'api-keys.yaml');
    expect(keys.map((k) => k.name)).toEqual(['acme-web', 'ci-bot']);
  });
});
