/**
 * Key files on disk (docs/spec/pki.md §2; the formats are proto/pki/keys.ts): a node's key
 * directory, written atomically, private files with mode 0600 and never overwritten unless the
 * caller asks (`force`).
 */
import { randomBytes } from 'node:crypto';
import { chmodSync, existsSync, mkdirSync, readFileSync, readdirSync, renameSync, unlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import {
  generateIdentity,
  generateSphinxKey,
  identityFileContent,
  identityPublicFileContent,
  IDENTITY_FILE,
  IDENTITY_PUBLIC_FILE,
  parseIdentityFile,
  parseIdentityPublicKey,
  parseSphinxKeyFile,
  SPHINX_KEY_FILE_RE,
  sphinxFileContent,
  sphinxKeyFile,
  unreadableKeyFile,
  type IdentityKey,
  type SphinxKeyPair,
} from '../../proto/pki/keys.ts';

export class KeyFileExistsError extends Error {
  override readonly name = 'KeyFileExistsError';
  constructor(readonly path: string) {
    super(`${path} exists; refusing to overwrite it (use --force to replace it)`);
  }
}

/** Writes a file atomically (temp file + rename); `secret` files get mode 0600. */
export function writeKeyFile(path: string, content: string, opts: { secret: boolean; force: boolean }): void {
  if (!opts.force && existsSync(path)) throw new KeyFileExistsError(path);
  const tmp = `${path}.tmp-${process.pid}-${randomBytes(4).toString('hex')}`;
  writeFileSync(tmp, content, { mode: opts.secret ? 0o600 : 0o644, flag: 'wx' });
  if (opts.secret) chmodSync(tmp, 0o600); // umask cannot loosen it, but be explicit
  renameSync(tmp, path);
}

function readText(path: string): string {
  try {
    return readFileSync(path, 'utf8');
  } catch (e) {
    throw unreadableKeyFile(path, (e as Error).message);
  }
}

export function loadIdentity(path: string): IdentityKey {
  return parseIdentityFile(readText(path), path);
}

/** Loads a public identity key: an identity.pub file or a full identity.key file. */
export function loadIdentityPublicKey(path: string): Uint8Array {
  return parseIdentityPublicKey(readText(path), path);
}

export function loadSphinxKey(path: string): SphinxKeyPair {
  return parseSphinxKeyFile(readText(path), path);
}

/**
 * A node's key directory: identity.key (0600), identity.pub, and sphinx-<epoch>.key (0600) per
 * epoch. Mixes and gateways call `ensureSphinxKeys(keyEpochsOfDescriptor(e))` before uploading a descriptor,
 * and `pruneSphinxKeys(oldest)` once the grace window of an epoch has passed (deleting old
 * Sphinx secrets is what gives forward secrecy across epochs).
 */
export class KeyStore {
  constructor(readonly dir: string) {}

  static create(dir: string, opts: { force: boolean; epochs: readonly number[] }): { store: KeyStore; identity: IdentityKey; written: string[] } {
    mkdirSync(dir, { recursive: true, mode: 0o700 });
    const written: string[] = [];
    const idPath = join(dir, IDENTITY_FILE);
    const pubPath = join(dir, IDENTITY_PUBLIC_FILE);
    if (!opts.force) {
      for (const p of [idPath, pubPath, ...opts.epochs.map((e) => join(dir, sphinxKeyFile(e)))]) if (existsSync(p)) throw new KeyFileExistsError(p);
    }
    const identity = generateIdentity();
    writeKeyFile(idPath, identityFileContent(identity), { secret: true, force: opts.force });
    written.push(idPath);
    writeKeyFile(pubPath, identityPublicFileContent(identity), { secret: false, force: opts.force });
    written.push(pubPath);
    const store = new KeyStore(dir);
    for (const e of opts.epochs) {
      const p = join(dir, sphinxKeyFile(e));
      writeKeyFile(p, sphinxFileContent(generateSphinxKey(e)), { secret: true, force: opts.force });
      written.push(p);
    }
    return { store, identity, written };
  }

  identity(): IdentityKey {
    return loadIdentity(join(this.dir, IDENTITY_FILE));
  }

  sphinxKey(epoch: number): SphinxKeyPair | undefined {
    const p = join(this.dir, sphinxKeyFile(epoch));
    return existsSync(p) ? loadSphinxKey(p) : undefined;
  }

  /** Loads or creates the Sphinx keys for these epochs. */
  ensureSphinxKeys(epochs: readonly number[]): SphinxKeyPair[] {
    return epochs.map((e) => {
      const have = this.sphinxKey(e);
      if (have) return have;
      const k = generateSphinxKey(e);
      writeKeyFile(join(this.dir, sphinxKeyFile(e)), sphinxFileContent(k), { secret: true, force: false });
      return k;
    });
  }

  listSphinxEpochs(): number[] {
    return readdirSync(this.dir)
      .map((f) => SPHINX_KEY_FILE_RE.exec(f))
      .filter((m): m is RegExpExecArray => m !== null)
      .map((m) => Number(m[1]))
      .sort((a, b) => a - b);
  }

  /** Deletes Sphinx key files of epochs < oldestKept; returns the epochs deleted. */
  pruneSphinxKeys(oldestKept: number): number[] {
    const gone: number[] = [];
    for (const e of this.listSphinxEpochs()) {
      if (e < oldestKept) {
        unlinkSync(join(this.dir, sphinxKeyFile(e)));
        gone.push(e);
      }
    }
    return gone;
  }
}
