/**
 * The gateway's mail intake: one delivered payload for MAIL_QUEUE_ID in, a decision out. A
 * decoy (a client's payload-stream cover, docs/spec/fragment.md) is decided at once: answer it
 * through its SURB; it stores nothing, but goes through the same commit and hop delay as a
 * fragment, so its answer leaves the gateway as an ACK does. All
 * I/O goes through the store; every accepted fragment is committed (token spent, fragment
 * stored, and on completion the message moved to the hand-off queue) in ONE transaction before
 * the ACK is returned, so an ACK never covers state a crash can lose.
 *
 * Order of checks (nothing is stored before all of them pass):
 * 1. payload decodes as a fragment (else: silent drop, 'malformed');
 * 2. the recipient's domain is served (else: silent drop, 'foreign-domain': no open relay, no ACK);
 * 3. permission, before anything that depends on whether the user exists: tokens policy, or an
 *    unknown user → the token decodes, the POPRF output verifies for this recipient, its key
 *    epoch verifies now (its window, or the grace after a scheduled end, and not revoked:
 *    gateway/key-epochs.ts), and it is unspent or bound to this same message id
 *    and recipient (else TokenRefused, counted by reason). An unknown user gets exactly that
 *    answer, after the same work (one POPRF evaluation), so an anonymous sender cannot tell
 *    which addresses exist; `ackUnknownRecipient: true` (a per-gateway choice, default off)
 *    answers UnknownRecipient instead, like SMTP's 550, which lets anyone enumerate users. A
 *    token whose message was completed admits nothing more (Duplicate for that message id, for
 *    ever within the key epoch, whether or not its queue row still exists);
 * 4. the message is already in the hand-off queue → Duplicate (resend after a lost ACK);
 * 5. size: total length ≤ maxMessageBytes (else TooLarge);
 * 6. consistency with the first stored fragment (count, total length, recipient, token) and
 *    byte accounting (stored bytes never exceed the total length) (else Inconsistent);
 * 7. open policy: a new message id counts against the recipient's hourly limit (else
 *    RateLimited). An open-policy user is discoverable by anyone (it accepts without a token).
 *
 * Per message, not per fragment: what depends only on a fragment's token bytes and recipient
 * (the decoded token, its spent-set key, its digest, whether its POPRF output verifies) is pure,
 * and kept in a bounded memo (`TokenFacts`), so the later fragments of a message (and resends)
 * find it there; what depends on the store (spent or bound, its key epoch accepted now, the
 * partial message) is read in the fragment's transaction as before. The POPRF check may be done
 * ahead of the transaction, on the `[crypto] workers` pool (`pendingCheck`/`recordCheck`,
 * gateway/group-commit.ts); whether the token is spent is decided here, in the transaction.
 */
import { AckStatus, assemble, decodePayload, encodeAck, encodeLoop, type Decoy, type Fragment } from '../proto/fragment/index.ts';
import { decodeToken, fragmentTokenDigest, normalizeRecipient, tokenSpendKey, verifyToken, type IssuerKeys, type Token } from '../proto/tokens/index.ts';
import type { GatewayStore, PartialRow, UserRow } from './store.ts';
import { bytesEqual } from '../proto/util/bytes.ts';

export type TokenRejectReason = 'malformed' | 'expired' | 'invalid' | 'spent' | 'missing';
export const TOKEN_REJECT_REASONS: readonly TokenRejectReason[] = ['malformed', 'expired', 'invalid', 'spent', 'missing'];

export type IntakeDropReason = 'malformed' | 'not-a-fragment' | 'foreign-domain';

export interface IntakeOptions {
  /** Mail domains this gateway serves (lower-case). */
  readonly domains: readonly string[];
  readonly issuer: IssuerKeys;
  /** Largest message accepted (bytes). */
  readonly maxMessageBytes: number;
  /** How long an incomplete message is kept (ms). */
  readonly reassemblyTtlMs: number;
  /** Answer UnknownRecipient for unknown users of a served domain (default false: TokenRefused, as for a known user). */
  readonly ackUnknownRecipient?: boolean;
  readonly now?: () => number;
}

