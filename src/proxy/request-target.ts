// First-hop checks of a request line: the target's characters (visible ASCII, no fragment) and the method.
import { METHODS } from 'node:http';
import { MeshletError } from '../errors/meshlet-error.ts';

/** The methods node:http's parser (llhttp) takes; its HTTP/1.1 listeners refuse any other with 400. */
const KNOWN_METHODS: ReadonlySet<string> = new Set(METHODS);

/**
 * The refusal of a method meshlet does not forward, or null: one node:http's HTTP/1.1 parser does
 * not know (`FOO`, a lowercase `get`), which it refuses as `invalid HTTP method` before meshlet
 * sees the request. Over HTTP/2 node:http2 hands any token over, so meshlet refuses those methods
 * itself (400 `bad_request`) at the first hop, over either protocol alike, instead of passing them
 * on for the next HTTP/1.1 hop (a peer's meshlet, an app) to refuse. Envoy forwards any token
 * method; meshlet's HTTP/1.1 parser cannot, so it refuses them over HTTP/2 as well.
 * @param method the request's method as the listener received it (undefined: no refusal).
 */
export function methodRefusal(method: string | undefined): MeshletError | null {
  if (method === undefined || KNOWN_METHODS.has(method)) return null;
  return new MeshletError('bad_request', 'invalid HTTP method');
}

const HASH = 35;

/**
 * Why a request target cannot be forwarded, or null when it can: a byte outside visible ASCII
 * (0x21–0x7E: controls, space, DEL, and 0x80–0xFF, which node:http2 hands over as latin1 and
 * node:http refuses itself) or a `#` fragment, which is never part of a request (RFC 9110 §7.1).
 * Checked at the first hop, so meshlet answers 400 `bad_request` itself instead of passing the
 * target on for the next hop to refuse. Envoy refuses both the same way (its standard-compliant
 * header validation; fragments since 1.16.5); its legacy mode that percent-encoded bytes ≥ 0x80 of
 * HTTP/2 paths is not copied: the encoding would guess the client's charset.
 * @param target the request target as the listener received it (origin or absolute form).
 */
export function targetRefusal(target: string): MeshletError | null {
  for (let i = 0; i < target.length; i++) {
    const c = target.charCodeAt(i);
    if (c > 0x20 && c < 0x7f && c !== HASH) continue;
    const what =
      c === HASH
        ? 'has a fragment (#), which a request never carries'
        : `has the byte 0x${c.toString(16).padStart(2, '0').toUpperCase()} at offset ${i}: a request target is visible ASCII, anything else is percent-encoded`;
    return new MeshletError('bad_request', `the request target ${what}`);
  }
  return null;
}
