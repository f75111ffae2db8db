/**
 * Following the messages of a run and judging them, from the outside: what each client says of
 * its outbox (`postmix client status --json --all --watch 1`, one process per client, a snapshot
 * a second) and what is in the recipients' Maildirs. The testnet never opens a client's database.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { createInterface } from 'node:readline';
import type { Progress } from '../../client/outbox.ts';
import { POSTMIX_BIN } from '../bin-path.ts';
import type { ClientInfo } from './clients.ts';
import { findInMaildir, type MtaKind } from './messages.ts';
import type { MessagePath, MessageReport } from './report.ts';
import type { Planned } from './submit.ts';

/** A client's status as `client status --json` prints it (binary fields left out). */
type StatusSnapshot = readonly Progress[];
type RecipientStatus = Progress['recipients'][number];

/** The latest status snapshot of each client, kept up to date by a `client status --watch` process per client. */
export class ClientWatch {
  private readonly latest = new Map<string, StatusSnapshot>();
  private readonly procs: ChildProcess[] = [];
  private readonly first: Promise<void>[] = [];
  private waiters: (() => void)[] = [];
  private reports = 0;

  constructor(clients: readonly ClientInfo[], intervalS = 1) {
    for (const c of clients) {
      const child = spawn(process.execPath, [POSTMIX_BIN, 'client', 'status', '--json', '--all', '--watch', String(intervalS), '-c', c.config], {
        stdio: ['ignore', 'pipe', 'ignore'],
      });
      this.procs.push(child);
      let seen: () => void;
      this.first.push(new Promise<void>((r) => (seen = r)));
      createInterface({ input: child.stdout! }).on('line', (line) => {
        try {
          this.latest.set(c.name, JSON.parse(line) as StatusSnapshot);
          seen();
          this.reports++;
          for (const w of this.waiters.splice(0)) w();
        } catch {
          /* a torn line: the next snapshot comes within a second */
        }
      });
      child.once('exit', () => seen());
    }
  }

  /** Resolves once every client has reported once (or its watcher ended). */
  async ready(): Promise<void> {
    await Promise.all(this.first);
  }

  /** Resolves once every client has reported again after now (at most `maxMs` later). */
  async fresh(maxMs = 5000): Promise<void> {
    const want = this.reports + this.procs.length;
    const end = Date.now() + maxMs;
    while (this.reports < want && Date.now() < end) await new Promise<void>((r) => this.waiters.push(r) && setTimeout(r, 250));
  }

  /** What the sender's client says of the message's recipient, if it has a record of it. */
  recipient(p: Planned): RecipientStatus | undefined {
    if (!p.outboxId) return undefined;
    const prog = this.latest.get(p.client.name)?.find((x) => x.message.id === p.outboxId);
    return prog?.recipients.find((r) => r.address.toLowerCase() === p.to.toLowerCase());
  }

  close(): void {
    for (const c of this.procs) c.kill('SIGTERM');
  }
}

export interface Progressing {
  submitted: number;
  inflight: number;
  /** fragments in the mixnet, by sending client */
  inflightBy: Record<string, number>;
  acked: number;
  fragments: number;
  arrived: number;
  expectArrive: number;
  refusedDone: number;
  expectRefused: number;
  /** every message where it will stay: in its mailbox with its client done, or refused */
  done: boolean;
}

export function progressOf(planned: readonly Planned[], watch: ClientWatch, mailRoot: string, mta: MtaKind): Progressing {
  const s: Progressing = {
    submitted: 0,
    inflight: 0,
    inflightBy: {},
    acked: 0,
    fragments: 0,
    arrived: 0,
    expectArrive: 0,
    refusedDone: 0,
    expectRefused: 0,
    done: true,
  };
  for (const p of planned) {
    if (p.outboxId) s.submitted++;
    const r = watch.recipient(p);
    if (r && r.path === 'overlay') {
      const delivered = r.state === 'delivered';
      s.inflight += delivered ? 0 : r.inflight;
      if (!delivered) s.inflightBy[p.client.name] = (s.inflightBy[p.client.name] ?? 0) + r.inflight;
      s.acked += delivered ? r.fragmentCount : r.acked;
      s.fragments += r.fragmentCount;
    }
    if (p.expected === 'refused') {
      s.expectRefused++;
      const finished = !p.outboxId || r?.state === 'bounced';
      if (finished) s.refusedDone++;
      else s.done = false;
    } else {
      s.expectArrive++;
      const found = findInMaildir(mailRoot, p.to, p.id, p.bytes, mta);
      const arrived = found.exact.length + found.altered.length > 0;
      if (arrived) s.arrived++;
      // done for this message when it is in the mailbox and the client knows (ACKs / relay done), or it failed for good
      const settled = r?.state === 'delivered' || r?.state === 'bounced' || !p.outboxId;
      if (!(arrived && settled) && !(r?.state === 'bounced')) s.done = false;
    }
  }
  return s;
}

export function progressLine(s: Progressing, total: number): string {
  return (
    `sent ${s.submitted}/${total} | in the mixnet ${s.inflight} fragments | ACKed ${s.acked}/${s.fragments} fragments | ` +
    `handed to MX ${s.arrived}/${s.expectArrive} | refused ${s.refusedDone}/${s.expectRefused}`
  );
}

/** Where the message went, whether intact and exactly once, and if not, why not. */
export function judge(p: Planned, watch: ClientWatch, mailRoot: string, mta: MtaKind): MessageReport {
  const r = watch.recipient(p);
  const found = findInMaildir(mailRoot, p.to, p.id, p.bytes, mta);
  const copies = found.exact.length + found.altered.length;
  const intact = found.exact.length >= 1 && found.altered.length === 0;
  let path: MessagePath;
  if (!p.outboxId) path = 'refused';
  else if (r?.state === 'bounced') path = 'refused';
  else path = r?.path === 'smtp' ? 'smtp-fallback' : 'overlay';
  const latency = found.firstArrivalMs !== null && p.submittedAt ? Math.max(0, (found.firstArrivalMs - p.submittedAt) / 1000) : null;
  let note = '';
  if (path !== p.expected) note = `took ${path}, expected ${p.expected}${r?.error ? ` (${r.error})` : p.submitError ? ` (${p.submitError})` : ''}`;
  else if (p.expected === 'refused' && copies > 0) note = `${copies} cop${copies === 1 ? 'y' : 'ies'} reached the MX`;
  else if (p.expected !== 'refused' && copies === 0) note = `not in ${p.to}'s mailbox (client state ${r?.state ?? 'unknown'})`;
  else if (p.expected !== 'refused' && !intact) note = 'altered in the mailbox';
  else if (p.expected !== 'refused' && copies > 1) note = `${copies} copies (must be exactly one)`;
  else if (p.expected === 'overlay' && r?.state !== 'delivered') note = `client never saw every ACK (state ${r?.state ?? 'unknown'})`;
  return {
    id: p.id,
    from: p.client.address,
    to: p.to,
    bytes: p.bytes.length,
    path,
    expected: p.expected,
    intact: p.expected === 'refused' ? false : intact,
    copies,
    latency_s: latency,
    ok: note === '',
    note,
  };
}
