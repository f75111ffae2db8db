/**
 * One directory authority (docs/spec/pki.md §6). It accepts descriptors, and for each epoch E
 * runs three idempotent phases, driven by the scheduler (or directly by tests):
 *   vote(E)     sign the set of descriptors it holds for E (a SignedVote) — after this no more
 *               descriptors for E are accepted;
 *   tally(E)    fetch the peers' votes, keep each descriptor that >= threshold votes carry
 *               byte-for-byte, build the document body deterministically and sign it;
 *   collect(E)  fetch the peers' signatures over the same body, and publish the document once
 *               it has >= threshold signatures (re-publishing as more arrive).
 * All state is in SQLite, so a restarted authority carries on where it stopped.
 */
import type { Logger } from 'pino';
import {
  buildDocumentBody,
  checkDocumentSignature,
  combineSignatures,
  decodeSignedDocument,
  decodeSignedDescriptor,
  decodeDescriptorBody,
  decodeSignedVote,
  decodeVoteBody,
  encodeCheckedDocumentBody,
  encodeSignedVote,
  encodeVoteBody,
  epochAt,
  isPkiError,
  LIMITS,
  PKI_VERSION,
  PkiError,
  sha256,
  signDocumentBody,
  verifyDescriptor,
  verifyDocument,
  voteSigningBytes,
  bytesEqual,
  compareBytes,
  ed25519Sign,
  ed25519Verify,
  hex,
  type DocumentParams,
  type DescriptorBody,
  type IdentityKey,
  type VerifiedDescriptor,
  type VerifiedDocument,
} from '../proto/pki/index.ts';
import { readLimited } from '../runtime/pki/client.ts';
import { DirectoryMetrics } from './metrics.ts';
import { AuthorityStore } from './store.ts';

export interface Peer {
  /** Base URL, e.g. http://127.0.0.1:8081 */
  readonly url: string;
  readonly publicKey: Uint8Array;
}

export interface AuthorityOptions {
  readonly identity: IdentityKey;
  /** The other authorities (this one excluded). */
  readonly peers: readonly Peer[];
  /** Document parameters; `authorities` lists all n keys including this one. */
  readonly params: DocumentParams;
  readonly store: AuthorityStore;
  readonly logger: Logger;
  readonly metrics?: DirectoryMetrics;
  /** Unix seconds; injectable for tests. */
  readonly now?: () => number;
  readonly peerTimeoutMs?: number;
  /** Upper bound on descriptors accepted per epoch. */
  readonly maxDescriptorsPerEpoch?: number;
}

export type UploadOutcome = { readonly result: 'accepted' | 'duplicate'; readonly nodeId: string; readonly epoch: number };

interface EpochIndex {
  readonly sphinx: Map<string, string>;
  readonly domains: Map<string, string>;
}

function indexDescriptor(idx: EpochIndex, body: DescriptorBody, nodeId: string): void {
  for (const k of body.sphinxKeys) idx.sphinx.set(hex(k.publicKey), nodeId);
  for (const d of body.gateway?.domains ?? []) idx.domains.set(d, nodeId);
}

export class Authority {
  readonly identity: IdentityKey;
  readonly peers: readonly Peer[];
  readonly params: DocumentParams;
  readonly store: AuthorityStore;
  readonly log: Logger;
  readonly metrics: DirectoryMetrics;
  readonly now: () => number;
  private readonly peerTimeoutMs: number;
  private readonly maxPerEpoch: number;

  constructor(o: AuthorityOptions) {
    this.identity = o.identity;
    this.peers = o.peers;
    this.params = o.params;
    this.store = o.store;
    this.log = o.logger;
    this.metrics = o.metrics ?? new DirectoryMetrics();
    this.now = o.now ?? (() => Date.now() / 1000);
    this.peerTimeoutMs = o.peerTimeoutMs ?? 5000;
    this.maxPerEpoch = o.maxDescriptorsPerEpoch ?? 5000;
    if (!o.params.authorities.some((a) => bytesEqual(a, o.identity.publicKey))) throw new Error("this authority's own key is not in the authority list");
    for (const p of o.peers)
      if (!o.params.authorities.some((a) => bytesEqual(a, p.publicKey))) throw new Error(`peer ${p.url} key is not in the authority list`);
  }

  currentEpoch(): number {
    return epochAt(this.params.epochConfig, this.now());
  }

  private reject(kind: string, e: PkiError): never {
    this.metrics.countRejected(kind, e.reason);
    throw e;
  }

  // -------------------------------------------------------------------------------------------
  // descriptors

