/**
 * The private Postfix harness (cli/testnet/postfix.ts) against the real Debian postfix: two mx
 * instances (one per domain) sharing one mailRoot, delivery byte for byte up to the trace fields
 * Postfix prepends and its LF line ends, and stop() / start() of a running instance.
 */
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import nodemailer from 'nodemailer';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { edgeCaseMessage } from './messages.ts';
import { freePort } from './ports.ts';
import { createPostfix, postfixAsSubmitted as asSent, postfixAvailable, type PostfixServer } from './postfix.ts';

const why = postfixAvailable();
if (why) throw new Error(`cli/testnet/postfix.test.ts needs a real Postfix: ${why}`);

let root: string;
let mailRoot: string;
let a: PostfixServer;
let b: PostfixServer;

beforeAll(async () => {
  root = mkdtempSync(join(tmpdir(), 'pmx-pf-harness-')); // 0700, like any mkdtemp dir
  mailRoot = join(root, 'mail');
  a = createPostfix({ dir: join(root, 'pf-a'), name: 'mx-a', port: await freePort(), role: { kind: 'mx', domains: ['a.example'], mailRoot } });
  b = createPostfix({ dir: join(root, 'pf-b'), name: 'mx-b', port: await freePort(), role: { kind: 'mx', domains: ['b.example'], mailRoot } });
  await Promise.all([a.start(), b.start()]);
});

afterAll(async () => {
  await a?.destroy();
  await b?.destroy();
  if (root) rmSync(root, { recursive: true, force: true });
});

function message(to: string, subject: string): string {
  return edgeCaseMessage({ to, subject });
}

async function send(server: PostfixServer, to: string, raw: string): Promise<void> {
  const t = nodemailer.createTransport({ host: '127.0.0.1', port: server.port, secure: false, ignoreTLS: true });
  try {
    const info = await t.sendMail({ envelope: { from: 'alice@sender.test', to: [to] }, raw });
    expect(info.accepted).toHaveLength(1);
  } finally {
    t.close();
  }
}

async function waitForFile(server: PostfixServer, address: string, subject: string, ms = 20_000): Promise<string> {
  const dir = join(server.maildir(address), 'new');
  const end = Date.now() + ms;
  for (;;) {
    if (existsSync(dir)) {
      for (const f of readdirSync(dir)) {
        const text = readFileSync(join(dir, f), 'latin1');
        if (text.includes(`Subject: ${subject}\n`)) return text;
      }
    }
    if (Date.now() > end) throw new Error(`no delivery of "${subject}" to ${address} in ${dir}; maillog:\n${server.log()}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

describe('private Postfix mx instances', () => {
  it('two domains on one mailRoot: any local part is delivered byte for byte (after the trace fields, LF → CRLF)', async () => {
    expect(statSync(mailRoot).uid).toBe(65534);
    expect(statSync(root).mode & 0o777).toBe(0o701); // mkdtemp's 0700, plus only o+x
    const m1 = message('bob@a.example', 'to a');
    const m2 = message('Carol@B.example', 'to b');
    await send(a, 'bob@a.example', m1);
    await send(b, 'Carol@B.example', m2);
    const d1 = await waitForFile(a, 'bob@a.example', 'to a');
    const d2 = await waitForFile(b, 'Carol@B.example', 'to b');
    expect(b.maildir('Carol@B.example')).toBe(join(mailRoot, 'b.example', 'carol') + '/');
    expect(Buffer.compare(asSent(d1), Buffer.from(m1, 'utf8'))).toBe(0);
    expect(Buffer.compare(asSent(d2), Buffer.from(m2, 'utf8'))).toBe(0);
    expect(d1).toMatch(/^Return-Path: <alice@sender\.test>\nX-Original-To: bob@a\.example\nDelivered-To: bob@a\.example\nReceived: from /);
    expect(d1).not.toContain('\r');
  });

  it('refuses domains it does not serve, and local parts that would leave the domain directory', async () => {
    await expect(send(a, 'bob@b.example', message('bob@b.example', 'wrong mx'))).rejects.toMatchObject({ responseCode: 554 });
    await expect(send(a, '.hidden@a.example', message('.hidden@a.example', 'dot'))).rejects.toMatchObject({ responseCode: 550 });
  });

  it('stop() then start(): the port closes, reopens, and mail sent after the restart arrives', async () => {
    await a.stop();
    await a.stop(); // idempotent
    await expect(send(a, 'bob@a.example', message('bob@a.example', 'while down'))).rejects.toThrow();
    await a.start();
    const m = message('dave@a.example', 'after restart');
    await send(a, 'dave@a.example', m);
    expect(Buffer.compare(asSent(await waitForFile(a, 'dave@a.example', 'after restart')), Buffer.from(m, 'utf8'))).toBe(0);
  });
});
