import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { Outbox, TokenSpentError } from './outbox.ts';

const dirs: string[] = [];
function tmp(): string {
  const d = mkdtempSync(join(tmpdir(), 'postmix-outbox-'));
  dirs.push(d);
  return join(d, 'outbox.sqlite');
}
afterEach(() => {
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

const raw = new TextEncoder().encode('From: a@x\r\nTo: b@overlay.test\r\n\r\nhello\r\n');

describe('outbox', () => {
  it('a prepared fragment is not offered again; sent, it is in flight; a restart makes it due again with its SURB kept', () => {
    const p = tmp();
    let ob = new Outbox(p);
    const id = ob.accept({
      mailFrom: 'a@x',
      raw,
      now: 0,
      recipients: [
        { address: 'b@o.t', path: 'overlay', reason: 'r', domain: 'o.t', token: new Uint8Array(1), payloadSize: 2048, surbLength: 434, fragmentCount: 2 },
      ],
    });
    const durable: (Error | null)[] = [];
    ob.prepareFragment(id, 'b@o.t', 0, new Uint8Array(16).fill(1), new Uint8Array([1]), 0, (e) => durable.push(e));
    expect(durable).toEqual([null]); // under FULL: on disk when the call returns
    expect(ob.nextDueFragment(10)?.index).toBe(1);
    ob.prepareFragment(id, 'b@o.t', 1, new Uint8Array(16).fill(2), new Uint8Array([2]), 0, () => {});
    expect(ob.nextDueFragment(10)).toBeUndefined();
    // fragment 0 left: in flight, no longer prepared
    ob.markSent([{ messageId: id, address: 'b@o.t', index: 0, surbId: new Uint8Array(16).fill(1), deadline: 500 }]);
    expect(ob.fragments(id, 'b@o.t').map((f) => [f.state, f.attempts, f.deadline])).toEqual([
      ['inflight', 1, 500],
      ['pending', 0, 0],
    ]);
    expect(ob.prepared().map((r) => r.index)).toEqual([1]);
    ob.close();
    // fragment 1 may or may not have left before the stop: due again, its SURB's keys kept for an ACK
    ob = new Outbox(p);
    expect(ob.recoverPrepared().map((r) => r.index)).toEqual([1]);
    expect(ob.prepared()).toEqual([]);
    expect(ob.nextDueFragment(10)?.index).toBe(1);
    expect(ob.surb(new Uint8Array(16).fill(2))?.index).toBe(1);
    // a prepared packet that will not leave: its row and its SURB go
    ob.prepareFragment(id, 'b@o.t', 1, new Uint8Array(16).fill(3), new Uint8Array([3]), 0, () => {});
    ob.unprepare(id, 'b@o.t', 1, new Uint8Array(16).fill(3));
    expect(ob.surb(new Uint8Array(16).fill(3))).toBeUndefined();
    expect(ob.nextDueFragment(10)?.index).toBe(1);
    ob.close();
  });

  it('with deferFsync the sender commits under NORMAL and `durable` runs after an fsync of the WAL off the event loop', async () => {
    const p = tmp();
    const ob = new Outbox(p, { deferFsync: true });
    const id = ob.accept({
      mailFrom: 'a@x',
      raw,
      now: 0,
      recipients: [
        { address: 'b@o.t', path: 'overlay', reason: 'r', domain: 'o.t', token: new Uint8Array(1), payloadSize: 2048, surbLength: 434, fragmentCount: 1 },
      ],
    });
    let fsyncs = 0;
    const sync = ob.wal.sync.bind(ob.wal);
    ob.wal.sync = (done) => (fsyncs++, sync(done));
    const durable = new Promise<Error | null>((resolve) => ob.prepareFragment(id, 'b@o.t', 0, new Uint8Array(16).fill(1), new Uint8Array([1]), 0, resolve));
    expect(ob.db.pragma('synchronous', { simple: true })).toBe(2); // back to FULL for everything else
    expect(fsyncs).toBe(1);
    expect(await durable).toBeNull();
    expect(ob.prepared()).toHaveLength(1);
    ob.close();
  });

  it('uses WAL and synchronous=FULL', () => {
    const ob = new Outbox(tmp());
    expect(ob.db.pragma('journal_mode', { simple: true })).toBe('wal');
    expect(ob.db.pragma('synchronous', { simple: true })).toBe(2);
    ob.close();
  });

  it('keeps a message, its decisions, fragment states and SURB keys across close/reopen', () => {
    const p = tmp();
    let ob = new Outbox(p);
    const id = ob.accept({
      mailFrom: 'a@x',
      raw,
      now: 1000,
      recipients: [
        {
          address: 'b@overlay.test',
          path: 'overlay',
          reason: 'gateway; 1 token',
          domain: 'overlay.test',
          token: new Uint8Array([1, 2]),
          payloadSize: 2048,
          surbLength: 434,
          fragmentCount: 3,
        },
        { address: 'c@plain.test', path: 'smtp', reason: 'no gateway' },
      ],
    });
    ob.markInFlight(id, 'b@overlay.test', 0, new Uint8Array(16).fill(7), new Uint8Array([9, 9]), 5000, 1000);
    ob.markAcked(id, 'b@overlay.test', 1);
    ob.close();

    ob = new Outbox(p);
    expect(Buffer.from(ob.raw(id)).equals(Buffer.from(raw))).toBe(true);
    const rs = ob.recipients(id);
    expect(rs.map((r) => [r.address, r.path, r.reason])).toEqual([
      ['b@overlay.test', 'overlay', 'gateway; 1 token'],
      ['c@plain.test', 'smtp', 'no gateway'],
    ]);
    const fs = ob.fragments(id, 'b@overlay.test');
    expect(fs.map((f) => [f.state, f.attempts, f.deadline])).toEqual([
      ['inflight', 1, 5000],
      ['acked', 0, 0],
      ['pending', 0, 0],
    ]);
    const s = ob.surb(new Uint8Array(16).fill(7))!;
    expect([s.messageId, s.address, s.index, [...s.keys]]).toEqual([id, 'b@overlay.test', 0, [9, 9]]);
    ob.close();
  });

  it('orders due fragments: pending first, then in-flight past their deadline; none before', () => {
    const ob = new Outbox(tmp());
    const id = ob.accept({
      mailFrom: 'a@x',
      raw,
      now: 0,
      recipients: [{ address: 'b@o.t', path: 'overlay', reason: 'r', domain: 'o.t', payloadSize: 2048, surbLength: 434, fragmentCount: 2 }],
    });
    expect(ob.nextDueFragment(0)?.index).toBe(0);
    ob.markInFlight(id, 'b@o.t', 0, new Uint8Array(16).fill(1), new Uint8Array(1), 100, 0);
    expect(ob.nextDueFragment(50)?.index).toBe(1);
    ob.markInFlight(id, 'b@o.t', 1, new Uint8Array(16).fill(2), new Uint8Array(1), 200, 0);
    expect(ob.nextDueFragment(99)).toBeUndefined();
    expect(ob.dueCount(150)).toBe(1);
    const f = ob.nextDueFragment(150)!;
    expect([f.index, f.state, f.attempts]).toEqual([0, 'inflight', 1]);
    ob.close();
  });

  it('completes a recipient when every fragment is acked, then the message, and frees its bytes', () => {
    const ob = new Outbox(tmp());
    const id = ob.accept({
      mailFrom: 'a@x',
      raw,
      now: 0,
      recipients: [{ address: 'b@o.t', path: 'overlay', reason: 'r', domain: 'o.t', payloadSize: 2048, surbLength: 434, fragmentCount: 2 }],
    });
    expect(ob.markAcked(id, 'b@o.t', 0)).toBe(false);
    expect(ob.markAcked(id, 'b@o.t', 1)).toBe(true);
    expect(ob.markAcked(id, 'b@o.t', 1)).toBe(false);
    expect(ob.message(id)?.state).toBe('done');
    expect(ob.activeMessages()).toHaveLength(0);
    expect(ob.raw(id).length).toBe(0);
    ob.close();
  });

  it('a bounced recipient keeps the message bytes and stops being due', () => {
    const ob = new Outbox(tmp());
    const id = ob.accept({
      mailFrom: 'a@x',
      raw,
      now: 0,
      recipients: [{ address: 'b@o.t', path: 'overlay', reason: 'r', domain: 'o.t', payloadSize: 2048, surbLength: 434, fragmentCount: 1 }],
    });
    expect(ob.markBounced(id, 'b@o.t', 'TokenRefused')).toBe(true);
    expect(ob.markBounced(id, 'b@o.t', 'again')).toBe(false);
    expect(ob.nextDueFragment(1e12)).toBeUndefined();
    expect(ob.recipient(id, 'b@o.t')?.error).toBe('TokenRefused');
    expect(ob.raw(id).length).toBe(raw.length);
    ob.close();
  });

  it('spends the wallet token in the same transaction, and refuses a token spent meanwhile', () => {
    const ob = new Outbox(tmp());
    ob.db.prepare("INSERT INTO tokens (recipient, key_epoch, issuer_pk, token, imported_at) VALUES ('b@o.t', 1, x'00', x'01', 0)").run();
    const rcpt = {
      address: 'b@o.t',
      path: 'overlay' as const,
      reason: 'r',
      domain: 'o.t',
      token: new Uint8Array([1]),
      tokenId: 1,
      payloadSize: 2048,
      surbLength: 434,
      fragmentCount: 1,
    };
    const id = ob.accept({ mailFrom: 'a@x', raw, now: 0, recipients: [rcpt] });
    expect(ob.db.prepare('SELECT state, message_id FROM tokens WHERE id = 1').get()).toEqual({ state: 'spent', message_id: id });
    expect(() => ob.accept({ mailFrom: 'a@x', raw, now: 0, recipients: [rcpt] })).toThrow(TokenSpentError);
    expect(() => ob.accept({ mailFrom: 'a@x', raw, now: 0, recipients: [rcpt] })).toThrow(/token 1 for .* is no longer unspent/);
    // the failed accept left nothing behind
    expect(ob.activeMessages().map((m) => m.id)).toEqual([id]);
    ob.close();
  });
});