export type IntakeResult =
  | { readonly kind: 'drop'; readonly reason: IntakeDropReason }
  /** Payload-stream cover: answer through `decoy.surb` with the loop payload of `decoy.id`. */
  | { readonly kind: 'decoy'; readonly decoy: Decoy }
  | {
      readonly kind: 'ack';
      readonly status: AckStatus;
      readonly fragment: Fragment;
      /** Set when this fragment completed the message (now in the queue). */
      readonly handoffId?: string;
      /** Set for TokenRefused. */
      readonly tokenReason?: TokenRejectReason;
      /** Token accepted for a new binding (first fragment of a message). */
      readonly tokenAccepted?: boolean;
      /** The fragment was newly stored (not a duplicate). */
      readonly stored?: boolean;
    };

/**
 * What the gateway sends back for a decision: the SURB and the reply payload, an ACK for a
 * fragment and the loop payload of its id for a decoy (undefined: nothing, a drop or no SURB).
 * Both are sealed under the SURB's reply keys, so the replies are alike to everyone but the
 * SURB's creator.
 */
export function replyOf(res: IntakeResult): { readonly surb: Uint8Array; readonly payload: Uint8Array } | undefined {
  if (res.kind === 'decoy') return { surb: res.decoy.surb, payload: encodeLoop(res.decoy.id) };
  if (res.kind === 'drop' || res.fragment.surb.length === 0) return undefined;
  const f = res.fragment;
  return { surb: f.surb, payload: encodeAck({ messageId: f.messageId, index: f.index, status: res.status }) };
}

/**
 * What a fragment's token bytes and recipient establish, whatever the store holds: computed for
 * the first fragment of a message, found in the memo for the others.
 */
export interface TokenFacts {
  /** null: the bytes are not a token. */
  readonly tok: Token | null;
  /** The spent-set key (tokenSpendKey), '' when not a token. */
  readonly tokenKey: string;
  /** fragmentTokenDigest of the bytes, as the partial message stores it. */
  readonly digest: Uint8Array;
  /** Whether the POPRF output verifies for the recipient (undefined: not checked yet). */
  valid?: boolean;
}

/** Entries of the token memo (each ~300 bytes): far more than the messages reassembled at once. */
export const TOKEN_MEMO_SIZE = 4096;

/** A payload decoded ahead of its transaction (`Intake.prepare`), with its token facts for a fragment. */
export interface PreparedPayload {
  readonly decoded: ReturnType<typeof decodePayload>;
  readonly facts?: TokenFacts;
}

/** What a token check on another thread needs: the normalized recipient, the token bytes, the memo key. */
export interface PendingCheck {
  readonly recipient: string;
  readonly token: Uint8Array;
  readonly key: string;
}

/** What a fragment gets: dropped, or an ACK with its status. */
export type FragmentResult = Exclude<IntakeResult, { readonly kind: 'decoy' }>;

export interface IntakeCounters {
  fragmentsIn: number;
  /** Decoys received (each answered like a fragment). */
  decoys: number;
  fragmentsStored: number;
  duplicates: number;
  messagesCompleted: number;
  dropped: Record<IntakeDropReason, number>;
  refused: Record<'unknown-recipient' | 'too-large' | 'inconsistent' | 'rate-limited', number>;
  tokensAccepted: number;
  tokensRejected: Record<TokenRejectReason, number>;
}

export class Intake {
  readonly counters: IntakeCounters = {
    fragmentsIn: 0,
    decoys: 0,
    fragmentsStored: 0,
    duplicates: 0,
    messagesCompleted: 0,
    dropped: { malformed: 0, 'not-a-fragment': 0, 'foreign-domain': 0 },
    refused: { 'unknown-recipient': 0, 'too-large': 0, inconsistent: 0, 'rate-limited': 0 },
    tokensAccepted: 0,
    tokensRejected: { malformed: 0, expired: 0, invalid: 0, spent: 0, missing: 0 },
  };
  private readonly domains: Set<string>;
  private readonly now: () => number;
  /** (recipient, token bytes) → TokenFacts, oldest first (bounded by TOKEN_MEMO_SIZE). */
  private readonly memo = new Map<string, TokenFacts>();

  constructor(
    private readonly store: GatewayStore,
    private readonly opts: IntakeOptions,
  ) {
    this.domains = new Set(opts.domains.map((d) => d.toLowerCase()));
    this.now = opts.now ?? Date.now;
  }

  servesDomain(recipient: string): boolean {
    const at = recipient.lastIndexOf('@');
    return at > 0 && this.domains.has(recipient.slice(at + 1));
  }

