/**
 * A hop's keys (mix or gateway): the long-term identity (identity.key, made by `postmix keygen`)
 * and the per-epoch Sphinx keys, which the node creates itself ahead of time and deletes once
 * their grace window has passed (forward secrecy across epochs).
 *
 * `keys()` is on the packet hot path: it returns a cached list (current epoch first, then the
 * previous one during its grace window) and recomputes it only when the clock crosses the next
 * boundary, so the switch happens at the boundary itself, not at the next tick.
 */
import { existsSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { acceptedKeyEpochs, epochAt, epochEnd, epochStart, IDENTITY_FILE, sphinxKeyFile, type EpochConfig, type IdentityKey } from '../../proto/pki/index.ts';
import { KeyStore } from '../pki/key-store.ts';
import { fastestSuite, prepareHopKey } from '../../proto/sphinx/index.ts';
import type { EpochHopKey } from '../../proto/hop/engine.ts';
import { KeyFileError } from '../errors.ts';

function checkSecretFile(path: string): void {
  const st = statSync(path);
  if ((st.mode & 0o077) !== 0) throw new KeyFileError(`${path} is readable by group or others (mode ${(st.mode & 0o777).toString(8)}); run: chmod 600 ${path}`);
}

/**
 * Opens the key directory: identity.key must exist with mode 0600 (or stricter); existing
 * Sphinx key files must be 0600 too. Throws KeyFileError with the command that fixes it.
 */
export function openKeyStore(dir: string): { store: KeyStore; identity: IdentityKey } {
  const idPath = join(dir, IDENTITY_FILE);
  if (!existsSync(idPath)) throw new KeyFileError(`no identity key at ${idPath}; create one with: postmix keygen -d ${dir} -e none`);
  checkSecretFile(idPath);
  const store = new KeyStore(dir);
  for (const e of store.listSphinxEpochs()) checkSecretFile(join(dir, sphinxKeyFile(e)));
  let identity: IdentityKey;
  try {
    identity = store.identity();
  } catch (e) {
    throw new KeyFileError(`${idPath}: ${(e as Error).message}`);
  }
  return { store, identity };
}

export class EpochKeys {
  private readonly cache = new Map<number, EpochHopKey>();
  private current: readonly EpochHopKey[] = [];
  private validUntilMs = -Infinity;

  /** @param now unix seconds */
  constructor(
    readonly store: KeyStore,
    private readonly epoch: EpochConfig,
    private readonly now: () => number,
  ) {}

  /** The Sphinx keys accepted right now, current epoch first. */
  keys(): readonly EpochHopKey[] {
    const t = this.now();
    if (t * 1000 >= this.validUntilMs) this.recompute(t);
    return this.current;
  }

  /** Forget the cached list (a key file appeared or was pruned). */
  invalidate(): void {
    this.validUntilMs = -Infinity;
  }

  private recompute(t: number): void {
    const c = this.epoch;
    const out: EpochHopKey[] = [];
    for (const e of acceptedKeyEpochs(c, t)) {
      const k = this.load(e);
      if (k) out.push(k);
    }
    this.current = out;
    const e = epochAt(c, t);
    let until = epochEnd(c, e);
    const graceEnd = epochStart(c, e) + c.grace;
    if (t < graceEnd) until = Math.min(until, graceEnd);
    // a missing key may be created later (by ensure): look again within a second
    if (out.length === 0) until = Math.min(until, t + 1);
    this.validUntilMs = until * 1000;
  }

  private load(e: number): EpochHopKey | undefined {
    const hit = this.cache.get(e);
    if (hit) return hit;
    const k = this.store.sphinxKey(e);
    if (!k) return undefined;
    const hk: EpochHopKey = { epoch: e, key: prepareHopKey(fastestSuite, k.secretKey), secret: k.secretKey };
    this.cache.set(e, hk);
    return hk;
  }

  /** Makes sure Sphinx key files exist for these epochs (creating them, mode 0600). */
  ensure(epochs: readonly number[]): ReturnType<KeyStore['ensureSphinxKeys']> {
    const r = this.store.ensureSphinxKeys(epochs);
    this.invalidate();
    return r;
  }

  /** Deletes key files (and cached keys) of epochs < oldestKept; returns those epochs. */
  prune(oldestKept: number): number[] {
    const gone = this.store.pruneSphinxKeys(oldestKept);
    for (const e of [...this.cache.keys()]) if (e < oldestKept) this.cache.delete(e);
    this.invalidate();
    return gone;
  }
}
