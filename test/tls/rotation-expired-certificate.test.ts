// Certificate files rotated to an already expired certificate: refused, the valid one keeps serving, no outage.
import { afterAll, beforeAll, describe, it } from 'vitest';
import { makePki, type TestPki } from './tls-helpers.ts';
import { expectRefusedRotation, type RotationMesh, rotationMesh } from './refused-rotation.ts';

let pki: TestPki;
let mesh: RotationMesh;

beforeAll(async () => {
  pki = await makePki();
  mesh = await rotationMesh(pki);
});

afterAll(async () => {
  await mesh?.close();
});

describe('rotation to an expired certificate (source files)', () => {
  it('is refused and counted; new connections still get the valid certificate; a good file after it applies', async () => {
    // A stale copy lands in the directory (a restored backup, a Secret rolled back): key and
    // certificate fit together and chain to the CA, but the certificate expired an hour ago.
    const stale = await pki.issue('orders', { notAfter: new Date(Date.now() - 3_600_000) });
    await expectRefusedRotation(mesh, stale, /^tls\.cert: .*orders\.pem: expired at \d{4}-\d\d-\d\dT/);
  });
});
