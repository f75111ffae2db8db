/**
 * `postmix testnet --serve`: the testnet's network (MXs, authorities, mixes, gateways, clients
 * holding each other's tokens), brought up exactly as the batch run does, and then kept up for a
 * person's own mail client until SIGINT/SIGTERM, when every daemon and MX (Postfix included)
 * stops and the run directory goes unless --keep. Nothing is sent by the run itself: whatever a
 * mail client submits to a client's SMTP listener travels through the mixnet (or the fallback),
 * as in the batch run.
 *
 * When ready it prints, for each user, the submission settings and where their mail lands; with
 * --json one line (a contract, see README "postmix testnet --serve"):
 *   {"ready": true, "clients": [{"address", "smtp": {"host", "port", "user", "password"}, ...}],
 *    "maildirs": {"<address>": "<path>"}, "nodes": [...], "network": {"mode", "hosts"}, ...}
 */
import { X509Certificate } from 'node:crypto';
import { chownSync, mkdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { ALICE, BOB, CAROL, startClients, type ClientInfo } from './clients.ts';
import { maildirPath } from './maildir-mx.ts';
import { DOMAINS, startMxs, type Mxs } from './mxs.ts';
import type { NetworkReport } from './netns.ts';
import type { RunningNetwork } from './network.ts';
import type { Supervisor } from './processes.ts';
import { describeLinks, geometryFor, networkPlan, Run, startMixnet, type TestnetOptions } from './run.ts';
import { GENERATED_CERT } from '../../client/tls.ts';

export interface ServeOptions extends TestnetOptions {
  /** tokens each user exports for the other (each message to a gateway domain spends one) */
  readonly tokens: number;
}

/** Batch-run options that mean nothing for a network kept up for people: refused with --serve. */
export const NOT_WITH_SERVE = [
  '--messages',
  '--unauthorized',
  '--kill-mix',
  '--restart-gateway',
  '--restart-client',
  '--mx-outage',
  '--authority-outage',
  '--soak',
  '--replay',
  '--capture',
  '--timeout',
] as const;

export interface ServedNode {
  readonly name: string;
  readonly kind: 'authority' | 'mix' | 'gateway' | 'client';
  readonly pid: number | null;
  readonly layer?: number;
  readonly domain?: string;
  readonly peer_id?: string;
  /** authority: its HTTP API; mix/gateway: libp2p listen multiaddr; client: SMTP host:port */
  readonly listen: string;
  readonly metrics?: string;
  readonly config?: string;
}

export interface ReadyLine {
  readonly ready: true;
  readonly clients: readonly {
    readonly address: string;
    readonly smtp: {
      readonly host: string;
      readonly port: number;
      readonly user: string;
      readonly password: string;
      /** off loopback (--netns): STARTTLS, AUTH only after it, with the client's self-signed certificate of this SHA-256 */
      readonly starttls?: { readonly sha256: string };
    };
    /** for `postmix sendmail -C <config>` (mutt's sendmail=, cron) */
    readonly config: string;
    /** who this user can write to and how: overlay (with the tokens it holds) or the SMTP fallback */
    readonly reaches: Readonly<Record<string, string>>;
  }[];
  readonly maildirs: Readonly<Record<string, string>>;
  readonly nodes: readonly ServedNode[];
  readonly mx: readonly { readonly domain: string; readonly host: string; readonly port: number; readonly mta: string }[];
  readonly network: NetworkReport;
  readonly run_dir: string;
  readonly kept: boolean;
  readonly pid: number;
}

const pidOf = (sup: Supervisor, name: string): number | null => sup.get(name)?.child.pid ?? null;

export function nodesOf(net: RunningNetwork, clients: readonly ClientInfo[], sup: Supervisor): ServedNode[] {
  return [
    ...net.authorities.map((a): ServedNode => ({ name: a.name, kind: 'authority', pid: pidOf(sup, a.name), listen: a.url })),
    ...net.nodes.map((n): ServedNode => ({
      name: n.name,
      kind: n.kind,
      pid: pidOf(sup, n.name),
      ...(n.layer !== undefined ? { layer: n.layer } : {}),
      ...(n.domain !== undefined ? { domain: n.domain } : {}),
      peer_id: n.peerId,
      listen: n.listen,
      metrics: n.metricsUrl,
      config: n.config,
    })),
    ...clients.map((c): ServedNode => ({ name: c.name, kind: 'client', pid: pidOf(sup, c.name), listen: `${c.smtpHost}:${c.smtpPort}`, config: c.config })),
  ];
}

/** Creates each user's Maildir before any mail (so `mutt -f` opens it at once), owned as the MX writes it. */
function prepareMaildirs(mailRoot: string, mta: string): Record<string, string> {
  const out: Record<string, string> = {};
  for (const a of [ALICE, BOB, CAROL]) {
    const dir = maildirPath(mailRoot, a);
    for (const sub of ['tmp', 'new', 'cur']) {
      mkdirSync(join(dir, sub), { recursive: true });
      // Postfix's virtual(8) delivers as nobody:nogroup (postfix.ts); the embedded MX runs as us
      if (mta === 'postfix') for (const p of [join(dir, sub), dir, join(dir, '..')]) chownSync(p, 65534, 65534);
    }
    out[a] = dir;
  }
  return out;
}

function humanReady(r: ReadyLine): string {
  const where = r.network.mode === 'netns' ? `each client on its own address in ${r.network.subnet}` : 'loopback only';
  const tls = r.network.mode === 'netns' ? 'STARTTLS, AUTH only after it' : 'no TLS';
  const lines = ['', `postmix testnet is up. Point a mail client at it (SMTP submission, AUTH PLAIN/LOGIN, ${tls}, ${where}):`, ''];
  for (const c of r.clients) {
    lines.push(`  ${c.address}`);
    lines.push(`    SMTP     host ${c.smtp.host}  port ${c.smtp.port}  user ${c.smtp.user}  password ${c.smtp.password}`);
    if (c.smtp.starttls) lines.push(`    TLS      STARTTLS; self-signed certificate, SHA-256 ${c.smtp.starttls.sha256} (msmtp: tls_fingerprint)`);
    lines.push(`    sendmail postmix sendmail -C ${c.config} -t -i`);
    for (const [to, how] of Object.entries(c.reaches)) lines.push(`    to ${to}: ${how}`);
    lines.push(
      `    e.g.     swaks --server ${c.smtp.host}:${c.smtp.port}${c.smtp.starttls ? ' --tls' : ''} --auth-user ${c.smtp.user} --auth-password ${c.smtp.password} --from ${c.address} --to ${Object.keys(c.reaches)[0]}`,
    );
  }
  lines.push('', 'Mail lands in these Maildirs (read with e.g. `mutt -f <Maildir>`):');
  for (const [a, d] of Object.entries(r.maildirs)) lines.push(`  ${a.padEnd(18)} ${d}`);
  lines.push(
    '',
    `Nodes: ${r.nodes.length} processes; configs, keys and logs under ${r.run_dir}${r.kept ? ' (kept)' : ' (removed at exit; --keep DIR keeps it)'}.`,
  );
  lines.push('Ctrl-C (SIGINT) or SIGTERM stops everything.', '');
  return lines.join('\n');
}

class Interrupted extends Error {
  constructor(readonly signal: NodeJS.Signals) {
    super(`${signal}`);
  }
}

/** Brings the network up, prints the ready line, and resolves with the exit code once a signal has stopped it all. */
export async function serveTestnet(o: ServeOptions): Promise<number> {
  const run = new Run(o);
  const geometry = geometryFor(o);
  let stopping: Promise<number> | undefined;
  let signalled: (sig: NodeJS.Signals) => void = () => undefined;
  const stopped = new Promise<NodeJS.Signals>((r) => (signalled = r));
  const interrupted = stopped.then((s) => Promise.reject(new Interrupted(s)));
  interrupted.catch(() => undefined);
  const onSignal = (sig: NodeJS.Signals) => {
    if (stopping) {
      // a second signal: whatever is left gets SIGKILL now
      for (const p of run.sup.list()) if (!p.status) p.child.kill('SIGKILL');
      return;
    }
    signalled(sig);
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);
  const stop = async (why: string, code: number): Promise<number> => {
    run.log(`${why}: stopping every node and MX`);
    await run.teardown();
    run.log(o.keep ? `stopped; run directory kept in ${run.dir}` : 'stopped; run directory removed');
    return code;
  };
  try {
    run.log(`run directory ${run.dir}${o.keep ? ' (kept)' : ''}`);
    if (run.where.mode === 'netns') run.log(`network namespaces: every node on a host of its own (${describeLinks(o)})`);
    const mxs: Mxs = await Promise.race([
      startMxs({ mta: o.mta, keep: Boolean(o.keep), host: run.where.local }, run.dir, run.mailRoot, run.closers, run.log),
      interrupted,
    ]);
    const maildirs = prepareMaildirs(run.mailRoot, o.mta);
    const plan = networkPlan(run, geometry, mxs);
    const { net, secrets } = await Promise.race([startMixnet(run, plan), interrupted]);
    const clients = await Promise.race([
      startClients(
        run.dir,
        net,
        plan,
        mxs.smarthost,
        secrets,
        { logLevel: o.logLevel, epochLength: o.epochLength, forged: 0, tokensEach: o.tokens },
        run.sup,
        run.log,
      ),
      interrupted,
    ]);
    const users = [clients.alice, clients.bob];
    const ready: ReadyLine = {
      ready: true,
      clients: users.map((c) => ({
        address: c.address,
        smtp: {
          host: c.smtpHost,
          port: c.smtpPort,
          user: c.name,
          password: c.password,
          ...(c.smtpHost === '127.0.0.1' ? {} : { starttls: { sha256: new X509Certificate(readFileSync(join(c.dir, GENERATED_CERT))).fingerprint256 } }),
        },
        config: c.config,
        reaches: {
          [c.address === ALICE ? BOB : ALICE]: `overlay (${o.tokens} tokens; the mixnet to its gateway)`,
          [CAROL]: `SMTP fallback (${DOMAINS.c} has no gateway)`,
        },
      })),
      maildirs,
      nodes: nodesOf(net, clients.all, run.sup),
      mx: [...mxs.byDomain.values()].map((m) => ({ domain: m.domain, host: run.where.local, port: m.port, mta: o.mta })),
      network: run.where.report(),
      run_dir: run.dir,
      kept: Boolean(o.keep),
      pid: process.pid,
    };
    if (o.json) process.stdout.write(JSON.stringify(ready) + '\n');
    else process.stdout.write(humanReady(ready) + '\n');
    // a node that dies is said at once (the rest keep serving); the run ends only by a signal
    for (const p of run.sup.list()) void p.exited.then(() => !stopping && run.log(`${p.name} ${p.status ?? 'exited'} (see ${p.logFile})`));
    const sig = await stopped;
    stopping = stop(`${sig}`, 0);
    return await stopping;
  } catch (e) {
    if (e instanceof Interrupted) stopping ??= stop(`${e.signal} while starting`, 130);
    else {
      run.log(`testnet --serve failed: ${(e as Error).message}`);
      stopping ??= stop('failure', 1);
    }
    return await stopping;
  } finally {
    process.removeListener('SIGINT', onSignal);
    process.removeListener('SIGTERM', onSignal);
  }
}
