import { describe, expect, it } from 'vitest';
import { encodeToken } from '../proto/tokens/index.ts';
import { forgedBundle } from '../test/support/tokens.ts';
import { Outbox } from './outbox.ts';
import { Wallet, walletNotices } from './wallet.ts';

describe('wallet', () => {
  it('imports a bundle, lists per recipient and epoch, ignores re-imports', () => {
    const ob = new Outbox(':memory:');
    const w = new Wallet(ob.db, 2);
    const b = forgedBundle('Bob@Overlay.test', 3);
    expect(w.importBundle(b)).toEqual({
      recipient: 'bob@overlay.test',
      added: 3,
      duplicates: 0,
      epochs: [{ keyEpoch: 1, added: 3, duplicates: 0, notBefore: null, expires: null }],
    });
    expect(w.importBundle(b).duplicates).toBe(3);
    w.importBundle(forgedBundle('bob@overlay.test', 1, 2));
    expect(w.list()).toEqual([
      { recipient: 'bob@overlay.test', keyEpoch: 1, unspent: 3, spent: 0, notBefore: null, expires: null },
      { recipient: 'bob@overlay.test', keyEpoch: 2, unspent: 1, spent: 0, notBefore: null, expires: null },
    ]);
    expect(w.count('BOB@overlay.test')).toBe(4);
    expect(w.count('bob@overlay.test', [new Uint8Array(32).fill(3)])).toBe(4);
    expect(w.count('bob@overlay.test', [new Uint8Array(32).fill(4)])).toBe(0);
    ob.close();
  });

  it('picks the newest accepted epoch; a token is spent once, by the message that used it; warns when low', () => {
    const ob = new Outbox(':memory:');
    const w = new Wallet(ob.db, 1);
    w.importBundle(forgedBundle('b@o.t', 2, 1));
    w.importBundle(forgedBundle('b@o.t', 1, 2));
    const t = w.pick('b@o.t')!;
    expect(t.keyEpoch).toBe(2);
    expect(w.pick('b@o.t', [new Uint8Array(32).fill(9)])).toBeUndefined();
    const id = ob.accept({
      mailFrom: 'a@x',
      raw: new Uint8Array([65]),
      now: 0,
      recipients: [
        { address: 'b@o.t', path: 'overlay', reason: 'r', domain: 'o.t', token: t.token, tokenId: t.id, payloadSize: 2048, surbLength: 434, fragmentCount: 1 },
      ],
    });
    expect(ob.recipient(id, 'b@o.t')!.token).toEqual(t.token);
    expect(w.count('b@o.t')).toBe(2);
    expect(w.pick('b@o.t')!.keyEpoch).toBe(1);
    expect(w.low()).toEqual([]);
    const t2 = w.pick('b@o.t')!;
    ob.accept({
      mailFrom: 'a@x',
      raw: new Uint8Array([65]),
      now: 0,
      recipients: [
        {
          address: 'b@o.t',
          path: 'overlay',
          reason: 'r',
          domain: 'o.t',
          token: t2.token,
          tokenId: t2.id,
          payloadSize: 2048,
          surbLength: 434,
          fragmentCount: 1,
        },
      ],
    });
    expect(w.low()).toEqual([{ recipient: 'b@o.t', usable: 1 }]);
    ob.close();
  });

  it('offers a token only inside its epoch window, the one expiring first; tells expired and not-yet-valid apart', () => {
    const ob = new Outbox(':memory:');
    const w = new Wallet(ob.db, 1);
    const T = 1_800_000_000; // unix s
    const ms = (s: number) => s * 1000;
    w.importBundle(forgedBundle('b@o.t', 2, 5, undefined, { notBefore: T - 100, expires: T + 100 }));
    w.importBundle(forgedBundle('b@o.t', 1, 6, undefined, { notBefore: T + 100, expires: T + 200 }));
    expect(w.pick('b@o.t', undefined, ms(T))!.keyEpoch).toBe(5); // epoch 6 has not started
    expect(w.state('b@o.t', undefined, ms(T))).toEqual({ usable: 2, expired: 0, notYet: 1, lastExpired: null, firstValid: T + 100, usableUntil: T + 100 });
    // in the overlap (not possible with real schedules, both valid): the one expiring first goes first
    w.importBundle(forgedBundle('b@o.t', 1, 7, undefined, { notBefore: T - 100, expires: T + 150 }));
    expect(w.pick('b@o.t', undefined, ms(T + 120))!.keyEpoch).toBe(7);
    expect(w.pick('b@o.t', undefined, ms(T + 99))!.keyEpoch).toBe(5);
    // past every end: nothing to pick, and the state says why
    expect(w.pick('b@o.t', undefined, ms(T + 200))).toBeUndefined();
    expect(w.count('b@o.t', undefined, ms(T + 200))).toBe(0);
    expect(w.state('b@o.t', undefined, ms(T + 200))).toMatchObject({ usable: 0, expired: 4, lastExpired: T + 200 });
    expect(walletNotices(w, ms(T + 200)).map((n) => n.kind)).toEqual(['expired']);
    expect(walletNotices(w, ms(T - 200)).map((n) => n.kind)).toEqual(['not-yet']);
    expect(walletNotices(w, ms(T))).toEqual([]); // expiring soon, but the next epoch's token is already held
    w.importBundle(forgedBundle('c@o.t', 5, 1, undefined, { notBefore: T - 100, expires: T + 100 }));
    expect(walletNotices(w, ms(T)).map((n) => [n.recipient, n.kind])).toEqual([['c@o.t', 'expiring']]);
    w.forget('c@o.t', false);
    // forget drops expired ones only (or all with --all)
    expect(w.forget('b@o.t', true, ms(T + 160))).toBe(3);
    expect(w.forget('b@o.t', false, ms(T + 160))).toBe(1);
    ob.close();
  });

  it('rejects malformed bundles with a reason', () => {
    const ob = new Outbox(':memory:');
    const w = new Wallet(ob.db);
    expect(() => w.importBundle('nope')).toThrow(/not JSON/);
    expect(() => w.importBundle(JSON.stringify({ v: 1, recipient: 'b@o.t', keyEpoch: 1, issuerPublicKey: '00'.repeat(32), tokens: ['zz'] }))).toThrow(
      /malformed/,
    );
    expect(encodeToken({ keyEpoch: 1, input: new Uint8Array(32), output: new Uint8Array(64) }).length).toBe(100);
    ob.close();
  });
});
