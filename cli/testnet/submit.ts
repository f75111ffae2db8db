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
import { ALICE, BOB, CAROL, clientTls, type ClientInfo, type Clients } from './clients.ts';
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

/**
 * Who may touch a client: the submitter (one SMTP transaction at a time) or the chaos plan (a
 * SIGKILL and restart), never both. A client is never killed mid-transaction (its 250 is the
 * commit), and no transaction starts while it is being killed and restarted: SIGKILL takes
 * effect a moment after it is sent, and a connection the dying process's listen backlog
 * accepted meanwhile ends in a reset with no reply, which says nothing about whether the
 * message was taken (RFC 5321 §4.1.1.4's ambiguity: resending could duplicate it).
 */
export class SubmissionGate {
  private readonly busy = new Set<string>();
  private readonly down = new Set<string>();

  /** The submitter: waits while `client` is down, then holds it for one transaction. */
  async enter(client: string): Promise<void> {
    while (this.down.has(client)) await new Promise((r) => setTimeout(r, 100));
    this.busy.add(client);
  }

  leave(client: string): void {
    this.busy.delete(client);
  }

  /** The chaos plan: takes `client` down unless a transaction is under way (then false: try later). */
  takeDown(client: string): boolean {
    if (this.busy.has(client)) return false;
    this.down.add(client);
    return true;
  }

  /** `client` is back (or its restart failed): transactions may go on. */
  bringUp(client: string): void {
    this.down.delete(client);
  }
}

/** When each message is submitted, and what the chaos plan may need to know while it goes on. */
export interface SubmitPacing {
  /** Unix ms at which to submit planned[i] (default: at once, one after the other) */
  readonly at?: (i: number) => number;
  /** shared with the chaos plan, which restarts clients */
  readonly gate?: SubmissionGate;
  /** How long a refused connection (the client down, restarting) is retried, as a mail client's queue would (ms). */
  readonly retryRefusedMs?: number;
}

const isRefused = (e: unknown): boolean => (e as { code?: string }).code === 'ECONNREFUSED';

/**
 * Writes sent/<id>.eml, then submits every message to its sender's client over SMTP (AUTH), each
 * at its time. A refused connection is retried (nothing was sent, so nothing can be duplicated):
 * a client being restarted is back within seconds, as an MUA's outbox would find it.
 */
export async function submitAll(dir: string, planned: Planned[], pacing: SubmitPacing = {}): Promise<void> {
  mkdirSync(join(dir, 'sent'), { recursive: true });
  for (const p of planned) writeFileSync(join(dir, 'sent', `${p.id}.eml`), p.bytes);
  const retryMs = pacing.retryRefusedMs ?? 60_000;
  const fresh = (c: ClientInfo) =>
    nodemailer.createTransport({ host: c.smtpHost, port: c.smtpPort, secure: false, ...clientTls(c), auth: { user: c.name, pass: c.password } });
  const transports = new Map<string, ReturnType<typeof nodemailer.createTransport>>();
  const transport = (c: ClientInfo) => {
    let t = transports.get(c.name);
    if (!t) transports.set(c.name, (t = fresh(c)));
    return t;
  };
  try {
    for (const [i, p] of planned.entries()) {
      const at = pacing.at?.(i);
      if (at !== undefined && at > Date.now()) await new Promise((r) => setTimeout(r, at - Date.now()));
      const giveUp = Date.now() + retryMs;
      await pacing.gate?.enter(p.client.name);
      try {
        for (;;) {
          p.submittedAt = Date.now();
          try {
            const info = await transport(p.client).sendMail({ envelope: { from: p.client.address, to: [p.to] }, raw: Buffer.from(p.bytes) });
            p.outboxId = /queued as ([0-9a-zA-Z]+)/.exec(info.response)?.[1];
            break;
          } catch (e) {
            if (!isRefused(e) || Date.now() > giveUp) {
              p.submitError = (e as Error).message;
              break;
            }
            transport(p.client).close();
            transports.delete(p.client.name);
            pacing.gate?.leave(p.client.name);
            await new Promise((r) => setTimeout(r, 250));
            await pacing.gate?.enter(p.client.name);
          }
        }
      } finally {
        pacing.gate?.leave(p.client.name);
      }
    }
  } finally {
    for (const t of transports.values()) t.close();
  }
}
