/**
 * Adversary: another local user on the machine of a client or gateway (docs/threat-model.md,
 * "Defaults"). The client's data_dir holds the outbox (messages, SURB reply keys, the token
 * wallet) and the mailbox id (a read capability at the home gateway); the gateway's holds queued
 * message bodies, user secret hashes and the spent set; token bundles are tokens. All of them
 * must be 0700 (directories) / 0600 (files), also when they already existed with the umask's
 * 0755/0644 (an install by hand or by an older version), and SQLite's -wal/-shm files too.
 */
import { chmodSync, mkdirSync, mkdtempSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Command } from 'commander';
import pino from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { KeyStore } from '../runtime/pki/key-store.ts';
import { ClientConfigSchema } from '../client/config.ts';
import { runClient } from '../client/daemon.ts';
import { loadMailboxId } from '../client/network.ts';
import { InProcessMixnet } from './support/in-process-mixnet.ts';
import { registerGateway } from '../cli/gateway.ts';

let dir: string;
let umask: number;
beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), 'postmix-private-'));
  umask = process.umask(0o022);
});
afterAll(() => {
  process.umask(umask);
  rmSync(dir, { recursive: true, force: true });
});

const mode = (p: string) => statSync(p).mode & 0o777;

describe('files that hold secrets', () => {
  it('client: data_dir 0700; outbox.sqlite, its -wal and -shm, mailbox.id 0600, even when they existed world-readable', async () => {
    const data = join(dir, 'client');
    mkdirSync(data, { mode: 0o755 });
    chmodSync(data, 0o755);
    writeFileSync(join(data, 'outbox.sqlite'), '');
    chmodSync(join(data, 'outbox.sqlite'), 0o644);
    writeFileSync(join(data, 'mailbox.id'), Buffer.alloc(32, 7));
    chmodSync(join(data, 'mailbox.id'), 0o644);
    const mailbox = loadMailboxId(data);
    expect(Buffer.from(mailbox).equals(Buffer.alloc(32, 7))).toBe(true);
    const sim = new InProcessMixnet({ mixing: { lambdaP: 50, lambdaL: 0, lambdaD: 0, lambdaM: 0, lambdaG: 0, mu: 100 } });
    const cfg = ClientConfigSchema.parse({ data_dir: data, smtp: { port: 0 }, bounce: { maildir: join(dir, 'Maildir') } });
    const client = await runClient(cfg, { log: pino({ level: 'silent' }), network: sim.network(mailbox), maxSleepMs: 20 });
    try {
      client.core.wallet.importBundle(sim.bundle('bob@overlay.test', 2));
      client.core.accept('a@sender.test', ['bob@overlay.test'], new Uint8Array(Buffer.alloc(5000, 'z')));
      const end = Date.now() + 10_000;
      while (client.core.stats.real < 1 && Date.now() < end) await new Promise((r) => setTimeout(r, 20));
      expect(client.core.stats.real).toBeGreaterThan(0); // SURB keys are in the outbox now
      expect(mode(data)).toBe(0o700);
      for (const f of ['outbox.sqlite', 'outbox.sqlite-wal', 'outbox.sqlite-shm', 'mailbox.id']) expect([f, mode(join(data, f))]).toEqual([f, 0o600]);
    } finally {
      await client.stop();
    }
    // a fresh data_dir too
    const fresh = join(dir, 'fresh', 'client');
    loadMailboxId(fresh);
    expect(mode(fresh)).toBe(0o700);
    expect(mode(join(fresh, 'mailbox.id'))).toBe(0o600);
  });

  it('gateway: data_dir 0700, gateway.sqlite and its -wal/-shm 0600; a token bundle written over a 0644 file becomes 0600', async () => {
    const base = join(dir, 'gw');
    mkdirSync(join(base, 'data'), { recursive: true, mode: 0o755 });
    chmodSync(join(base, 'data'), 0o755);
    KeyStore.create(join(base, 'data', 'keys'), { force: false, epochs: [] });
    const cfgPath = join(base, 'gateway.toml');
    writeFileSync(
      cfgPath,
      `[gateway]\ndata_dir = "data"\nlisten = "/ip4/127.0.0.1/tcp/0"\ndomains = ["example.org"]\n[directory]\nthreshold = 1\n[[directory.authorities]]\nurl = "http://127.0.0.1:9"\npublic_key = "${Buffer.alloc(32, 1).toString('base64')}"\n`,
    );
    const bundle = join(base, 'bundle.json');
    writeFileSync(bundle, '{}');
    chmodSync(bundle, 0o644);
    const run = async (...args: string[]) => {
      const program = new Command('postmix').exitOverride();
      registerGateway(program);
      const ow = process.stdout.write.bind(process.stdout);
      process.stdout.write = (() => true) as typeof process.stdout.write;
      try {
        await program.parseAsync(['node', 'postmix', 'gateway', ...args]);
      } finally {
        process.stdout.write = ow;
      }
    };
    process.exitCode = 0;
    await run('user', 'add', '-c', cfgPath, 'bob@example.org');
    await run('tokens', 'issue', '-c', cfgPath, '--user', 'bob@example.org', '--count', '2', '--out', bundle);
    expect(Number(process.exitCode ?? 0)).toBe(0);
    expect(mode(join(base, 'data'))).toBe(0o700);
    const db = join(base, 'data', 'gateway.sqlite');
    for (const f of [db, `${db}-wal`, `${db}-shm`]) {
      let m: number | null = null;
      try {
        m = mode(f);
      } catch {
        m = null; // SQLite removes -wal/-shm when the last connection closes cleanly
      }
      if (m !== null) expect([f, m]).toEqual([f, 0o600]);
    }
    expect(mode(db)).toBe(0o600);
    expect(mode(bundle)).toBe(0o600);
  });
});