  /** A fragment's recipient is decided here: written in its one spelling, in a domain served. */
  private takes(recipient: string): boolean {
    return normalizeRecipient(recipient) === recipient && this.servesDomain(recipient);
  }

  /** Handles one plaintext payload delivered to MAIL_QUEUE_ID. Never throws for any input. */
  handlePayload(payload: Uint8Array): IntakeResult {
    return this.handlePrepared(this.prepare(payload));
  }

  /** Decodes a payload and finds (or computes) its token facts; reads and writes nothing in the store. Never throws. */
  prepare(payload: Uint8Array): PreparedPayload {
    const decoded = decodePayload(payload);
    if (!decoded.ok || decoded.kind !== 'fragment') return { decoded };
    return { decoded, facts: this.factsOf(decoded.fragment.recipient, decoded.fragment.token) };
  }

  /** The check a prepared fragment's decision would run (undefined: none, or already known), for another thread to run first. */
  pendingCheck(p: PreparedPayload): PendingCheck | undefined {
    const facts = p.facts;
    if (!facts || facts.tok === null || facts.valid !== undefined || !p.decoded.ok || p.decoded.kind !== 'fragment') return undefined;
    const recipient = p.decoded.fragment.recipient;
    if (!this.takes(recipient)) return undefined;
    return { recipient, token: p.decoded.fragment.token, key: memoKey(recipient, p.decoded.fragment.token) };
  }

  /** The result of a prepared fragment's check, run elsewhere (verifyToken on the same issuer key, recipient and bytes). */
  recordCheck(p: PreparedPayload, valid: boolean): void {
    if (p.facts) p.facts.valid = valid;
  }

  /** Decides a prepared payload (in its transaction); the counters as handlePayload. Never throws for any input. */
  handlePrepared(p: PreparedPayload): IntakeResult {
    const d = p.decoded;
    if (d.ok && d.kind === 'decoy') {
      this.counters.decoys++;
      return { kind: 'decoy', decoy: d.decoy };
    }
    this.counters.fragmentsIn++;
    if (!d.ok) return this.drop('malformed');
    if (d.kind !== 'fragment') return this.drop('not-a-fragment');
    const f = d.fragment;
    const facts = p.facts ?? this.factsOf(f.recipient, f.token);
    return this.store.tx(() => this.decide(f, facts));
  }

  private factsOf(recipient: string, token: Uint8Array): TokenFacts {
    const key = memoKey(recipient, token);
    const hit = this.memo.get(key);
    if (hit) return hit;
    const tok = decodeToken(token);
    const facts: TokenFacts = { tok, tokenKey: tok ? tokenSpendKey(tok) : '', digest: fragmentTokenDigest(token) };
    if (this.memo.size >= TOKEN_MEMO_SIZE) this.memo.delete(this.memo.keys().next().value!);
    this.memo.set(key, facts);
    return facts;
  }

  private drop(reason: IntakeDropReason): FragmentResult {
    this.counters.dropped[reason]++;
    return { kind: 'drop', reason };
  }

  private ack(status: AckStatus, fragment: Fragment, extra?: Partial<Extract<IntakeResult, { kind: 'ack' }>>): FragmentResult {
    return extra ? { kind: 'ack', status, fragment, ...extra } : { kind: 'ack', status, fragment };
  }

  /** A token refused: counted by reason for a known user, as an unknown recipient otherwise. */
  private refuse(user: UserRow | undefined, f: Fragment, reason: TokenRejectReason): FragmentResult {
    if (user) return this.refuseToken(f, reason);
    this.counters.refused['unknown-recipient']++;
    return this.ack(AckStatus.TokenRefused, f);
  }

  private inconsistent(f: Fragment): FragmentResult {
    this.counters.refused.inconsistent++;
    return this.ack(AckStatus.Inconsistent, f);
  }

  private refuseToken(f: Fragment, reason: TokenRejectReason): FragmentResult {
    this.counters.tokensRejected[reason]++;
    return this.ack(AckStatus.TokenRefused, f, { tokenReason: reason });
  }

