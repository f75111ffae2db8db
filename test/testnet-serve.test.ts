/**
 * `postmix testnet --serve` as a person uses it: started as its own process with real Postfix
 * MXs, it prints one JSON ready line; real SMTP clients submit with the advertised credentials:
 * swaks one message through the overlay and one to the domain without a gateway, msmtp (with the
 * ~/.msmtprc of docs/mail-clients.md) one the other way through the overlay; each lands, intact,
 * in the advertised Maildir. SIGTERM then stops everything: every
 * daemon process and every Postfix master gone, every advertised port free again, the run
 * directory removed.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, readdirSync, readFileSync, writeFileSync, mkdtempSync, rmSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { afterAll, describe, expect, it } from 'vitest';
import { asSubmitted, makeMessage } from '../cli/testnet/messages.ts';
import type { ReadyLine } from '../cli/testnet/serve.ts';
import { postmixProcess, run, swaks } from './support/processes.ts';

const bin = new URL('../bin/postmix.js', import.meta.url).pathname;
const READY_BUDGET_MS = 240_000;

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

function portFree(port: number, host: string): Promise<boolean> {
  return new Promise((res) => {
    const s = net.createServer();
    s.once('error', () => res(false));
    s.listen(port, host, () => s.close(() => res(true)));
  });
}

async function waitFor<T>(what: string, ms: number, f: () => T | undefined): Promise<T> {
  const end = Date.now() + ms;
  for (;;) {
    const v = f();
    if (v !== undefined) return v;
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 250));
  }
}

function portsOf(r: ReadyLine): { host: string; port: number }[] {
  const out: { host: string; port: number }[] = [];
  for (const c of r.clients) out.push({ host: c.smtp.host, port: c.smtp.port });
  for (const m of r.mx) out.push({ host: m.host, port: m.port });
  for (const n of r.nodes) {
    const tcp = /\/ip4\/([\d.]+)\/tcp\/(\d+)/.exec(n.listen);
    if (tcp) out.push({ host: tcp[1]!, port: Number(tcp[2]) });
    for (const u of [n.metrics, n.kind === 'authority' ? n.listen : undefined]) {
      if (u) out.push({ host: new URL(u).hostname, port: Number(new URL(u).port) });
    }
  }
  return out;
}

describe('postmix testnet --serve (real Postfix, swaks as the mail client)', () => {
  let child: ChildProcess | undefined;
  let stderr = '';
  const work = mkdtempSync(join(tmpdir(), 'postmix-serve-test-'));
  afterAll(async () => {
    // a failed assertion leaves the network up: SIGTERM so it stops its Postfix instances too
    if (child && child.exitCode === null) {
      const gone = new Promise((r) => child!.once('exit', r));
      child.kill('SIGTERM');
      await Promise.race([gone, new Promise((r) => setTimeout(r, 30_000))]);
    }
    rmSync(work, { recursive: true, force: true });
  });

  it(
    'prints the ready line, delivers what swaks and msmtp submit with the advertised credentials, and stops everything on SIGTERM',
    async () => {
      child = spawn(
        process.execPath,
        [bin, 'testnet', '--serve', '--json', '--mta', 'postfix', '--layers', '2', '--layer-size', '1', '--epoch-length', '10', '--tokens', '5'],
        { stdio: ['ignore', 'pipe', 'pipe'] },
      );
      child.stderr!.on('data', (d: Buffer) => (stderr += d.toString()));
      const exited = new Promise<number | null>((r) => child!.once('exit', (code) => r(code)));
      const lines: string[] = [];
      createInterface({ input: child.stdout! }).on('line', (l) => lines.push(l));
      const ready = await waitFor('the ready line', READY_BUDGET_MS, () => {
        if (child!.exitCode !== null) throw new Error(`testnet --serve exited ${child!.exitCode} before ready:\n${stderr.slice(-4000)}`);
        return lines.length > 0 ? (JSON.parse(lines[0]!) as ReadyLine) : undefined;
      });

      // the contract of the ready line (issue 16)
      expect(ready.ready).toBe(true);
      expect(ready.clients.map((c) => c.address)).toEqual(['alice@alpha.test', 'bob@beta.test']);
      for (const c of ready.clients) {
        expect(Object.keys(c.smtp).sort()).toEqual(['host', 'password', 'port', 'user']);
        expect(c.smtp.password.length).toBeGreaterThanOrEqual(16);
      }
      expect(Object.keys(ready.maildirs).sort()).toEqual(['alice@alpha.test', 'bob@beta.test', 'carol@gamma.test']);
      expect(ready.nodes.map((n) => n.kind).sort()).toEqual(['authority', 'authority', 'authority', 'client', 'client', 'gateway', 'gateway', 'mix', 'mix']);
      expect(ready.network).toEqual({ mode: 'loopback', hosts: 1 });
      const pids = ready.nodes.map((n) => n.pid!);
      expect(pids.every((p) => Number.isInteger(p) && alive(p))).toBe(true);
      // each Postfix instance (three MXs and the provider's relay) by its master's pid file
      const pfRoot = join(ready.run_dir, 'postfix');
      const masters = readdirSync(pfRoot).map((d) => Number(readFileSync(join(pfRoot, d, 'queue', 'pid', 'master.pid'), 'utf8').trim()));
      expect(masters).toHaveLength(4);
      expect(masters.every(alive)).toBe(true);

      // a person's mail client: swaks, AUTH with the advertised user and password
      const alice = ready.clients[0]!;
      const bob = ready.clients[1]!;
      const toBob = makeMessage({ id: 'serve-overlay', from: alice.address, to: bob.address, size: 5000 });
      const toCarol = makeMessage({ id: 'serve-fallback', from: bob.address, to: 'carol@gamma.test', size: 3000 });
      const submit = async (c: ReadyLine['clients'][number], to: string, bytes: Uint8Array, name: string) => {
        const file = join(work, name);
        // swaks ends DATA with CRLF.CRLF after the file's last byte: the file leaves off the message's final CRLF
        writeFileSync(file, bytes.subarray(0, bytes.length - 2));
        const out = await swaks({ port: c.smtp.port, from: c.address, to, file, auth: { user: c.smtp.user, password: c.smtp.password } });
        expect(out.code, out.stdout + out.stderr).toBe(0);
        expect(out.stdout).toMatch(/<-\s+250[- ].*queued as/);
      };
      await submit(alice, bob.address, toBob, 'to-bob.eml');
      await submit(bob, 'carol@gamma.test', toCarol, 'to-carol.eml');
      // msmtp, configured as docs/mail-clients.md shows for the testnet
      const toAlice = makeMessage({ id: 'serve-msmtp', from: bob.address, to: alice.address, size: 4000 });
      const rc = join(work, 'msmtprc');
      writeFileSync(
        rc,
        [
          'account testnet-bob',
          `host ${bob.smtp.host}`,
          `port ${bob.smtp.port}`,
          `from ${bob.address}`,
          'auth plain',
          `user ${bob.smtp.user}`,
          `password ${bob.smtp.password}`,
          'tls off',
          '',
        ].join('\n'),
        { mode: 0o600 },
      );
      const m = await run('msmtp', ['-C', rc, '-a', 'testnet-bob', '-t'], { input: Buffer.from(toAlice) });
      expect(m.code, m.stdout + m.stderr).toBe(0);
      // and a wrong password is refused (the listener is not open to anyone on the host)
      const wrong = await swaks({
        port: alice.smtp.port,
        from: alice.address,
        to: bob.address,
        file: join(work, 'to-bob.eml'),
        auth: { user: alice.smtp.user, password: 'wrong' },
      });
      expect(wrong.code).not.toBe(0);
      expect(wrong.stdout + wrong.stderr).toMatch(/535/);

      const arrived = (address: string) => () => {
        const dir = join(ready.maildirs[address]!, 'new');
        const files = existsSync(dir) ? readdirSync(dir) : [];
        return files.length > 0 ? files.map((f) => asSubmitted(readFileSync(join(dir, f)), 'postfix')) : undefined;
      };
      const atBob = await waitFor("bob's mail", 120_000, arrived(bob.address));
      const atCarol = await waitFor("carol's mail", 120_000, arrived('carol@gamma.test'));
      const atAlice = await waitFor("alice's mail", 120_000, arrived(alice.address));
      expect(atBob).toHaveLength(1);
      expect(Buffer.compare(atBob[0]!, Buffer.from(toBob))).toBe(0);
      expect(atAlice).toHaveLength(1);
      expect(Buffer.compare(atAlice[0]!, Buffer.from(toAlice))).toBe(0);
      expect(atCarol).toHaveLength(1);
      expect(Buffer.compare(atCarol[0]!, Buffer.from(toCarol))).toBe(0);
      // bob's copy came through the mixnet: alice's client says so (its outbox record of the recipient)
      const status = await postmixProcess(['client', 'status', '--json', '--all', '-c', alice.config]);
      expect(status.code, status.stderr).toBe(0);
      const rec = (JSON.parse(status.stdout) as { recipients: { address: string; path: string; state: string }[] }[]).flatMap((p) => p.recipients);
      expect(rec).toEqual([expect.objectContaining({ address: bob.address, path: 'overlay' })]);

      // SIGTERM: everything stops
      child.kill('SIGTERM');
      expect(await exited).toBe(0);
      expect(pids.filter(alive)).toEqual([]);
      expect(masters.filter(alive)).toEqual([]);
      expect(existsSync(ready.run_dir)).toBe(false);
      const busy: string[] = [];
      for (const p of portsOf(ready)) if (!(await portFree(p.port, p.host))) busy.push(`${p.host}:${p.port}`);
      expect(busy).toEqual([]);
      expect(stderr).toMatch(/SIGTERM: stopping every node and MX/);
    },
    READY_BUDGET_MS + 200_000,
  );
});
