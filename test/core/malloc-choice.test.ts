// Which malloc the daemon image gets from MESHLET_MALLOC, the host's files and the caller's own variables.
import { describe, expect, it } from 'vitest';
import {
  chooseMalloc,
  JEMALLOC_CONF,
  JEMALLOC_PATHS,
  MALLOC_TUNABLES,
  mallocInUse,
} from '../../src/cli/malloc-choice.ts';
import { ConfigError } from '../../src/errors/config-error.ts';

const ARM = '/usr/lib/aarch64-linux-gnu/libjemalloc.so.2';
const onHost =
  (...files: string[]) =>
  (p: string) =>
    files.includes(p);

describe('chooseMalloc', () => {
  it('by default preloads the first jemalloc found, with meshlet’s MALLOC_CONF, and adds no glibc tunables', () => {
    expect(JEMALLOC_PATHS).toContain(ARM);
    const choice = chooseMalloc({}, onHost(ARM, '/usr/lib/libjemalloc.so.2'));
    expect(choice).toEqual({ allocator: 'jemalloc', env: { LD_PRELOAD: ARM, MALLOC_CONF: JEMALLOC_CONF } });
    expect(chooseMalloc({ MESHLET_MALLOC: 'auto' }, onHost(ARM)).allocator).toBe('jemalloc');
    expect(chooseMalloc({ MESHLET_MALLOC: 'jemalloc' }, onHost(ARM)).env.LD_PRELOAD).toBe(ARM);
  });

  it('falls back to glibc with meshlet’s tunables when the host has no jemalloc', () => {
    expect(chooseMalloc({}, onHost())).toEqual({
      allocator: 'glibc',
      env: { GLIBC_TUNABLES: MALLOC_TUNABLES },
    });
  });

  it('MESHLET_MALLOC=glibc keeps glibc even with jemalloc installed; the operator’s GLIBC_TUNABLES win', () => {
    expect(chooseMalloc({ MESHLET_MALLOC: 'glibc' }, onHost(ARM))).toEqual({
      allocator: 'glibc',
      env: { GLIBC_TUNABLES: MALLOC_TUNABLES },
    });
    expect(
      chooseMalloc({ MESHLET_MALLOC: 'glibc', GLIBC_TUNABLES: 'glibc.malloc.arena_max=2' }, onHost(ARM)),
    ).toEqual({ allocator: 'glibc', env: {} });
  });

  it('keeps the caller’s LD_PRELOAD and MALLOC_CONF', () => {
    expect(chooseMalloc({ LD_PRELOAD: '/opt/profiler.so' }, onHost(ARM))).toEqual({
      allocator: 'preset',
      env: { GLIBC_TUNABLES: MALLOC_TUNABLES },
    });
    expect(chooseMalloc({ MALLOC_CONF: 'narenas:4' }, onHost(ARM))).toEqual({
      allocator: 'jemalloc',
      env: { LD_PRELOAD: ARM },
    });
  });

  it('preloads a library given by absolute path, without jemalloc’s settings', () => {
    expect(chooseMalloc({ MESHLET_MALLOC: '/opt/libmimalloc.so' }, onHost('/opt/libmimalloc.so'))).toEqual({
      allocator: 'library',
      env: { LD_PRELOAD: '/opt/libmimalloc.so' },
    });
  });

  it('refuses what it cannot load, naming the variable and what to do', () => {
    const refused = (env: NodeJS.ProcessEnv) => {
      try {
        chooseMalloc(env, onHost());
      } catch (err) {
        expect(err).toBeInstanceOf(ConfigError);
        return (err as ConfigError).message;
      }
      throw new Error('accepted');
    };
    expect(refused({ MESHLET_MALLOC: 'jemalloc' })).toMatch(
      /^environment: MESHLET_MALLOC: jemalloc: libjemalloc\.so\.2 not found in .*install it \(Debian: libjemalloc2\)/,
    );
    expect(refused({ MESHLET_MALLOC: '/opt/none.so' })).toBe(
      'environment: MESHLET_MALLOC: /opt/none.so: no such file',
    );
    expect(refused({ MESHLET_MALLOC: 'tcmalloc' })).toMatch(
      /"tcmalloc" is not auto, jemalloc, glibc or an absolute path/,
    );
  });
});

describe('mallocInUse', () => {
  it('names the preloaded library, else libc', () => {
    expect(mallocInUse({ LD_PRELOAD: '/usr/lib/x86_64-linux-gnu/libjemalloc.so.2' })).toBe(
      'libjemalloc.so.2',
    );
    expect(mallocInUse({ LD_PRELOAD: ' /a/liba.so:/b/libb.so' })).toBe('liba.so');
    expect(mallocInUse({})).toBe('libc');
  });
});
