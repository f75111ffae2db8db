import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import {
  AckStatus,
  assemble,
  consistentWith,
  decodePayload,
  encodeAck,
  encodeFragment,
  encodeDecoy,
  encodeLoop,
  fragmentCapacity,
  splitMessage,
  type Fragment,
} from './index.ts';

const P = 2048;

const fragArb = fc
  .record({
    messageId: fc.uint8Array({ minLength: 16, maxLength: 16 }),
    count: fc.integer({ min: 1, max: 65535 }),
    recipient: fc.stringMatching(/^[a-z0-9.]{1,40}@[a-z0-9.]{1,40}$/),
    token: fc.uint8Array({ maxLength: 100 }),
    surb: fc.uint8Array({ maxLength: 434 }),
    data: fc.uint8Array({ maxLength: 1200 }),
    extra: fc.nat(1000),
  })
  .chain((r) => fc.integer({ min: 0, max: r.count - 1 }).map((index): Fragment => ({ ...r, index, totalLength: r.data.length + r.extra })));

describe('fragment format', () => {
  it('encode/decode round-trips, also with the zero padding Sphinx adds', () => {
    fc.assert(
      fc.property(fragArb, (f) => {
        const enc = encodeFragment(f, P);
        const padded = new Uint8Array(P);
        padded.set(enc);
        for (const b of [enc, padded]) {
          const d = decodePayload(b);
          if (!d.ok || d.kind !== 'fragment') throw new Error(JSON.stringify(d));
          const { extra: _e, ...want } = f as Fragment & { extra?: number };
          expect(d.fragment).toEqual({ ...want });
        }
      }),
      { numRuns: 300 },
    );
  });

  it('acks and loops round-trip', () => {
    const id = new Uint8Array(16).fill(3);
    for (const status of [AckStatus.Stored, AckStatus.Queued, AckStatus.TokenRefused, AckStatus.RateLimited]) {
      const d = decodePayload(encodeAck({ messageId: id, index: 7, status }));
      expect(d).toEqual({ ok: true, kind: 'ack', ack: { messageId: id, index: 7, status } });
    }
    expect(decodePayload(encodeLoop(id))).toEqual({ ok: true, kind: 'loop', loopId: id });
  });

  it('decoys round-trip, padded; a bad SURB length or non-zero padding is refused', () => {
    const id = new Uint8Array(16).fill(9);
    const surb = new Uint8Array(434).fill(0xaa);
    const padded = new Uint8Array(2048);
    padded.set(encodeDecoy({ id, surb }, 2048));
    expect(Buffer.from(padded.subarray(0, 20)).toString('hex')).toBe('0104' + '09'.repeat(16) + '01b2');
    expect(decodePayload(padded)).toEqual({ ok: true, kind: 'decoy', decoy: { id, surb } });
    const long = padded.slice();
    long[18] = 0xff;
    expect(decodePayload(long).ok).toBe(false);
    const dirty = padded.slice();
    dirty[2047] = 1;
    expect(decodePayload(dirty).ok).toBe(false);
    expect(() => encodeDecoy({ id, surb: new Uint8Array(0) }, 2048)).toThrow(RangeError);
    expect(() => encodeDecoy({ id, surb: new Uint8Array(2040) }, 2048)).toThrow(RangeError);
  });

  it('the decoder never throws on random or mutated input', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: P }), (b) => {
        const d = decodePayload(b);
        expect(typeof d.ok).toBe('boolean');
      }),
      { numRuns: 3000 },
    );
    const good = encodeFragment(
      {
        messageId: new Uint8Array(16),
        index: 0,
        count: 2,
        totalLength: 500,
        recipient: 'a@b.c',
        token: new Uint8Array(100),
        surb: new Uint8Array(434),
        data: new Uint8Array(300),
      },
      P,
    );
    fc.assert(
      fc.property(fc.nat(good.length - 1), fc.integer({ min: 1, max: 255 }), (i, x) => {
        const b = good.slice();
        b[i]! ^= x;
        expect(typeof decodePayload(b).ok).toBe('boolean');
      }),
      { numRuns: 2000 },
    );
  });

  it('rejects fragments whose index, count or lengths cannot be right', () => {
    const base = {
      messageId: new Uint8Array(16),
      index: 0,
      count: 1,
      totalLength: 3,
      recipient: 'a@b.c',
      token: new Uint8Array(0),
      surb: new Uint8Array(0),
      data: new Uint8Array(3),
    };
    const enc = encodeFragment(base, P);
    const bad = enc.slice();
    bad[20] = 0; // count high byte
    bad[21] = 0; // count = 0
    expect(decodePayload(bad).ok).toBe(false);
    const long = enc.slice();
    new DataView(long.buffer).setUint32(22, 2); // totalLength < data
    expect(decodePayload(long)).toEqual({ ok: false, reason: 'fragment longer than its message' });
    expect(() => encodeFragment({ ...base, data: new Uint8Array(P) }, P)).toThrow(RangeError);
  });
});

describe('splitting and reassembly', () => {
  it('any message splits into fragments that fit and reassemble to the same bytes', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 20_000 }), fc.constantFrom(256, 2048, 32768), (message, payloadSize) => {
        const token = new Uint8Array(100);
        const surbLength = payloadSize === 256 ? 0 : 434;
        const parts = splitMessage({ message, payloadSize, recipient: 'bob@example.org', token, surbLength });
        const cap = fragmentCapacity(payloadSize, 15, 100, surbLength);
        expect(parts.length).toBe(Math.max(1, Math.ceil(message.length / cap)));
        const header = { messageId: new Uint8Array(16).fill(1), count: parts.length, totalLength: message.length, recipient: 'bob@example.org', token };
        const got = new Map<number, Uint8Array>();
        // arrive in reverse order, with a duplicate
        for (let i = parts.length - 1; i >= 0; i--) {
          const f: Fragment = { ...header, index: i, surb: new Uint8Array(surbLength), data: parts[i]! };
          const d = decodePayload(encodeFragment(f, payloadSize));
          if (!d.ok || d.kind !== 'fragment') throw new Error('decode');
          expect(consistentWith(header, d.fragment)).toBe(true);
          got.set(i, d.fragment.data);
          got.set(i, d.fragment.data);
          if (i > 0) expect(assemble(got, parts.length, message.length)).toBeNull();
        }
        expect(assemble(got, parts.length, message.length)).toEqual(message);
      }),
      { numRuns: 60 },
    );
  });

  it('a fragment that disagrees with its message header is inconsistent', () => {
    const h = { messageId: new Uint8Array(16), count: 2, totalLength: 10, recipient: 'a@b.c', token: new Uint8Array(4) };
    const f: Fragment = { ...h, index: 1, surb: new Uint8Array(0), data: new Uint8Array(5) };
    expect(consistentWith(h, f)).toBe(true);
    expect(consistentWith(h, { ...f, count: 3 })).toBe(false);
    expect(consistentWith(h, { ...f, recipient: 'x@b.c' })).toBe(false);
    expect(consistentWith(h, { ...f, token: new Uint8Array(4).fill(1) })).toBe(false);
    expect(
      assemble(
        new Map([
          [0, new Uint8Array(5)],
          [1, new Uint8Array(4)],
        ]),
        2,
        10,
      ),
    ).toBeNull();
  });
});