  /**
   * Accepts a SignedDescriptor for epoch E if E is the current or one of the next two epochs and
   * this authority has not yet voted for E. Throws PkiError (counted) otherwise.
   */
  submitDescriptor(bytes: Uint8Array): UploadOutcome {
    try {
      const out = this.acceptDescriptor(bytes);
      this.metrics.countDescriptor(out.result);
      return out;
    } catch (e) {
      if (isPkiError(e)) {
        this.metrics.countDescriptor(e.reason);
        this.metrics.countRejected('descriptor', e.reason);
      }
      throw e;
    }
  }

  private acceptDescriptor(bytes: Uint8Array): UploadOutcome {
    const d = verifyDescriptor(bytes);
    const e = d.body.epoch;
    const cur = this.currentEpoch();
    if (e < cur) throw new PkiError('stale-epoch', `descriptor for epoch ${e}, current epoch is ${cur}`);
    if (e > cur + 2) throw new PkiError('future-epoch', `descriptor for epoch ${e} is more than two epochs ahead of ${cur}`);
    const nodeId = hex(d.nodeId);
    const have = this.store.getDescriptor(e, d.nodeId);
    if (have) {
      if (bytesEqual(have.digest, d.digest)) return { result: 'duplicate', nodeId, epoch: e };
      throw new PkiError('conflicting', `node ${nodeId.slice(0, 16)} already has a different descriptor for epoch ${e}`);
    }
    if (this.store.getVote(e, this.identity.publicKey)) throw new PkiError('stale-epoch', `voting for epoch ${e} is over; upload for epoch ${e + 1}`);
    if (this.store.countDescriptors(e) >= this.maxPerEpoch) throw new PkiError('oversized', `epoch ${e} already has ${this.maxPerEpoch} descriptors`);
    // keys and domains must be unique among the descriptors of the epoch
    const idx = this.epochIndex(e);
    for (const k of d.body.sphinxKeys) {
      const owner = idx.sphinx.get(hex(k.publicKey));
      if (owner) throw new PkiError('duplicate-key', `Sphinx key already used by node ${owner.slice(0, 16)}`);
    }
    for (const dom of d.body.gateway?.domains ?? []) {
      const owner = idx.domains.get(dom);
      if (owner) throw new PkiError('duplicate-key', `mail domain ${dom} is already served by node ${owner.slice(0, 16)}`);
    }
    this.store.putDescriptor({ epoch: e, nodeId: d.nodeId, digest: d.digest, bytes, receivedAt: Math.floor(this.now()) });
    indexDescriptor(idx, d.body, nodeId);
    this.log.debug({ epoch: e, node: nodeId.slice(0, 16), role: d.body.role }, 'descriptor accepted');
    return { result: 'accepted', nodeId, epoch: e };
  }

  private readonly indexes = new Map<number, EpochIndex>();
  private unroutableLogged = -1;

  /** Sphinx keys and mail domains already claimed in epoch E (built from the store once). */
  private epochIndex(epoch: number): EpochIndex {
    let idx = this.indexes.get(epoch);
    if (!idx) {
      idx = { sphinx: new Map(), domains: new Map() };
      for (const sd of this.store.descriptors(epoch)) {
        indexDescriptor(idx, decodeDescriptorBody(decodeSignedDescriptor(sd.bytes).body), hex(sd.nodeId));
      }
      for (const k of this.indexes.keys()) if (k < this.currentEpoch()) this.indexes.delete(k);
      this.indexes.set(epoch, idx);
    }
    return idx;
  }

  // -------------------------------------------------------------------------------------------
  // phase 1: vote

  /** Signs and stores this authority's vote for epoch E (idempotent). Returns SignedVote bytes. */
  vote(epoch: number): Uint8Array {
    const have = this.store.getVote(epoch, this.identity.publicKey);
    if (have) return have;
    const descriptors = this.store.descriptors(epoch).map((d) => d.bytes);
    const prev = this.previousDocument(epoch);
    const body = encodeVoteBody({
      version: PKI_VERSION,
      epoch,
      authorityKey: this.identity.publicKey,
      descriptors,
      previousDigest: prev?.digest ?? new Uint8Array(0),
    });
    const signed = encodeSignedVote({ body, signature: ed25519Sign(this.identity, voteSigningBytes(body)) });
    this.store.putVote(epoch, this.identity.publicKey, signed);
    this.log.info({ epoch, descriptors: descriptors.length }, 'voted');
    return signed;
  }