  /**
   * The token check (tokens policy, or an unknown user when UnknownRecipient is not answered).
   * Every decodable token that is not in the spent set costs one POPRF evaluation, whether the
   * user exists, its key epoch matches or not, so that an anonymous prober sees the same answer
   * after the same work for an unknown user as for a known one.
   */
  private checkToken(
    user: UserRow | undefined,
    f: Fragment,
    recipient: string,
    facts: TokenFacts,
  ): FragmentResult | { tokenKey: string; keyEpoch: number; newBinding: boolean } {
    if (f.token.length === 0) return this.refuse(user, f, 'missing');
    const tok = facts.tok;
    if (!tok) return this.refuse(user, f, 'malformed');
    const tokenKey = facts.tokenKey;
    const bound = this.store.spentFor(tokenKey);
    // its key epoch verifies now: in its window, or the grace after a scheduled end, and not
    // revoked (looked up for unknown users too, where no epoch matches: the same work)
    const epochOk = this.store.acceptsKeyEpoch(recipient, tok.keyEpoch, this.now());
    if (bound) {
      // one token, one message, one recipient: bound to another message id or recipient → spent
      if (!bytesEqual(bound.messageId, f.messageId) || bound.recipient !== recipient || !user) return this.refuse(user, f, 'spent');
      if (!epochOk) return this.refuse(user, f, 'expired');
      // that message was completed (and may be long handed over and gone from the queue): a
      // resend is answered Duplicate and stores nothing, however long after
      if (bound.done) {
        this.counters.duplicates++;
        return this.ack(AckStatus.Duplicate, f);
      }
      // bound to this message while it is reassembled: it verified when it was bound
      return { tokenKey, keyEpoch: tok.keyEpoch, newBinding: false };
    }
    // checked ahead on the pool (recordCheck), or here; either way for unknown users too
    const valid = (facts.valid ??= verifyToken(this.opts.issuer, recipient, tok));
    if (!user) return this.refuse(user, f, 'invalid');
    if (!epochOk) return this.refuse(user, f, 'expired');
    if (!valid) return this.refuse(user, f, 'invalid');
    return { tokenKey, keyEpoch: tok.keyEpoch, newBinding: true };
  }

  /**
   * Decides one fragment in one transaction: its reads and writes see one state of the store (in
   * a group commit, the batch's transaction, where the fragments before it are visible), so
   * nothing read here has to be read again before it is written.
   */
  handleFragment(f: Fragment): FragmentResult {
    const facts = this.factsOf(f.recipient, f.token);
    return this.store.tx(() => this.decide(f, facts));
  }

  private decide(f: Fragment, facts: TokenFacts): FragmentResult {
    const recipient = f.recipient;
    if (!this.takes(recipient)) return this.drop('foreign-domain');
    const user = this.store.getUser(recipient);
    if (!user) {
      if (this.opts.ackUnknownRecipient === true) {
        this.counters.refused['unknown-recipient']++;
        return this.ack(AckStatus.UnknownRecipient, f);
      }
      // answered as a known user's invalid token is (checkToken never admits an unknown user)
      const c = this.checkToken(undefined, f, recipient, facts);
      return 'kind' in c ? c : this.ack(AckStatus.TokenRefused, f);
    }
    // permission first: nothing that depends on the user's existence or state is answered before
    let tokenKey: string | null = null;
    let keyEpoch = 0;
    let newBinding = false;
    if (user.policy === 'tokens') {
      const c = this.checkToken(user, f, recipient, facts);
      if ('kind' in c) return c;
      ({ tokenKey, keyEpoch, newBinding } = c);
    }
    const now = this.now();
    // a message is either being reassembled (its partial row) or queued, never both: the
    // transaction that queues it drops its partial, and a partial is created only when no queue
    // row exists (below). So the queue is looked up only for a message with no partial.
    const partial = this.store.getPartial(f.messageId);
    const q = partial ? undefined : this.store.handoffOf(f.messageId);
    if (q) {
      if (q.recipient !== recipient) return this.inconsistent(f);
      this.counters.duplicates++;
      return this.ack(AckStatus.Duplicate, f);
    }
    if (f.totalLength > this.opts.maxMessageBytes) {
      this.counters.refused['too-large']++;
      return this.ack(AckStatus.TooLarge, f);
    }
    // every fragment but possibly the last carries ≥ 1 byte, so count ≤ max(1, totalLength)
    if (f.count > Math.max(1, f.totalLength)) return this.inconsistent(f);
    if (partial) {
      if (
        partial.recipient !== recipient ||
        partial.count !== f.count ||
        partial.totalLength !== f.totalLength ||
        !bytesEqual(partial.tokenDigest, facts.digest)
      ) {
        return this.inconsistent(f);
      }
    }
    if (user.policy === 'open' && !partial) {
      const window = Math.floor(now / 3_600_000);
      if (this.store.rateCount(recipient, window) >= user.ratePerHour) {
        this.counters.refused['rate-limited']++;
        return this.ack(AckStatus.RateLimited, f);
      }
    }

    // store (inside handleFragment's transaction: `partial` and `q` above are still current)
    const r = this.write(f, facts, user, partial, recipient, tokenKey, keyEpoch, newBinding, now);
    if (r.status === AckStatus.Inconsistent) return this.inconsistent(f);
    if (newBinding) this.counters.tokensAccepted++;
    if (r.stored) this.counters.fragmentsStored++;
    else this.counters.duplicates++;
    if (r.status === AckStatus.Queued) this.counters.messagesCompleted++;
    return r.handoffId
      ? { kind: 'ack', status: r.status, fragment: f, stored: r.stored, tokenAccepted: newBinding, handoffId: r.handoffId }
      : { kind: 'ack', status: r.status, fragment: f, stored: r.stored, tokenAccepted: newBinding };
  }

