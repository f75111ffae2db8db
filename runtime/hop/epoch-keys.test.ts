import { chmodSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { epochStart } from '../../proto/pki/index.ts';
import { KeyStore } from '../pki/key-store.ts';
import { EpochKeys, openKeyStore } from './epoch-keys.ts';
import { KeyFileError } from '../errors.ts';

const tmp = mkdtempSync(join(tmpdir(), 'pm-hopkeys-'));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

describe('hop keys', () => {
  it('refuses a missing identity or one readable by others, with the fix', () => {
    const d = join(tmp, 'k1');
    expect(() => openKeyStore(d)).toThrow(/postmix keygen/);
    KeyStore.create(d, { force: false, epochs: [5] });
    chmodSync(join(d, 'sphinx-5.key'), 0o640);
    expect(() => openKeyStore(d)).toThrow(KeyFileError);
    chmodSync(join(d, 'sphinx-5.key'), 0o600);
    expect(openKeyStore(d).identity.nodeId.length).toBe(32);
  });

  it('switches keys exactly at the boundary and keeps the previous one for the grace window', () => {
    const d = join(tmp, 'k2');
    const { store } = KeyStore.create(d, { force: false, epochs: [] });
    const ec = { origin: 1_000_000, length: 100, grace: 20 };
    let t = epochStart(ec, 7) + 50;
    const k = new EpochKeys(store, ec, () => t);
    expect(k.keys()).toEqual([]); // no key files yet
    k.ensure([7, 8]);
    expect(k.keys().map((x) => x.epoch)).toEqual([7]);
    t = epochStart(ec, 8) - 0.001;
    expect(k.keys().map((x) => x.epoch)).toEqual([7]);
    t = epochStart(ec, 8);
    expect(k.keys().map((x) => x.epoch)).toEqual([8, 7]);
    t = epochStart(ec, 8) + 20;
    expect(k.keys().map((x) => x.epoch)).toEqual([8]);
    expect(k.prune(8)).toEqual([7]);
    expect(store.listSphinxEpochs()).toEqual([8]);
  });
});