  /** Verifies a peer's SignedVote for epoch E; returns its descriptors that verify. */
  verifyVote(bytes: Uint8Array, epoch: number, expectedKey: Uint8Array): VerifiedDescriptor[] {
    try {
      const sv = decodeSignedVote(bytes);
      const body = decodeVoteBody(sv.body);
      if (!bytesEqual(body.authorityKey, expectedKey)) throw new PkiError('unknown-authority', 'vote signed for another authority');
      if (!ed25519Verify(expectedKey, voteSigningBytes(sv.body), sv.signature)) throw new PkiError('bad-signature', 'vote signature does not verify');
      if (body.epoch !== epoch) throw new PkiError('wrong-epoch', `vote for epoch ${body.epoch}, expected ${epoch}`);
      const out: VerifiedDescriptor[] = [];
      for (const b of body.descriptors) {
        try {
          const d = verifyDescriptor(b);
          if (d.body.epoch !== epoch) throw new PkiError('wrong-epoch', 'descriptor in vote for another epoch');
          out.push(d);
        } catch (e) {
          if (isPkiError(e)) this.metrics.countRejected('vote-descriptor', e.reason);
          else throw e;
        }
      }
      return out;
    } catch (e) {
      if (isPkiError(e)) this.reject('vote', e);
      throw e;
    }
  }

  // -------------------------------------------------------------------------------------------
  // phase 2: tally

  /**
   * Gathers the votes for E (own + peers'), computes the consensus descriptor set and the
   * document body, and signs it. Returns false if fewer than `threshold` votes are available.
   */
  async tally(epoch: number): Promise<boolean> {
    if (this.store.getBody(epoch)) return true;
    this.vote(epoch);
    await Promise.all(
      this.peers.map(async (p) => {
        if (this.store.getVote(epoch, p.publicKey)) return;
        const bytes = await this.fetchPeer(p, `/v1/vote/${epoch}`, LIMITS.voteBytes + 1024, 'vote');
        if (!bytes) return;
        try {
          this.verifyVote(bytes, epoch, p.publicKey);
          this.store.putVote(epoch, p.publicKey, bytes);
        } catch (e) {
          if (!isPkiError(e)) throw e;
          this.log.warn({ peer: p.url, epoch, err: e.message }, 'rejected peer vote');
        }
      }),
    );
    const votes = this.store.votes(epoch);
    if (votes.length < this.params.threshold) {
      this.log.warn({ epoch, votes: votes.length, threshold: this.params.threshold }, 'not enough votes to build a document');
      return false;
    }
    // count each distinct descriptor (by digest) across the votes
    const tallies = new Map<string, { d: VerifiedDescriptor; n: number }>();
    for (const v of votes) {
      const seen = new Set<string>();
      for (const d of this.verifyVote(v.bytes, epoch, v.authority)) {
        const k = hex(d.digest);
        if (seen.has(k)) continue; // a vote counts once per descriptor
        seen.add(k);
        const t = tallies.get(k);
        if (t) t.n++;
        else tallies.set(k, { d, n: 1 });
      }
    }
    // per node id, the descriptor with the most votes (then the lowest digest) if >= threshold
    const perNode = new Map<string, { d: VerifiedDescriptor; n: number }>();
    for (const t of tallies.values()) {
      if (t.n < this.params.threshold) continue;
      const id = hex(t.d.nodeId);
      const cur = perNode.get(id);
      if (!cur || t.n > cur.n || (t.n === cur.n && compareBytes(t.d.digest, cur.d.digest) < 0)) perNode.set(id, t);
    }
    const prev = this.previousDocument(epoch) ?? (await this.fetchPreviousDocument(epoch));
    const body = buildDocumentBody(
      this.params,
      epoch,
      [...perNode.values()].map((t) => t.d),
      prev && { body: prev.body, digest: prev.digest },
    );
    const empty = body.layers.findIndex((l) => l.length === 0);
    if (empty >= 0) {
      // e.g. authorities back from an outage after the vote point, before the nodes could upload:
      // a document that cannot route would replace one that still can (its keys ahead carry the
      // network on), so this epoch gets none
      if (this.unroutableLogged !== epoch) {
        this.log.warn({ epoch, layer: empty + 1, descriptors: perNode.size }, 'no document for this epoch: a layer would have no mix');
        this.metrics.countWithheld();
      }
      this.unroutableLogged = epoch;
      return false;
    }
    const bodyBytes = encodeCheckedDocumentBody(body);
    const digest = sha256(bodyBytes);
    this.store.putBody(epoch, bodyBytes, digest);
    this.store.putSignature(epoch, this.identity.publicKey, signDocumentBody(this.identity, bodyBytes).signature);
    this.log.info(
      { epoch, votes: votes.length, mixes: body.layers.reduce((a, l) => a + l.length, 0), gateways: body.gateways.length, digest: hex(digest).slice(0, 16) },
      'document body signed',
    );
    return true;
  }

  /** This authority's signature over its body for E, as a SignedDocument with one signature. */
  ownSignature(epoch: number): Uint8Array | undefined {
    const body = this.store.getBody(epoch);
    if (!body) return undefined;
    const mine = this.store.signatures(epoch).filter((s) => bytesEqual(s.authorityKey, this.identity.publicKey));
    return combineSignatures(body.body, mine);
  }

