/**
 * Test fixture (test/gateway-postfix.test.ts, gateway/group-commit.test.ts): a process that takes
 * fragment payloads (hex, one per line in argv[3]) into the gateway store at argv[2] the way the
 * gateway does (the intake under group commit: [intake] group_commit_wait_ms argv[5], default 2,
 * group_commit_max_fragments argv[6], default 64, group_commit_fsync argv[7], default the
 * gateway's), a few payloads per event-loop turn as they come
 * off a link (argv[8]: ms between turns, default none: the next turn at once); prints each payload's answer (ACK status or drop reason, one line each, in
 * payload order) as soon as the transaction holding it is durable, then prints "acked" and
 * waits — to be SIGKILLed before any hand-off, or while it is still taking payloads.
 */
import { readFileSync, writeSync } from 'node:fs';
import { deriveIssuerKeys } from '../../proto/tokens/index.ts';
import { GROUP_COMMIT_DEFAULTS, GroupCommit, type FsyncMode } from '../../gateway/group-commit.ts';
import { Intake } from '../../gateway/intake.ts';
import { GatewayStore } from '../../gateway/store.ts';

const [dbPath, payloadFile, seedHex, domain, waitMs, maxFragments, fsync, turnMs] = process.argv.slice(2);
const store = new GatewayStore(dbPath!);
const intake = new Intake(store, {
  domains: [domain!],
  issuer: deriveIssuerKeys(new Uint8Array(Buffer.from(seedHex!, 'hex'))),
  maxMessageBytes: 1 << 20,
  reassemblyTtlMs: 3_600_000,
});
const commits = new GroupCommit(store, intake, {
  maxWaitMs: Number(waitMs ?? 2),
  maxFragments: Number(maxFragments ?? 64),
  fsync: (fsync ?? GROUP_COMMIT_DEFAULTS.fsync) as FsyncMode,
});
const payloads = readFileSync(payloadFile!, 'utf8')
  .split('\n')
  .filter(Boolean)
  .map((l) => new Uint8Array(Buffer.from(l, 'hex')));
let answered = 0;
// written synchronously: a line the parent reads is an answer the gateway gave
const answer = (line: string) => {
  writeSync(1, `${line}\n`);
  if (++answered === payloads.length) writeSync(1, 'acked\n');
};
const PER_TURN = 4;
let next = 0;
const feed = () => {
  for (let k = 0; k < PER_TURN && next < payloads.length; k++)
    commits.submit(payloads[next++]!, (r) => answer(String(r.kind === 'ack' ? r.status : r.kind === 'drop' ? r.reason : r.kind)));
  if (next < payloads.length) {
    if (turnMs === undefined) setImmediate(feed);
    else setTimeout(feed, Number(turnMs));
  }
};
feed();
setInterval(() => {}, 1000);
