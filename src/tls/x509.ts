// Loads @peculiar/x509 on first use, with the Reflect metadata its tsyringe needs and node's WebCrypto.
import { webcrypto } from 'node:crypto';
import type * as X509 from '@peculiar/x509';

/** The @peculiar/x509 module namespace. */
export type X509Module = typeof X509;

let loading: Promise<X509Module> | undefined;

/**
 * Imports @peculiar/x509 once (later calls share the promise) and sets its crypto provider to
 * node's WebCrypto. Before that it installs {@link installReflectMetadata} when no Reflect metadata
 * polyfill (e.g. reflect-metadata) is present, since the library's tsyringe refuses to load without
 * one. Lazy so that a daemon that never issues certificates never loads the library.
 */
export function loadX509(): Promise<X509Module> {
  loading ??= (async () => {
    installReflectMetadata();
    const x509 = await import('@peculiar/x509');
    x509.cryptoProvider.set(webcrypto);
    return x509;
  })();
  return loading;
}

type MetadataKey = unknown;
type PropertyKey_ = string | symbol | undefined;

/**
 * Installs the three Reflect metadata functions tsyringe calls (`defineMetadata`, `getOwnMetadata`,
 * `getMetadata`, the last walking the prototype chain), kept in a WeakMap, unless `Reflect.getMetadata`
 * already exists. Returns whether it installed them. Idempotent.
 */
export function installReflectMetadata(): boolean {
  const reflect = Reflect as unknown as Record<string, unknown>;
  if (typeof reflect.getMetadata === 'function') return false;
  const store = new WeakMap<object, Map<PropertyKey_, Map<MetadataKey, unknown>>>();
  const own = (target: object, property: PropertyKey_, create: boolean) => {
    let byProperty = store.get(target);
    if (byProperty === undefined) {
      if (!create) return undefined;
      byProperty = new Map();
      store.set(target, byProperty);
    }
    let byKey = byProperty.get(property);
    if (byKey === undefined && create) {
      byKey = new Map();
      byProperty.set(property, byKey);
    }
    return byKey;
  };
  const defineMetadata = (key: MetadataKey, value: unknown, target: object, property?: PropertyKey_) => {
    own(target, property, true)!.set(key, value);
  };
  const getOwnMetadata = (key: MetadataKey, target: object, property?: PropertyKey_) =>
    own(target, property, false)?.get(key);
  const getMetadata = (key: MetadataKey, target: object, property?: PropertyKey_) => {
    for (let t: object | null = target; t !== null; t = Object.getPrototypeOf(t) as object | null) {
      const map = own(t, property, false);
      if (map?.has(key)) return map.get(key);
    }
    return undefined;
  };
  for (const [name, fn] of Object.entries({ defineMetadata, getOwnMetadata, getMetadata })) {
    Object.defineProperty(Reflect, name, {
      value: fn,
      writable: true,
      configurable: true,
      enumerable: false,
    });
  }
  return true;
}