  // -------------------------------------------------------------------------------------------
  // phase 3: collect

  /**
   * Fetches the peers' signatures over the same body and publishes the document once it has
   * `threshold` signatures. Returns the number of signatures on the published document (0 if
   * not published).
   */
  async collect(epoch: number): Promise<number> {
    const body = this.store.getBody(epoch);
    if (!body) return 0;
    const have = new Set(this.store.signatures(epoch).map((s) => hex(s.authorityKey)));
    await Promise.all(
      this.peers.map(async (p) => {
        if (have.has(hex(p.publicKey))) return;
        const bytes = await this.fetchPeer(p, `/v1/signature/${epoch}`, LIMITS.documentBytes + 64 * 1024, 'signature');
        if (!bytes) return;
        try {
          const sd = decodeSignedDocument(bytes);
          if (!bytesEqual(sd.body, body.body)) {
            throw new PkiError('conflicting', `peer ${p.url} signed a different document for epoch ${epoch}`);
          }
          const s = sd.signatures.find((x) => bytesEqual(x.authorityKey, p.publicKey));
          if (!s) throw new PkiError('unknown-authority', `peer ${p.url} sent no signature of its own`);
          if (!checkDocumentSignature(body.body, s)) throw new PkiError('bad-signature', `peer ${p.url} signature does not verify`);
          this.store.putSignature(epoch, p.publicKey, s.signature);
        } catch (e) {
          if (!isPkiError(e)) throw e;
          this.metrics.countRejected('signature', e.reason);
          this.log.warn({ peer: p.url, epoch, err: e.message }, 'rejected peer signature');
        }
      }),
    );
    const sigs = this.store.signatures(epoch);
    if (sigs.length < this.params.threshold) {
      this.log.info({ epoch, signatures: sigs.length }, 'document not yet at threshold');
      return 0;
    }
    const published = this.store.getDocument(epoch);
    if (published && published.signers >= sigs.length) return published.signers;
    const bytes = combineSignatures(body.body, sigs);
    // self-check with the same verifier every client runs
    const v = verifyDocument(bytes, { authorities: this.params.authorities, threshold: this.params.threshold, epoch });
    this.store.putDocument(epoch, bytes, v.signers.length, Math.floor(this.now()));
    this.metrics.countPublished();
    const latest = this.store.latestDocumentEpoch() ?? epoch;
    if (latest === epoch) {
      this.metrics.newest(v.signers.length, epoch);
    }
    this.log.info({ epoch, signatures: v.signers.length }, 'document published');
    return v.signers.length;
  }

  /** All three phases in a row (for tests and for catching up). */
  async runRound(epoch: number): Promise<number> {
    this.vote(epoch);
    if (!(await this.tally(epoch))) return 0;
    return this.collect(epoch);
  }

  // -------------------------------------------------------------------------------------------

  document(epoch: number): Uint8Array | undefined {
    return this.store.getDocument(epoch)?.bytes;
  }

  private previousDocument(epoch: number): VerifiedDocument | undefined {
    if (epoch === 0) return undefined;
    const d = this.store.getDocument(epoch - 1);
    if (!d) return undefined;
    return verifyDocument(d.bytes, { authorities: this.params.authorities, threshold: this.params.threshold, epoch: epoch - 1 });
  }

  /** If this authority missed epoch E-1 (it was down), it takes the peers' published copy. */
  private async fetchPreviousDocument(epoch: number): Promise<VerifiedDocument | undefined> {
    if (epoch === 0) return undefined;
    for (const p of this.peers) {
      const bytes = await this.fetchPeer(p, `/v1/document/${epoch - 1}`, LIMITS.documentBytes + 64 * 1024, 'document');
      if (!bytes) continue;
      try {
        const v = verifyDocument(bytes, { authorities: this.params.authorities, threshold: this.params.threshold, epoch: epoch - 1 });
        this.store.putDocument(epoch - 1, bytes, v.signers.length, Math.floor(this.now()));
        return v;
      } catch (e) {
        if (!isPkiError(e)) throw e;
        this.metrics.countRejected('document', e.reason);
      }
    }
    return undefined;
  }

  private async fetchPeer(p: Peer, path: string, limit: number, phase: string): Promise<Uint8Array | undefined> {
    try {
      const res = await fetch(new URL(path, p.url), { signal: AbortSignal.timeout(this.peerTimeoutMs) });
      if (res.status === 404) {
        await res.body?.cancel();
        return undefined;
      }
      if (res.status !== 200) {
        await res.body?.cancel();
        throw new Error(`HTTP ${res.status}`);
      }
      return await readLimited(res, limit);
    } catch (e) {
      this.metrics.countPeerError(phase);
      this.log.debug({ peer: p.url, path, err: (e as Error).message }, 'peer fetch failed');
      return undefined;
    }
  }
}
