import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import {
  MAILBOX_HEADROOM,
  MAIL_QUEUE_ID,
  decodeItem,
  decodeSubscribe,
  encodeDummyItem,
  encodeItem,
  encodeSubscribe,
  isMailQueue,
  mailboxItemOf,
  mailboxItemSize,
  mailboxRate,
} from './index.ts';

describe('mailbox protocol codec', () => {
  it('subscribe frames round-trip and refuse the mail queue', () => {
    fc.assert(
      fc.property(fc.uint8Array({ minLength: 32, maxLength: 32 }), (id) => {
        expect(decodeSubscribe(encodeSubscribe(id))).toEqual(id);
      }),
    );
    expect(decodeSubscribe(encodeSubscribe(MAIL_QUEUE_ID))).toBeNull();
    expect(isMailQueue(MAIL_QUEUE_ID)).toBe(true);
    expect(isMailQueue(new Uint8Array(32))).toBe(false);
  });

  it('items (SURB replies) and dummies round-trip, all of one size for a payload size', () => {
    fc.assert(
      fc.property(fc.constantFrom(64, 2048, 4096), fc.uint8Array({ minLength: 16, maxLength: 16 }), fc.integer({ min: 0, max: 255 }), (ps, surbId, fill) => {
        const item = { surbId, payload: new Uint8Array(16 + ps).fill(fill) };
        const frame = encodeItem(item, ps);
        expect(frame.length).toBe(mailboxItemSize(ps));
        expect(encodeDummyItem(ps).length).toBe(mailboxItemSize(ps));
        expect(decodeItem(frame)).toEqual(item);
        expect(decodeItem(encodeDummyItem(ps))).toBe('dummy');
      }),
    );
  });

  it('test vectors of docs/spec/mailbox.md (payload size 64)', () => {
    const hex = (u: Uint8Array) => Buffer.from(u).toString('hex');
    expect(hex(encodeDummyItem(64))).toBe('03' + '00'.repeat(96));
    expect(hex(encodeItem({ surbId: new Uint8Array(16).fill(1), payload: new Uint8Array(80).fill(0xff) }, 64))).toBe('01' + '01'.repeat(16) + 'ff'.repeat(80));
    // version 2's plain delivery (kind 2) is no longer a frame: refused
    expect(decodeItem(Buffer.from('02' + '00'.repeat(32) + '61'.repeat(64), 'hex'))).toBeNull();
  });

  it('only SURB replies enter a mailbox: one kind of item', () => {
    const surbId = new Uint8Array(16).fill(4);
    const payload = new Uint8Array(80);
    expect(mailboxItemOf({ surbId, payload })).toEqual({ surbId, payload });
    expect(mailboxItemOf({ payload })).toBeNull();
    expect(mailboxItemOf({ surbId: new Uint8Array(15), payload })).toBeNull();
  });

  it('refuses items that do not fit the payload size (they would stand out on the wire)', () => {
    expect(() => encodeItem({ surbId: new Uint8Array(16), payload: new Uint8Array(2048) }, 2048)).toThrow(RangeError);
    expect(() => encodeItem({ surbId: new Uint8Array(15), payload: new Uint8Array(2064) }, 2048)).toThrow(RangeError);
  });

  it('the mailbox rate is 1.5 × (λ_P + λ_L), the rate items arrive at with headroom, at least 1 per second', () => {
    expect(MAILBOX_HEADROOM).toBe(1.5);
    expect(mailboxRate({ lambdaP: 10, lambdaL: 1 })).toBe(16.5);
    expect(mailboxRate({ lambdaP: 2, lambdaL: 0.5 })).toBe(3.75);
    expect(mailboxRate({ lambdaP: 0.2, lambdaL: 0 })).toBe(1);
    expect(mailboxRate({ lambdaP: Number.NaN, lambdaL: 1 })).toBe(1);
  });

  it('random bytes never throw', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 100 }), (b) => {
        const r1 = decodeItem(b);
        const r2 = decodeSubscribe(b);
        expect(r1 === null || r1 === 'dummy' || r1.payload instanceof Uint8Array).toBe(true);
        expect(r2 === null || r2.length === 32).toBe(true);
      }),
      { numRuns: 2000 },
    );
  });
});
