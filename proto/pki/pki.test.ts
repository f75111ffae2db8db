import { mkdtempSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { DEFAULT_GEOMETRY } from '../sphinx/geometry.ts';
import { DEFAULT_MIXING } from '../mixing/params.ts';
import {
  acceptedKeyEpochs,
  assignLayers,
  buildDocumentBody,
  combineSignatures,
  DEFAULT_KEYS_AHEAD,
  decodeDescriptorBody,
  decodeDocumentBody,
  decodeSignedDescriptor,
  decodeSignedDocument,
  decodeSignedVote,
  decodeVoteBody,
  encodeCheckedDocumentBody,
  encodeDescriptorBody,
  encodeSignedDescriptor,
  encodeSignedDocument,
  epochAt,
  epochEnd,
  epochStart,
  generateIdentity,
  hex,
  identityFromSeed,
  isEpochUsable,
  isPkiError,
  LIMITS,
  nodeIdOf,
  PkiError,
  sha256,
  signDocumentBody,
  verifyDescriptor,
  verifyDocument,
  type DocumentParams,
  type EpochConfig,
} from './index.ts';
import { KeyFileExistsError, KeyStore } from '../../runtime/pki/key-store.ts';
import { DocumentCache } from '../../runtime/pki/client.ts';
import { peerIdOfIdentityKey } from './peer-id.ts';
import { buildDescriptor } from './descriptor.ts';
import { testNode, resignedDescriptor } from '../../test/support/pki.ts';
import { ed25519Sign } from './keys.ts';
import { descriptorSigningBytes } from './signing.ts';

const EC: EpochConfig = { origin: 1_000_000, length: 60, grace: 10 };

function reason(f: () => unknown): string {
  try {
    f();
  } catch (e) {
    if (isPkiError(e)) return e.reason;
    throw e;
  }
  return 'accepted';
}

describe('keys', () => {
  it('node id is SHA-256 of the identity key and seeds are deterministic', () => {
    const a = generateIdentity();
    expect(a.nodeId).toEqual(sha256(a.publicKey));
    expect(nodeIdOf(a.publicKey)).toEqual(a.nodeId);
    expect(identityFromSeed(a.seed).publicKey).toEqual(a.publicKey);
  });

  it('KeyStore writes 0600 private files, refuses to overwrite, loads and prunes', () => {
    const dir = join(mkdtempSync(join(tmpdir(), 'pmk-')), 'keys');
    const { identity, written } = KeyStore.create(dir, { force: false, epochs: [3, 4] });
    expect(written).toHaveLength(4);
    expect(statSync(join(dir, 'identity.key')).mode & 0o777).toBe(0o600);
    expect(statSync(join(dir, 'sphinx-3.key')).mode & 0o777).toBe(0o600);
    expect(statSync(join(dir, 'identity.pub')).mode & 0o777).toBe(0o644);
    expect(() => KeyStore.create(dir, { force: false, epochs: [] })).toThrow(KeyFileExistsError);
    const store = new KeyStore(dir);
    expect(store.identity().publicKey).toEqual(identity.publicKey);
    const [k5] = store.ensureSphinxKeys([5]);
    expect(store.sphinxKey(5)?.publicKey).toEqual(k5!.publicKey);
    expect(store.listSphinxEpochs()).toEqual([3, 4, 5]);
    expect(store.pruneSphinxKeys(5)).toEqual([3, 4]);
    const again = KeyStore.create(dir, { force: true, epochs: [] });
    expect(again.identity.publicKey).not.toEqual(identity.publicKey);
  });

  it('a corrupt or tampered key file is rejected with a reason', () => {
    const dir = mkdtempSync(join(tmpdir(), 'pmk-'));
    KeyStore.create(dir, { force: false, epochs: [1] });
    writeFileSync(join(dir, 'identity.key'), 'not json');
    expect(reason(() => new KeyStore(dir).identity())).toBe('malformed');
    const j = JSON.parse(readFileSync(join(dir, 'sphinx-1.key'), 'utf8'));
    j.publicKey = Buffer.alloc(32, 1).toString('base64');
    writeFileSync(join(dir, 'sphinx-1.key'), JSON.stringify(j));
    expect(reason(() => new KeyStore(dir).sphinxKey(1))).toBe('bad-key');
  });
});

describe('epochs', () => {
  it('numbers epochs from the origin with a grace window', () => {
    expect(epochAt(EC, EC.origin)).toBe(0);
    expect(epochAt(EC, EC.origin + 59.9)).toBe(0);
    expect(epochAt(EC, EC.origin + 60)).toBe(1);
    expect(epochStart(EC, 7)).toBe(EC.origin + 420);
    expect(epochEnd(EC, 7)).toBe(EC.origin + 480);
    expect(acceptedKeyEpochs(EC, EC.origin + 125)).toEqual([2, 1]);
    expect(acceptedKeyEpochs(EC, EC.origin + 135)).toEqual([2]);
    expect(isEpochUsable(EC, 1, EC.origin + 125)).toBe(true);
    expect(isEpochUsable(EC, 1, EC.origin + 130)).toBe(false);
  });
  it('every time falls in exactly one epoch', () => {
    fc.assert(
      fc.property(fc.integer({ min: 0, max: 10_000_000 }), (dt) => {
        const t = EC.origin + dt / 7;
        const e = epochAt(EC, t);
        return epochStart(EC, e) <= t && t < epochEnd(EC, e);
      }),
    );
  });
});

describe('descriptors', () => {
  it('build, encode and verify round-trip', () => {
    const n = testNode(9, 1, 'gateway');
    const v = verifyDescriptor(n.descriptor);
    expect(v.nodeId).toEqual(n.identity.nodeId);
    expect(v.body.gateway?.domains).toEqual(['mail1.example']);
    expect(v.body.sphinxKeys.map((k) => k.epoch)).toEqual([9, 10, 11, 12]);
    expect(encodeDescriptorBody(decodeDescriptorBody(v.signed.body))).toEqual(v.signed.body);
  });

  it('rejects a wrong signature, a foreign Sphinx key signature, truncation and oversize', () => {
    const n = testNode(9, 2, 'mix');
    const s = decodeSignedDescriptor(n.descriptor);
    const sig = s.signature.slice();
    sig[0]! ^= 1;
    expect(reason(() => verifyDescriptor(encodeSignedDescriptor({ body: s.body, signature: sig })))).toBe('bad-signature');
    // re-sign a body whose Sphinx key signature belongs to another node
    const other = testNode(9, 3, 'mix');
    const ob = decodeDescriptorBody(decodeSignedDescriptor(other.descriptor).body);
    const b = decodeDescriptorBody(s.body);
    const mixed = encodeDescriptorBody({ ...b, sphinxKeys: ob.sphinxKeys });
    const resigned = encodeSignedDescriptor({ body: mixed, signature: ed25519Sign(n.identity, descriptorSigningBytes(mixed)) });
    expect(reason(() => verifyDescriptor(resigned))).toBe('bad-signature');
    expect(reason(() => verifyDescriptor(n.descriptor.subarray(0, n.descriptor.length - 5)))).toBe('truncated');
    expect(reason(() => verifyDescriptor(new Uint8Array(LIMITS.descriptorBytes + 1)))).toBe('oversized');
  });

  it("rejects a peer id that is not the identity key's, and refuses to build one", () => {
    const n = testNode(9, 5, 'mix');
    const other = testNode(9, 6, 'mix');
    const theirs = peerIdOfIdentityKey(other.identity.publicKey);
    expect(verifyDescriptor(n.descriptor).body.peerId).toBe(peerIdOfIdentityKey(n.identity.publicKey));
    const stolen = resignedDescriptor(n, { peerId: theirs });
    expect(reason(() => verifyDescriptor(stolen))).toBe('invalid-field');
    expect(() => verifyDescriptor(stolen)).toThrow(/not the one derived from the identity key/);
    expect(reason(() => verifyDescriptor(resignedDescriptor(n, { peerId: 'peer-1' })))).toBe('invalid-field');
    expect(reason(() => buildDescriptor({ identity: n.identity, peerId: theirs, addresses: [], role: 'mix', epoch: 9, sphinxKeys: n.keys }))).toBe(
      'invalid-field',
    );
  });

  it('rejects a mix that carries gateway info and a gateway without domains', () => {
    const n = testNode(1, 4, 'gateway');
    const b = decodeDescriptorBody(decodeSignedDescriptor(n.descriptor).body);
    expect(reason(() => decodeDescriptorBody(encodeDescriptorBody({ ...b, role: 'mix' })))).toBe('invalid-field');
    expect(reason(() => decodeDescriptorBody(encodeDescriptorBody({ ...b, gateway: { ...b.gateway!, domains: [] } })))).toBe('invalid-field');
    expect(reason(() => decodeDescriptorBody(encodeDescriptorBody({ ...b, version: 2 })))).toBe('wrong-version');
  });
});

// ---------------------------------------------------------------------------------------------

const AUTH = [generateIdentity(), generateIdentity(), generateIdentity()];
const PARAMS: DocumentParams = {
  epochConfig: EC,
  geometry: DEFAULT_GEOMETRY,
  mixing: DEFAULT_MIXING,
  numLayers: 3,
  authorities: AUTH.map((a) => a.publicKey),
  threshold: 2,
};
const EPOCH = 20;
const NODES = [
  ...Array.from({ length: 7 }, (_, i) => testNode(EPOCH, i, 'mix', { layerPreference: (i % 3) + 1 })),
  ...Array.from({ length: 2 }, (_, i) => testNode(EPOCH, 100 + i, 'gateway')),
];
const DESCS = NODES.map((n) => verifyDescriptor(n.descriptor));
const BODY = buildDocumentBody(PARAMS, EPOCH, DESCS);
const BODY_BYTES = encodeCheckedDocumentBody(BODY);
const SIGNED = combineSignatures(
  BODY_BYTES,
  AUTH.map((a) => signDocumentBody(a, BODY_BYTES)),
);
const VOPTS = { authorities: PARAMS.authorities, threshold: 2 };

describe('network document', () => {
  it('is deterministic, balanced, and verifies with the authority signatures', () => {
    const again = encodeCheckedDocumentBody(buildDocumentBody(PARAMS, EPOCH, [...DESCS].reverse()));
    expect(again).toEqual(BODY_BYTES);
    expect(BODY.layers.map((l) => l.length).sort()).toEqual([2, 2, 3]);
    expect(BODY.gateways).toHaveLength(2);
    const v = verifyDocument(SIGNED, { ...VOPTS, epoch: EPOCH, now: epochStart(EC, EPOCH) + 1 });
    expect(v.signers).toHaveLength(3);
    expect(v.body.epoch).toBe(EPOCH);
    expect(v.body.geometry).toEqual(DEFAULT_GEOMETRY);
    expect(v.body.mixing).toEqual(DEFAULT_MIXING);
  });

  it('accepts exactly threshold signatures and rejects fewer', () => {
    const two = combineSignatures(
      BODY_BYTES,
      AUTH.slice(0, 2).map((a) => signDocumentBody(a, BODY_BYTES)),
    );
    expect(verifyDocument(two, VOPTS).signers).toHaveLength(2);
    const one = combineSignatures(BODY_BYTES, [signDocumentBody(AUTH[0]!, BODY_BYTES)]);
    expect(reason(() => verifyDocument(one, VOPTS))).toBe('threshold');
  });

  it('rejects a forged signature, unknown authorities, duplicated signers', () => {
    const s = decodeSignedDocument(SIGNED);
    const forged = s.signatures.map((x, i) => (i === 0 ? x : { ...x, signature: new Uint8Array(64).fill(7) }));
    expect(reason(() => verifyDocument(encodeSignedDocument({ body: s.body, signatures: forged }), VOPTS))).toBe('bad-signature');
    const strangers = [generateIdentity(), generateIdentity()].map((a) => signDocumentBody(a, BODY_BYTES));
    expect(reason(() => verifyDocument(encodeSignedDocument({ body: BODY_BYTES, signatures: strangers }), VOPTS))).toBe('unknown-authority');
    const sig0 = signDocumentBody(AUTH[0]!, BODY_BYTES);
    expect(reason(() => verifyDocument(encodeSignedDocument({ body: BODY_BYTES, signatures: [sig0, sig0] }), VOPTS))).toBe('threshold');
    // a tampered body invalidates every signature
    const body2 = BODY_BYTES.slice();
    body2[body2.length - 1]! ^= 1;
    expect(reason(() => verifyDocument(encodeSignedDocument({ body: body2, signatures: s.signatures }), VOPTS))).toBe('bad-signature');
  });

  it('carries λ_G (field 6 of MixingParams) under the signatures', () => {
    expect(BODY.mixing.lambdaG).toBe(DEFAULT_MIXING.lambdaG);
    const other = encodeCheckedDocumentBody({ ...BODY, mixing: { ...BODY.mixing, lambdaG: 3 } });
    expect(decodeDocumentBody(other).mixing.lambdaG).toBe(3);
    const s = decodeSignedDocument(SIGNED);
    expect(reason(() => verifyDocument(encodeSignedDocument({ body: other, signatures: s.signatures }), VOPTS))).toBe('bad-signature');
  });

  it('rejects the wrong epoch, a stale document and one too far ahead', () => {
    expect(reason(() => verifyDocument(SIGNED, { ...VOPTS, epoch: EPOCH + 1 }))).toBe('wrong-epoch');
    // good while its last keys (epoch + 3) and their grace last, no longer
    const last = EPOCH + DEFAULT_KEYS_AHEAD;
    expect(verifyDocument(SIGNED, { ...VOPTS, now: epochEnd(EC, last) + EC.grace - 1 }).body.epoch).toBe(EPOCH);
    expect(reason(() => verifyDocument(SIGNED, { ...VOPTS, now: epochEnd(EC, last) + EC.grace }))).toBe('expired');
    expect(reason(() => verifyDocument(SIGNED, { ...VOPTS, now: epochStart(EC, EPOCH - 1) - 1 }))).toBe('future-epoch');
    expect(verifyDocument(SIGNED, { ...VOPTS, now: epochStart(EC, EPOCH - 1) }).body.epoch).toBe(EPOCH);
  });

  it('rejects a signed document with duplicate keys or domains', () => {
    const mix = BODY.layers[0]![0]!;
    const dupKey = { ...BODY, layers: [BODY.layers[0]!, [...BODY.layers[1]!.map((n) => ({ ...n, sphinxKey: mix.sphinxKey }))], BODY.layers[2]!] };
    const dupBytes = encodeCheckedDocumentBody(dupKey);
    const signed = combineSignatures(
      dupBytes,
      AUTH.map((a) => signDocumentBody(a, dupBytes)),
    );
    expect(reason(() => verifyDocument(signed, VOPTS))).toBe('duplicate-key');
    const g = BODY.gateways;
    const dupDomain = { ...BODY, gateways: [g[0]!, { ...g[1]!, gateway: g[0]!.gateway }] };
    const ddBytes = encodeCheckedDocumentBody(dupDomain);
    expect(
      reason(() =>
        verifyDocument(
          combineSignatures(
            ddBytes,
            AUTH.map((a) => signDocumentBody(a, ddBytes)),
          ),
          VOPTS,
        ),
      ),
    ).toBe('duplicate-key');
  });

  it("lists every node's keys ahead and states how long it stays valid (fresh_until, valid_until)", () => {
    expect(BODY.freshUntil).toBe(epochEnd(EC, EPOCH));
    expect(BODY.validUntil).toBe(epochEnd(EC, EPOCH + DEFAULT_KEYS_AHEAD));
    for (const n of NODES) {
      const e = [...BODY.layers.flat(), ...BODY.gateways].find((x) => hex(x.nodeId) === hex(n.identity.nodeId))!;
      expect([e.sphinxKey, ...e.sphinxKeysAhead].map(hex)).toEqual(n.keys.map((k) => hex(k.publicKey)));
    }
    // fewer keys wanted: fewer listed, a shorter validity
    const one = buildDocumentBody({ ...PARAMS, keysAhead: 1 }, EPOCH, DESCS);
    expect(one.validUntil).toBe(epochEnd(EC, EPOCH + 1));
    expect(one.layers.flat().every((n) => n.sphinxKeysAhead.length === 1)).toBe(true);
    expect(decodeDocumentBody(encodeCheckedDocumentBody(one))).toEqual(one);
    // a node that published fewer keys shortens the document for every node, and stays listed
    const short = testNode(EPOCH, 7, 'mix', { keysAhead: 1 });
    const withShort = buildDocumentBody(PARAMS, EPOCH, [...DESCS, verifyDescriptor(short.descriptor)]);
    expect(withShort.validUntil).toBe(epochEnd(EC, EPOCH + 1));
    expect(withShort.layers.flat()).toHaveLength(8);
    expect(() => buildDocumentBody({ ...PARAMS, keysAhead: 4 }, EPOCH, DESCS)).toThrow(RangeError);
  });

  it('refuses a document whose validity or keys ahead do not agree', () => {
    const enc = (b: typeof BODY) => reason(() => decodeDocumentBody(encodeCheckedDocumentBody(b)));
    expect(enc({ ...BODY, freshUntil: BODY.freshUntil + 1 })).toBe('invalid-field');
    expect(enc({ ...BODY, validUntil: BODY.validUntil + 1 })).toBe('invalid-field'); // not whole epochs
    expect(enc({ ...BODY, validUntil: BODY.freshUntil - EC.length })).toBe('invalid-field'); // before fresh_until
    expect(enc({ ...BODY, validUntil: BODY.freshUntil + 4 * EC.length })).toBe('invalid-field'); // beyond MAX_KEYS_AHEAD
    // a node listing fewer keys than the validity claims
    const l0 = BODY.layers[0]!;
    const fewer = { ...BODY, layers: [[{ ...l0[0]!, sphinxKeysAhead: l0[0]!.sphinxKeysAhead.slice(1) }, ...l0.slice(1)], ...BODY.layers.slice(1)] };
    expect(enc(fewer)).toBe('invalid-field');
    // one key for two epochs of one node, or a key ahead that is another node's: signed, still refused
    const reuse = {
      ...BODY,
      layers: [[{ ...l0[0]!, sphinxKeysAhead: [l0[0]!.sphinxKey, ...l0[0]!.sphinxKeysAhead.slice(1)] }, ...l0.slice(1)], ...BODY.layers.slice(1)],
    };
    const other = {
      ...BODY,
      layers: [[{ ...l0[0]!, sphinxKeysAhead: [l0[1]!.sphinxKeysAhead[0]!, ...l0[0]!.sphinxKeysAhead.slice(1)] }, ...l0.slice(1)], ...BODY.layers.slice(1)],
    };
    for (const b of [reuse, other]) {
      const bytes = encodeCheckedDocumentBody(b);
      expect(
        reason(() =>
          verifyDocument(
            combineSignatures(
              bytes,
              AUTH.map((a) => signDocumentBody(a, bytes)),
            ),
            VOPTS,
          ),
        ),
      ).toBe('duplicate-key');
    }
  });

  it('refuses a descriptor that uses one Sphinx key for two epochs', () => {
    const n = testNode(EPOCH, 9, 'mix');
    const b = decodeDescriptorBody(decodeSignedDescriptor(n.descriptor).body);
    const twice = b.sphinxKeys.map((k, i) => (i === 1 ? { ...k, publicKey: b.sphinxKeys[0]!.publicKey } : k));
    expect(reason(() => decodeDescriptorBody(encodeDescriptorBody({ ...b, sphinxKeys: twice })))).toBe('invalid-field');
  });

  it('leaves out descriptors that clash with a lower node id', () => {
    const g0 = NODES[7]!;
    const clash = testNode(EPOCH, 100, 'gateway'); // same domain mail100.example as NODES[7]
    const body = buildDocumentBody(PARAMS, EPOCH, [...DESCS, verifyDescriptor(clash.descriptor)]);
    expect(body.gateways).toHaveLength(2);
    expect(body.gateways.flatMap((g) => g.gateway!.domains).sort()).toEqual(['mail100.example', 'mail101.example']);
    expect(g0.role).toBe('gateway');
  });

  it('caches the last good document on disk and re-verifies it', () => {
    const path = join(mkdtempSync(join(tmpdir(), 'pmc-')), 'doc.bin');
    const cache = new DocumentCache(path);
    expect(cache.load(VOPTS)).toBeUndefined();
    cache.save(verifyDocument(SIGNED, VOPTS));
    expect(cache.load(VOPTS)?.body.epoch).toBe(EPOCH);
    expect(cache.load({ ...VOPTS, now: epochEnd(EC, EPOCH + DEFAULT_KEYS_AHEAD) + EC.grace })).toBeUndefined();
    expect(cache.rejected.get('expired')).toBe(1);
    writeFileSync(path, SIGNED.subarray(0, 100));
    expect(cache.load(VOPTS)).toBeUndefined();
    expect(cache.rejected.total()).toBe(2);
  });
});

describe('fetching and caching over HTTP', () => {
  it('fetchDocument skips a bad authority; the cache keeps the first body seen for an epoch', async () => {
    const { createServer } = await import('node:http');
    const other = encodeCheckedDocumentBody(buildDocumentBody(PARAMS, EPOCH, DESCS.slice(0, 4)));
    const equivocated = combineSignatures(
      other,
      AUTH.map((a) => signDocumentBody(a, other)),
    );
    let serve: Uint8Array = SIGNED;
    const server = createServer((req, res) => {
      if (req.url === '/v1/document/bad') {
        res.writeHead(200);
        res.end(Buffer.from('garbage'));
        return;
      }
      res.writeHead(200, { 'content-type': 'application/x-postmix-document' });
      res.end(serve);
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    const url = `http://127.0.0.1:${(server.address() as { port: number }).port}`;
    try {
      const { fetchDocument } = await import('../../runtime/pki/client.ts');
      const v = await fetchDocument(EPOCH, { ...VOPTS, urls: ['http://127.0.0.1:1', url], timeoutMs: 2000 });
      expect(v.body.epoch).toBe(EPOCH);
      await expect(fetchDocument('bad' as unknown as number, { ...VOPTS, urls: [url] })).rejects.toThrow(/unavailable/);
      const cache = new DocumentCache(join(mkdtempSync(join(tmpdir(), 'pmc-')), 'doc.bin'));
      const first = await cache.refresh(EPOCH, { ...VOPTS, urls: [url] });
      expect(first.fromCache).toBe(false);
      serve = equivocated;
      const second = await cache.refresh(EPOCH, { ...VOPTS, urls: [url] });
      expect(second.fromCache).toBe(true);
      expect(second.doc.digest).toEqual(first.doc.digest);
      expect(cache.rejected.get('conflicting')).toBe(1);
    } finally {
      await new Promise((r) => server.close(r));
    }
  });
});

describe('layer assignment', () => {
  const ids = (n: number, seed: number) => Array.from({ length: n }, (_, i) => ({ nodeId: sha256(new Uint8Array([seed, i, i >> 8])), layerPreference: 0 }));
  it('is balanced for any set and keeps mixes in place when nothing changes', () => {
    fc.assert(
      fc.property(fc.integer({ min: 0, max: 40 }), fc.integer({ min: 1, max: 5 }), fc.integer({ min: 0, max: 255 }), (n, L, seed) => {
        const mixes = ids(n, seed);
        const a = assignLayers(mixes, L, 1);
        const sizes = Array.from({ length: L }, (_, i) => [...a.values()].filter((x) => x === i + 1).length);
        expect(Math.max(...sizes) - Math.min(...sizes)).toBeLessThanOrEqual(1);
        expect(a.size).toBe(n);
        const b = assignLayers(mixes, L, 2, a);
        expect(b).toEqual(a);
      }),
      { numRuns: 60 },
    );
  });
  it('moves few mixes when one joins or leaves', () => {
    const mixes = ids(12, 1);
    const a = assignLayers(mixes, 3, 1);
    const b = assignLayers(mixes.slice(1), 3, 2, a);
    const moved = [...b.entries()].filter(([k, v]) => a.get(k) !== v).length;
    expect(moved).toBeLessThanOrEqual(1);
  });
});

describe('decoders never crash on arbitrary or mutated input', () => {
  const decoders: [string, (b: Uint8Array) => unknown][] = [
    ['descriptor', verifyDescriptor],
    ['descriptor body', decodeDescriptorBody],
    ['signed document', decodeSignedDocument],
    ['document body', decodeDocumentBody],
    ['vote body', decodeVoteBody],
    ['signed vote', decodeSignedVote],
    ['document verify', (b) => verifyDocument(b, VOPTS)],
  ];
  for (const [name, decode] of decoders) {
    it(`${name}: random bytes throw only PkiError`, () => {
      fc.assert(
        fc.property(fc.uint8Array({ maxLength: 600 }), (b) => {
          try {
            decode(b);
          } catch (e) {
            expect(e).toBeInstanceOf(PkiError);
          }
        }),
        { numRuns: 300 },
      );
    });
  }

  it('fuzz: bit flips, truncations and splices of valid objects are rejected or round-trip', () => {
    const seeds = [NODES[0]!.descriptor, NODES[8]!.descriptor, SIGNED];
    fc.assert(
      fc.property(
        fc.integer({ min: 0, max: seeds.length - 1 }),
        fc.array(fc.tuple(fc.integer({ min: 0, max: 4096 }), fc.integer({ min: 1, max: 255 })), { minLength: 1, maxLength: 4 }),
        fc.integer({ min: 0, max: 4096 }),
        (si, flips, cut) => {
          const b = seeds[si]!.slice();
          for (const [pos, x] of flips) b[pos % b.length]! ^= x;
          const t = b.subarray(0, cut % (b.length + 1));
          for (const input of [b, t]) {
            for (const [, decode] of decoders) {
              try {
                decode(input);
              } catch (e) {
                expect(e).toBeInstanceOf(PkiError);
              }
            }
          }
          // a mutated signed object must never verify as valid
          if (si < 2) expect(() => verifyDescriptor(b)).toThrow(PkiError);
          // with every signature required, no mutation of a signed document may verify
          else expect(() => verifyDocument(b, { ...VOPTS, threshold: 3 })).toThrow(PkiError);
        },
      ),
      { numRuns: 200 },
    );
  });
});
