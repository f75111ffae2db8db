/**
 * The authority daemon as operators run it: keys from `postmix keygen`, one TOML config per
 * authority (with env overrides), runDirectory's scheduler driven by an injected clock, and
 * config errors. Polls for state with a bound; never asserts on timings.
 */
import { mkdtempSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pino } from 'pino';
import { afterAll, describe, expect, it } from 'vitest';
import { buildProgram } from '../cli/main.ts';
import { ConfigError, loadDirectoryConfig } from '../directory/config.ts';
import { runDirectory, type RunningDirectory } from '../directory/daemon.ts';
import { testNode } from './support/pki.ts';
import { freePort } from './support/loopback.ts';
import { peerIdOfIdentityKey } from '../proto/pki/peer-id.ts';
import { findNode, schedulePoint, SCHEDULE } from '../proto/pki/index.ts';
import { KeyStore, loadIdentityPublicKey } from '../runtime/pki/key-store.ts';
import { fetchDocument, uploadDescriptor, uploadNodeDescriptor } from '../runtime/pki/client.ts';

const dir = mkdtempSync(join(tmpdir(), 'pm-dird-'));
const EC = { origin: 1_700_000_000, length: 600, grace: 60 };
const E = 50;
let clock = schedulePoint(EC, E - 1, 0.1);
const running: RunningDirectory[] = [];

afterAll(async () => {
  for (const r of running) await r.close();
});

async function keygen(args: string[]): Promise<number> {
  const prev = process.exitCode;
  process.exitCode = 0;
  const out = process.stdout.write;
  process.stdout.write = (() => true) as typeof process.stdout.write; // keep the test output clean
  try {
    await (await buildProgram()).exitOverride().parseAsync(['node', 'postmix', 'keygen', ...args]);
  } finally {
    process.stdout.write = out;
  }
  const code = Number(process.exitCode ?? 0);
  process.exitCode = prev;
  return code;
}

async function until(cond: () => boolean | Promise<boolean>, what: string): Promise<void> {
  for (let i = 0; i < 400; i++) {
    if (await cond()) return;
    await new Promise((r) => setTimeout(r, 25));
  }
  throw new Error(`gave up waiting for ${what}`);
}

describe('postmix keygen', () => {
  it('writes 0600 key files and refuses to overwrite without --force', async () => {
    const d = join(dir, 'node');
    expect(await keygen(['-d', d, '-e', '7,8'])).toBe(0);
    for (const f of ['identity.key', 'sphinx-7.key', 'sphinx-8.key']) expect(statSync(join(d, f)).mode & 0o777).toBe(0o600);
    const pub = loadIdentityPublicKey(join(d, 'identity.pub'));
    expect(await keygen(['-d', d, '-e', '7'])).toBe(77);
    expect(loadIdentityPublicKey(join(d, 'identity.pub'))).toEqual(pub);
    expect(await keygen(['-d', d, '-e', '7', '--force'])).toBe(0);
    expect(loadIdentityPublicKey(join(d, 'identity.pub'))).not.toEqual(pub);
  });
});

