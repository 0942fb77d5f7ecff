// First-hop check of a request target's characters: visible ASCII only and no fragment (RFC 9112 §3.2, RFC 3986).
import { MeshletError } from '../errors/meshlet-error.ts';

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
