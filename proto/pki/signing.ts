/**
 * The exact bytes that are signed (docs/spec/pki.md §4). Every signature is Ed25519 over a
 * context string (ASCII, ending in a NUL byte) followed by the object's canonical bytes, so a
 * signature made for one kind of object can never be replayed as another.
 */
export const CONTEXT = Object.freeze({
  descriptor: 'postmix/pki/v1/descriptor\0',
  sphinxKey: 'postmix/pki/v1/sphinx-key\0',
  document: 'postmix/pki/v1/document\0',
  vote: 'postmix/pki/v1/vote\0',
});

const te = new TextEncoder();

function concat(parts: readonly Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((a, p) => a + p.length, 0));
  let o = 0;
  for (const p of parts) {
    out.set(p, o);
    o += p.length;
  }
  return out;
}

export function u32be(n: number): Uint8Array {
  const b = new Uint8Array(4);
  new DataView(b.buffer).setUint32(0, n >>> 0, false);
  return b;
}

export function descriptorSigningBytes(body: Uint8Array): Uint8Array {
  return concat([te.encode(CONTEXT.descriptor), body]);
}

/** context || node_id (32) || u32be(epoch) || X25519 public key (32). */
export function sphinxKeySigningBytes(nodeId: Uint8Array, epoch: number, publicKey: Uint8Array): Uint8Array {
  return concat([te.encode(CONTEXT.sphinxKey), nodeId, u32be(epoch), publicKey]);
}

export function documentSigningBytes(body: Uint8Array): Uint8Array {
  return concat([te.encode(CONTEXT.document), body]);
}

export function voteSigningBytes(body: Uint8Array): Uint8Array {
  return concat([te.encode(CONTEXT.vote), body]);
}