  /** The writes of an accepted fragment (in its transaction, after every check of `decide`). */
  private write(
    f: Fragment,
    facts: TokenFacts,
    user: UserRow,
    partial: PartialRow | undefined,
    recipient: string,
    tokenKey: string | null,
    keyEpoch: number,
    newBinding: boolean,
    now: number,
  ): { status: AckStatus; stored: boolean; handoffId?: string } {
    const have = partial ?? NO_PARTIAL;
    if (!partial) {
      this.store.createPartial({
        messageId: f.messageId,
        recipient,
        count: f.count,
        totalLength: f.totalLength,
        token: f.token,
        tokenDigest: facts.digest,
        now,
        ttlMs: this.opts.reassemblyTtlMs,
      });
      if (user.policy === 'open') this.store.rateBump(recipient, Math.floor(now / 3_600_000));
    }
    // a token already bound to this message has its row (the insert would be a no-op)
    if (tokenKey !== null && newBinding) this.store.markSpent(tokenKey, f.messageId, recipient, keyEpoch, now);
    // a duplicate index is Stored again; a new one: the last fragment may be short, the others
    // must leave room for the rest
    const fits = have.bytes + f.data.length <= f.totalLength && (f.index === f.count - 1 || f.data.length > 0);
    if (have.received + 1 < f.count) {
      const put = this.store.putFragment(f.messageId, f.index, f.data, fits);
      if (put === 'duplicate') return { status: AckStatus.Stored, stored: false };
      if (put === 'refused') return { status: AckStatus.Inconsistent, stored: false };
      return { status: AckStatus.Stored, stored: true };
    }
    // all but one are stored: this one is a resend of a stored index, or it completes the
    // message, which is assembled from the stored ones and this one in hand (it is not stored
    // only to be read back and deleted in the same transaction)
    const parts = new Map<number, Uint8Array>();
    for (const x of this.store.fragments(f.messageId)) parts.set(x.idx, x.data);
    if (parts.has(f.index)) return { status: AckStatus.Stored, stored: false };
    if (!fits) return { status: AckStatus.Inconsistent, stored: false };
    parts.set(f.index, f.data);
    const body = assemble(parts, f.count, f.totalLength);
    if (body === null) {
      this.store.dropPartial(f.messageId);
      return { status: AckStatus.Inconsistent, stored: false };
    }
    const handoffId = this.store.enqueue(f.messageId, recipient, body, now);
    if (tokenKey !== null) this.store.markSpentDone(tokenKey);
    this.store.dropPartial(f.messageId);
    return { status: AckStatus.Queued, stored: true, handoffId };
  }
}

/** What a message without a partial row has stored. */
const NO_PARTIAL = { received: 0, bytes: 0 } as const;

/** The memo's key: the recipient as the fragment carries it and the token bytes (latin1: one char per byte). */
function memoKey(recipient: string, token: Uint8Array): string {
  return recipient + '\n' + Buffer.from(token.buffer, token.byteOffset, token.byteLength).toString('latin1');
}
