import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { MAIL_QUEUE_ID, decodeItem, decodeSubscribe, encodeItem, encodeSubscribe, isMailQueue } from './index.ts';

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

  it('items round-trip; random bytes never throw', () => {
    fc.assert(
      fc.property(fc.option(fc.uint8Array({ minLength: 16, maxLength: 16 }), { nil: undefined }), fc.uint8Array({ maxLength: 3000 }), (surbId, payload) => {
        const item = surbId ? { surbId, payload } : { payload };
        expect(decodeItem(encodeItem(item))).toEqual(item);
      }),
    );
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 100 }), (b) => {
        const r1 = decodeItem(b);
        const r2 = decodeSubscribe(b);
        expect(r1 === null || r1.payload instanceof Uint8Array).toBe(true);
        expect(r2 === null || r2.length === 32).toBe(true);
      }),
      { numRuns: 2000 },
    );
  });
});
