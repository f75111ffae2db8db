/**
 * What the testnet sends and how: every run reaches both gateway domains through the overlay and
 * the domain without a gateway through the SMTP fallback; with --unauthorized, mallory writes to
 * bob with forged tokens. Messages are submitted over SMTP to each sender's client, as a mail
 * client would, and their bytes are kept under sent/ for anyone to compare a Maildir file with.
 */
import { randomBytes } from 'node:crypto';
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import nodemailer from 'nodemailer';
import { ALICE, BOB, CAROL, type ClientInfo, type Clients } from './clients.ts';
import { makeMessage } from './messages.ts';
import type { MessagePath } from './report.ts';

/** One message of the run: who sends it to whom, the path it must take, and what became of its submission. */
export interface Planned {
  readonly id: string;
  readonly client: ClientInfo;
  readonly to: string;
  readonly expected: MessagePath;
  readonly bytes: Uint8Array;
  submittedAt: number;
  /** the id the client's outbox gave it ("queued as ...") */
  outboxId?: string;
  submitError?: string;
}

export function planMessages(c: Clients, o: { messages: number; size: number; forged: number }): Planned[] {
  const planned: Planned[] = [];
  let seq = 0;
  const add = (client: ClientInfo, to: string, expected: MessagePath) => {
    const id = `m${++seq}-${randomBytes(4).toString('hex')}`;
    planned.push({ id, client, to, expected, bytes: makeMessage({ id, from: client.address, to, size: o.size }), submittedAt: 0 });
  };
  for (let i = 0; i < o.messages; i++) {
    add(c.alice, BOB, 'overlay');
    add(c.bob, ALICE, 'overlay');
  }
  add(c.alice, CAROL, 'smtp-fallback');
  add(c.bob, CAROL, 'smtp-fallback');
  if (c.mallory) for (let i = 0; i < o.forged; i++) add(c.mallory, BOB, 'refused');
  return planned;
}

/** Writes sent/<id>.eml, then submits every message to its sender's client over SMTP (AUTH). */
export async function submitAll(dir: string, planned: Planned[]): Promise<void> {
  mkdirSync(join(dir, 'sent'), { recursive: true });
  for (const p of planned) writeFileSync(join(dir, 'sent', `${p.id}.eml`), p.bytes);
  const transports = new Map<string, ReturnType<typeof nodemailer.createTransport>>();
  const transport = (c: ClientInfo) => {
    let t = transports.get(c.name);
    if (!t)
      transports.set(
        c.name,
        (t = nodemailer.createTransport({ host: '127.0.0.1', port: c.smtpPort, secure: false, ignoreTLS: true, auth: { user: c.name, pass: c.password } })),
      );
    return t;
  };
  try {
    for (const p of planned) {
      p.submittedAt = Date.now();
      try {
        const info = await transport(p.client).sendMail({ envelope: { from: p.client.address, to: [p.to] }, raw: Buffer.from(p.bytes) });
        p.outboxId = /queued as ([0-9a-zA-Z]+)/.exec(info.response)?.[1];
      } catch (e) {
        p.submitError = (e as Error).message;
      }
    }
  } finally {
    for (const t of transports.values()) t.close();
  }
}