describe('postmix directory run', () => {
  it('reports every bad config field clearly', () => {
    const bad = join(dir, 'bad.toml');
    writeFileSync(bad, '[authority]\nidentity_key = 1\n[network]\nthreshold = 5\n[[authorities]]\nurl = "http://127.0.0.1:1"\npublic_key = "short"\n');
    expect(() => loadDirectoryConfig(bad, {})).toThrow(ConfigError);
    try {
      loadDirectoryConfig(bad, {});
    } catch (e) {
      expect((e as Error).message).toMatch(/authority\.identity_key/);
      expect((e as Error).message).toMatch(/authority\.database/);
      expect((e as Error).message).toMatch(/authorities\.0\.public_key: must be a base64 Ed25519 public key/);
    }
    writeFileSync(bad, 'not = [toml');
    expect(() => loadDirectoryConfig(bad, {})).toThrow(ConfigError);
  });

  it('three daemons from TOML configs publish one document per epoch on their schedule', async () => {
    const ports = [await freePort(), await freePort(), await freePort()];
    for (let i = 0; i < 3; i++) expect(await keygen(['-d', join(dir, `a${i}`), '-e', 'none'])).toBe(0);
    const authorities = ports.map((p, i) => `[[authorities]]\nurl = "http://127.0.0.1:${p}"\npublic_key_file = "a${i}/identity.pub"\n`).join('');
    for (let i = 0; i < 3; i++) {
      writeFileSync(
        join(dir, `a${i}.toml`),
        `[authority]\nidentity_key = "a${i}/identity.key"\ndatabase = "a${i}/state.sqlite"\nlisten_port = 1\nlog_level = "silent"\n\n` +
          `[network]\nthreshold = 2\nlayers = 3\nepoch_length = ${EC.length}\nepoch_origin = ${EC.origin}\ngrace = ${EC.grace}\n\n${authorities}`,
      );
    }
    for (let i = 0; i < 3; i++) {
      // the env override replaces the port in the file
      const cfg = loadDirectoryConfig(join(dir, `a${i}.toml`), { POSTMIX_DIRECTORY_AUTHORITY__LISTEN_PORT: String(ports[i]) });
      expect(cfg.file.authority.listen_port).toBe(ports[i]);
      running.push(await runDirectory(cfg, { logger: pino({ level: 'silent' }), now: () => clock, tickMs: 20 }));
    }
    const urls = running.map((r) => r.url);
    const nodes = Array.from({ length: 12 }, (_, i) => testNode(E, i, i < 10 ? 'mix' : 'gateway'));
    for (const n of nodes) expect((await uploadDescriptor(urls, n.descriptor)).every((r) => r.result === 'accepted')).toBe(true);
    // one more mix the way a mix node does it: keys from its key directory
    expect(await keygen(['-d', join(dir, 'mix'), '-e', 'none'])).toBe(0);
    const mixKeys = new KeyStore(join(dir, 'mix'));
    const up = await uploadNodeDescriptor({
      keys: mixKeys,
      epochConfig: EC,
      urls,
      peerId: peerIdOfIdentityKey(mixKeys.identity().publicKey),
      addresses: ['/ip4/127.0.0.1/tcp/4001'],
      role: 'mix',
      now: clock,
    });
    expect(up.epoch).toBe(E);
    expect(up.results.map((r) => r.result)).toEqual(['accepted', 'accepted', 'accepted']);
    expect(mixKeys.listSphinxEpochs()).toEqual([E, E + 1, E + 2, E + 3]);

    clock = schedulePoint(EC, E - 1, SCHEDULE.vote);
    await until(() => running.every((r) => r.authority.store.getVote(E, r.authority.identity.publicKey) !== undefined), 'votes');
    clock = schedulePoint(EC, E - 1, SCHEDULE.tally);
    await until(() => running.every((r) => r.authority.store.getBody(E) !== undefined), 'tallies');
    clock = schedulePoint(EC, E - 1, SCHEDULE.collect);
    await until(() => running.every((r) => (r.authority.store.getDocument(E)?.signers ?? 0) === 3), 'three signatures');

    const authKeys = [0, 1, 2].map((i) => loadIdentityPublicKey(join(dir, `a${i}`, 'identity.pub')));
    const docs = await Promise.all(urls.map((u) => fetchDocument('next', { urls: [u], authorities: authKeys, threshold: 2, epoch: E })));
    expect(new Set(docs.map((d) => Buffer.from(d.bytes).toString('hex'))).size).toBe(1);
    expect(docs[0]!.body.layers.flat()).toHaveLength(11);
    const mine = findNode(docs[0]!.body, mixKeys.identity().nodeId)!;
    expect(mine.sphinxKey).toEqual(mixKeys.sphinxKey(E)!.publicKey);
    expect(mine.sphinxKeysAhead[0]).toEqual(mixKeys.sphinxKey(E + 1)!.publicKey);
    expect(Math.max(...docs[0]!.body.layers.map((l) => l.length)) - Math.min(...docs[0]!.body.layers.map((l) => l.length))).toBeLessThanOrEqual(1);
    expect(docs[0]!.body.gateways).toHaveLength(2);
  });
});
