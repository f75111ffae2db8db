/**
 * `postmix testnet`: a whole postmix network on loopback, delivering real mail.
 *
 *   3 directory authorities (2-of-3) · L layers × W mix nodes · a gateway for alpha.test and one
 *   for beta.test, each in front of its own MX (a Maildir-writing SMTP server, or Postfix) ·
 *   gamma.test with no gateway, reached through an SMTP relay (the senders' provider) ·
 *   client A (alice@alpha.test) and client B (bob@beta.test): each requests tokens from its own
 *   gateway through its client (blinded) and exports one bundle for the other, who imports it ·
 *   optionally client M (mallory@alpha.test) holding forged tokens.
 *
 * Every node is its own `postmix … run` process. The run submits messages over SMTP to the
 * clients, follows them (sent, in the mixnet, ACKed, in the recipient's Maildir), and exits 0
 * only when every message went where it should, intact, exactly once. Chaos on request: SIGKILL
 * mixes mid-run, SIGKILL and restart a gateway, take an MX down; and wire checks: capture every
 * link's frames (one length network-wide) and re-inject captured frames (dropped as replays).
 */
import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { copyFileSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import nodemailer from 'nodemailer';
import { stringify } from 'smol-toml';
import { Outbox } from '../../client/outbox.ts';
import { DEFAULT_GEOMETRY, packetSizes, validateGeometry } from '../../proto/sphinx/geometry.ts';
import { CAPTURE_ENV } from '../../runtime/link/index.ts';
import { startMaildirMx } from './maildir-mx.ts';
import { findInMaildir, makeMessage, type MtaKind } from './messages.ts';
import { scrape, sumMetric } from './metrics.ts';
import { startGateways, startNetwork, waitForFullDocument, type GatewayInfo, type NetworkPlan, type NodeRecord } from './network.ts';
import { freePort, freePorts } from './ports.ts';
import { createPostfix, postfixAvailable } from './postfix.ts';
import { Supervisor } from './processes.ts';
import { injectReplays, type ReplayReport } from './replay.ts';
import { renderTable, totals, type ChaosReport, type MessagePath, type MessageReport, type TestnetReport, type TokensReport } from './report.ts';
import { sizeLeaks, summarizeCapture, type WireReport } from './wire.ts';
import { POSTMIX_BIN } from '../bin-path.ts';

export interface TestnetOptions {
  readonly messages: number;
  readonly size: number;
  readonly unauthorized: number;
  readonly killMix: number;
  /** SIGKILL the beta.test gateway while fragments are in flight, restart it after this many ms (0: off) */
  readonly restartGatewayMs: number;
  /** take alpha.test's MX down before submission for at least this many seconds (0: off) */
  readonly mxOutageS: number;
  /** record every link's frames (POSTMIX_LINK_CAPTURE) and check they all have one length */
  readonly capture: boolean;
  /** keep the capture here (implies capture), with nodes.json and testnet.json, for `postmix sim analyze` */
  readonly captureDir?: string;
  /** re-inject this many captured frames into a mix; each must be dropped as a replay (implies capture) */
  readonly replay: number;
  readonly json: boolean;
  readonly keep?: string;
  readonly mta: MtaKind;
  readonly layers: number;
  readonly layerSize: number;
  readonly epochLength: number;
  readonly meanDelayMs: number;
  /** Loopix rates per client (λ_P, λ_L, λ_D) and per mix (λ_M), per second */
  readonly lambdaP: number;
  readonly lambdaL: number;
  readonly lambdaD: number;
  readonly lambdaM: number;
  /** λ_G: each gateway's loop cover rate, per second */
  readonly lambdaG: number;
  /** Sphinx payload size of the network document (bytes) */
  readonly payloadSize: number;
  readonly timeoutS: number;
  readonly logLevel: string;
}

export const TESTNET_DEFAULTS: TestnetOptions = {
  messages: 2,
  size: 6000,
  unauthorized: 0,
  killMix: 0,
  restartGatewayMs: 0,
  mxOutageS: 0,
  capture: false,
  replay: 0,
  json: false,
  mta: 'embedded',
  layers: 3,
  layerSize: 3,
  epochLength: 20,
  meanDelayMs: 50,
  lambdaP: 10,
  lambdaL: 1,
  lambdaD: 1,
  lambdaM: 0.5,
  lambdaG: 0.5,
  payloadSize: DEFAULT_GEOMETRY.payloadSize,
  timeoutS: 240,
  logLevel: 'info',
};

interface ClientInfo {
  readonly name: string;
  readonly address: string;
  readonly dir: string;
  readonly config: string;
  readonly smtpPort: number;
}

interface Planned {
  readonly id: string;
  readonly client: ClientInfo;
  readonly to: string;
  readonly expected: MessagePath;
  readonly bytes: Uint8Array;
  submittedAt: number;
  outboxId?: string;
  submitError?: string;
}

const DOMAINS = { a: 'alpha.test', b: 'beta.test', c: 'gamma.test' } as const;

/** An MX the run can take down and bring back on the same port. */
interface RunningMx {
  readonly domain: string;
  readonly port: number;
  stop(): Promise<void>;
  start(): Promise<void>;
  close(): Promise<void>;
}

async function embeddedMx(domain: string, root: string): Promise<RunningMx> {
  let server = await startMaildirMx({ host: '127.0.0.1', port: 0, domains: [domain], root });
  const port = server.port;
  let up = true;
  const stop = async () => {
    if (!up) return;
    up = false;
    await server.close();
  };
  return {
    domain,
    port,
    stop,
    start: async () => {
      if (up) return;
      server = await startMaildirMx({ host: '127.0.0.1', port, domains: [domain], root });
      up = true;
    },
    close: stop,
  };
}

async function postfixMx(domain: string, mailboxes: readonly string[], runDir: string, mailRoot: string, keep: boolean): Promise<RunningMx> {
  const pf = createPostfix({
    dir: join(runDir, 'postfix', domain),
    name: `mx-${domain.split('.')[0]!}`,
    port: await freePort(),
    // the MX knows its users (virtual(8) delivery); anyone else at the domain is refused
    role: { kind: 'mx', domains: [domain], mailRoot, mailboxes },
  });
  await pf.start();
  return { domain, port: pf.port, stop: () => pf.stop(), start: () => pf.start(), close: () => (keep ? pf.stop() : pf.destroy()) };
}

/** Runs one `postmix` admin command, as an operator would type it. */
function runCli(args: string[]): Promise<string> {
  return new Promise((res, rej) => {
    execFile(process.execPath, [POSTMIX_BIN, ...args], { encoding: 'utf8', timeout: 120_000 }, (err, stdout, stderr) => {
      if (err) rej(new Error(`postmix ${args.join(' ')} failed: ${stderr || stdout || err.message}`));
      else res(stdout);
    });
  });
}

export async function runTestnet(o: TestnetOptions): Promise<TestnetReport> {
  const t0 = Date.now();
  const log = (s: string) => {
    const line = `[testnet ${((Date.now() - t0) / 1000).toFixed(1).padStart(5)} s] ${s}\n`;
    if (o.json) process.stderr.write(line);
    else process.stdout.write(line);
  };
  const dir = o.keep ? resolve(o.keep) : mkdtempSync(join(tmpdir(), 'postmix-testnet-'));
  mkdirSync(dir, { recursive: true });
  const logs = join(dir, 'logs');
  mkdirSync(logs, { recursive: true });
  const mailRoot = join(dir, 'mail');
  const captureDir = o.captureDir ?? (o.capture || o.replay > 0 ? join(dir, 'capture') : undefined);
  const sup = new Supervisor(logs, captureDir ? { ...process.env, [CAPTURE_ENV]: captureDir } : process.env);
  const closers: (() => Promise<void>)[] = [];
  const killed: string[] = [];
  const chaos: { restarted: { name: string; down_s: number }[]; mx_outage: ChaosReport['mx_outage']; errors: string[] } = {
    restarted: [],
    mx_outage: null,
    errors: [],
  };
  let wire: WireReport | null = null;
  let nodeRecords: readonly NodeRecord[] = [];
  const bundles: TokensReport['bundles'][number][] = [];
  let replay: ReplayReport | null = null;
  const background: Promise<void>[] = [];
  let messages: MessageReport[] = [];
  let ok = false;
  // a route is one mix per layer + the gateway, and so is a mix's loop: L+1 hops
  const geometry = validateGeometry({ ...DEFAULT_GEOMETRY, maxHops: Math.max(DEFAULT_GEOMETRY.maxHops, o.layers + 1), payloadSize: o.payloadSize });
  const topology = {
    authorities: 3,
    threshold: 2,
    layers: o.layers,
    mixes_per_layer: o.layerSize,
    gateways: { [DOMAINS.a]: 'gw-alpha', [DOMAINS.b]: 'gw-beta' },
    no_gateway: DOMAINS.c,
    mta: o.mta,
    epoch_length_s: o.epochLength,
    mean_delay_per_hop_ms: o.meanDelayMs,
    rates_per_s: { lambda_p: o.lambdaP, lambda_l: o.lambdaL, lambda_d: o.lambdaD, lambda_m: o.lambdaM, lambda_g: o.lambdaG },
    payload_bytes: o.payloadSize,
    packet_bytes: packetSizes(geometry).packet,
    // what each client sends through the overlay: the simulator models this load and its ACKs
    workload: { overlay_messages_per_client: o.messages, message_bytes: o.size },
  };
  const onSignal = () => {
    // the MXs too: a private Postfix left running would outlive the run
    void sup
      .stopAll(2000)
      .then(async () => {
        for (const c of closers.reverse()) await c().catch(() => undefined);
        if (!o.keep) rmSync(dir, { recursive: true, force: true });
      })
      .then(() => process.exit(130));
  };
  process.once('SIGINT', onSignal);
  process.once('SIGTERM', onSignal);

  try {
    log(`run directory ${dir}${o.keep ? ' (kept)' : ''}`);
    // MXs: one per gateway domain, and the senders' provider relay that reaches gamma.test
    const mxs = new Map<string, { host: string; port: number }>();
    const mxByDomain = new Map<string, RunningMx>();
    if (o.mta === 'postfix') {
      const why = postfixAvailable();
      if (why) throw new Error(`--mta postfix: ${why}`);
    }
    for (const d of [DOMAINS.a, DOMAINS.b, DOMAINS.c]) {
      const users = { [DOMAINS.a]: ['alice'], [DOMAINS.b]: ['bob'], [DOMAINS.c]: ['carol'] }[d]!.map((u) => `${u}@${d}`);
      const mx = o.mta === 'postfix' ? await postfixMx(d, users, dir, mailRoot, Boolean(o.keep)) : await embeddedMx(d, mailRoot);
      closers.push(() => mx.close());
      mxByDomain.set(d, mx);
      mxs.set(d, { host: '127.0.0.1', port: mx.port });
    }
    // the senders' provider, which the clients use as smarthost for the SMTP fallback: with
    // Postfix, a relay of its own (STARTTLS, self-signed) in front of gamma.test's MX; embedded,
    // gamma.test's MX itself takes the clients' submissions
    let smarthost: { host: string; port: number; require_tls: boolean; insecure_tls: boolean };
    if (o.mta === 'postfix') {
      const relay = createPostfix({
        dir: join(dir, 'postfix', 'relay'),
        name: 'provider-relay',
        port: await freePort(),
        role: { kind: 'relay', relayPort: mxs.get(DOMAINS.c)!.port },
      });
      await relay.start();
      closers.push(() => (o.keep ? relay.stop() : relay.destroy()));
      smarthost = { host: '127.0.0.1', port: relay.port, require_tls: true, insecure_tls: true };
      log(
        `MX: private Postfix instances (virtual(8) Maildir delivery) for alpha.test, beta.test and gamma.test (ports ${[...mxs.values()].map((m) => m.port).join(', ')}); ` +
          `the senders' provider relay, also Postfix (STARTTLS), on port ${relay.port}`,
      );
    } else {
      smarthost = { host: '127.0.0.1', port: mxs.get(DOMAINS.c)!.port, require_tls: false, insecure_tls: false };
      log('MX: embedded SMTP servers writing Maildirs for alpha.test, beta.test, and gamma.test (which also takes the SMTP fallback)');
    }

    const plan: NetworkPlan = {
      dir,
      authorities: 3,
      threshold: 2,
      layers: o.layers,
      layerSize: o.layerSize,
      gatewayDomains: [DOMAINS.a, DOMAINS.b],
      epochLength: o.epochLength,
      grace: Math.max(5, Math.ceil(o.epochLength * 0.75)),
      geometry,
      mixing: { lambdaP: o.lambdaP, lambdaL: o.lambdaL, lambdaD: o.lambdaD, lambdaM: o.lambdaM, lambdaG: o.lambdaG, mu: 1000 / o.meanDelayMs },
      mx: mxs,
      logLevel: o.logLevel,
    };
    const alice = `alice@${DOMAINS.a}`;
    const bob = `bob@${DOMAINS.b}`;
    const carol = `carol@${DOMAINS.c}`;
    const tokensEach = o.messages + 2;
    // the recipients exist at their gateways, each with the per-user secret its provider gives it
    const secrets = new Map<string, string>();
    async function prepareGateways(gateways: readonly GatewayInfo[]): Promise<void> {
      const gwA = gateways.find((g) => g.domain === DOMAINS.a)!;
      const gwB = gateways.find((g) => g.domain === DOMAINS.b)!;
      for (const [gw, user] of [
        [gwA, alice],
        [gwB, bob],
      ] as const) {
        const out = await runCli(['gateway', 'user', 'add', '-c', gw.config, user]);
        const secret = /secret: (\S+)/.exec(out)?.[1];
        if (!secret) throw new Error(`gateway user add ${user}: no secret in ${JSON.stringify(out)}`);
        secrets.set(user, secret);
      }
      log(`users ${alice} and ${bob} added at their gateways (each gets its per-user secret for the issuance endpoint)`);
    }
    const net = await startNetwork(plan, sup, log, (gws) => prepareGateways(gws));
    nodeRecords = net.nodes;

    await startGateways(net, sup);
    log(`${net.mixes.length} mix nodes and ${net.gateways.length} gateways listening`);
    await waitForFullDocument(net, plan, (o.epochLength * 4 + 60) * 1000, log);
    if (captureDir) log(`link capture on: every node records its frames under ${captureDir}`);

    // clients
    const clientPorts = await freePorts(3);
    const mkClient = (name: string, address: string, port: number, home: string): ClientInfo => {
      const cdir = join(dir, name);
      mkdirSync(cdir, { recursive: true });
      const config = join(cdir, 'client.toml');
      writeFileSync(
        config,
        stringify({
          data_dir: cdir,
          log: { level: o.logLevel },
          smtp: { host: '127.0.0.1', port, user: name, password: `pw-${name}` },
          smarthost: { ...smarthost, secure: false, retry_base_ms: 1000 },
          bounce: { maildir: join(cdir, 'Maildir') },
          network: {
            document: join(cdir, 'document.bin'),
            authority_urls: net.authorities.map((a) => a.url),
            authorities: net.authorities.map((a) => a.publicKey),
            threshold: plan.threshold,
            refresh_s: Math.max(1, Math.floor(o.epochLength / 4)),
            home_gateway: home,
          },
          overlay: { max_attempts: 12, timeout_factor: 3, timeout_margin_ms: 3000 },
          // a user of a gateway requests its own tokens (mallory is nobody's user)
          ...(secrets.has(address) ? { tokens: { address, secret: secrets.get(address)! } } : {}),
        }) + '\n',
      );
      return { name, address, dir: cdir, config, smtpPort: port };
    };
    const cA = mkClient('client-alice', alice, clientPorts[0]!, DOMAINS.a);
    const cB = mkClient('client-bob', bob, clientPorts[1]!, DOMAINS.b);
    const clients = [cA, cB];
    // each user requests tokens from its own gateway through its client (blinded: the gateway
    // never sees them) and exports one bundle per contact; the contact imports it
    const exportFor = async (c: ClientInfo, contact: ClientInfo): Promise<string> => {
      const out = join(dir, `tokens-${c.address}-for-${contact.address}.json`);
      const t = Date.now();
      await runCli(['client', 'tokens', 'export', '--for', contact.address, '--count', String(tokensEach), '--out', out, '-c', c.config]);
      bundles.push({ recipient: c.address, contact: contact.address, tokens: tokensEach, export_ms: Date.now() - t });
      return out;
    };
    const [aliceForBob, bobForAlice] = await Promise.all([exportFor(cA, cB), exportFor(cB, cA)]);
    const imports = [
      runCli(['client', 'tokens', 'import', bobForAlice, '-c', cA.config]),
      runCli(['client', 'tokens', 'import', aliceForBob, '-c', cB.config]),
    ];
    log(
      `${alice} and ${bob} each requested ${tokensEach} tokens from their own gateway through their client (blinded, RFC 9497 POPRF, proof checked against the document's issuer key) ` +
        `and exported one bundle for the other (${bundles.map((x) => `${x.export_ms} ms`).join(', ')})`,
    );
    let cM: ClientInfo | undefined;
    if (o.unauthorized > 0) {
      cM = mkClient('client-mallory', `mallory@${DOMAINS.a}`, clientPorts[2]!, DOMAINS.a);
      clients.push(cM);
      // forged tokens: the right format and issuer key, outputs the gateway never computed
      const real = JSON.parse(readFileSync(bobForAlice, 'utf8')) as { epochs: { tokens: string[] }[] };
      const group = real.epochs[0]!;
      const epochHex = group.tokens[0]!.slice(0, 8);
      const forged = {
        ...real,
        epochs: [{ ...group, tokens: Array.from({ length: o.unauthorized }, () => epochHex + randomBytes(96).toString('hex')) }],
      };
      const fpath = join(dir, 'forged-tokens-for-bob.json');
      writeFileSync(fpath, JSON.stringify(forged));
      imports.push(runCli(['client', 'tokens', 'import', fpath, '-c', cM.config]));
    }
    await Promise.all(imports);
    for (const c of clients) sup.start(c.name, ['client', 'run', '--config', c.config]);
    await Promise.all(clients.map((c) => sup.waitForLog(c.name, /SMTP submission listening|listening/, 60_000)));
    log(`clients up: ${clients.map((c) => `${c.name} (SMTP 127.0.0.1:${c.smtpPort})`).join(', ')}`);

    if (o.mxOutageS > 0) {
      // down before anything is sent, back only after the gateway has seen it fail and the
      // outage has lasted its time: the run proves hand-off retries, not lucky timing
      const mx = mxByDomain.get(DOMAINS.a)!;
      const gw = net.nodes.find((n) => n.kind === 'gateway' && n.domain === DOMAINS.a)!;
      await mx.stop();
      const downAt = Date.now();
      log(`MX for ${DOMAINS.a} is DOWN (for at least ${o.mxOutageS} s, until ${gw.name} has failed to hand off)`);
      background.push(
        (async () => {
          let failures = 0;
          const until = Date.now() + o.timeoutS * 1000;
          while (Date.now() < until) {
            failures = sumMetric(await scrape(gw.metricsUrl).catch(() => []), 'postmix_gateway_handoff_failures_total');
            if (failures > 0 && Date.now() - downAt >= o.mxOutageS * 1000) break;
            await new Promise((r) => setTimeout(r, 500));
          }
          await mx.start();
          chaos.mx_outage = { domain: DOMAINS.a, down_s: (Date.now() - downAt) / 1000, handoff_failures: failures };
          log(`MX for ${DOMAINS.a} is back after ${chaos.mx_outage.down_s.toFixed(1)} s (${gw.name} counted ${failures} failed hand-offs meanwhile)`);
        })().catch((e: unknown) => {
          chaos.errors.push(`mx outage: ${(e as Error).message}`);
        }),
      );
    }

    // what to send: every run reaches both gateway domains and the domain without a gateway
    const planned: Planned[] = [];
    let seq = 0;
    const add = (client: ClientInfo, to: string, expected: MessagePath) => {
      const id = `m${++seq}-${randomBytes(4).toString('hex')}`;
      planned.push({ id, client, to, expected, bytes: makeMessage({ id, from: client.address, to, size: o.size }), submittedAt: 0 });
    };
    for (let i = 0; i < o.messages; i++) {
      add(cA, bob, 'overlay');
      add(cB, alice, 'overlay');
    }
    add(cA, carol, 'smtp-fallback');
    add(cB, carol, 'smtp-fallback');
    if (cM) for (let i = 0; i < o.unauthorized; i++) add(cM, bob, 'refused');

    // what was submitted, byte for byte, so anyone (the e2e test, an operator with --keep) can compare a Maildir file with it
    mkdirSync(join(dir, 'sent'), { recursive: true });
    for (const p of planned) writeFileSync(join(dir, 'sent', `${p.id}.eml`), p.bytes);

    const transports = new Map(
      clients.map((c) => [
        c.name,
        nodemailer.createTransport({ host: '127.0.0.1', port: c.smtpPort, secure: false, ignoreTLS: true, auth: { user: c.name, pass: `pw-${c.name}` } }),
      ]),
    );
    for (const p of planned) {
      p.submittedAt = Date.now();
      try {
        const info = await transports.get(p.client.name)!.sendMail({ envelope: { from: p.client.address, to: [p.to] }, raw: Buffer.from(p.bytes) });
        p.outboxId = /queued as ([0-9a-zA-Z]+)/.exec(info.response)?.[1];
      } catch (e) {
        p.submitError = (e as Error).message;
      }
    }
    for (const t of transports.values()) t.close();
    log(`submitted ${planned.length} messages (${o.size} bytes each) over SMTP to the clients`);

    if (captureDir && o.replay > 0) {
      try {
        replay = await injectReplays({
          captureDir,
          nodes: net.nodes,
          count: o.replay,
          maxAgeMs: Math.min(5000, (o.epochLength * 1000) / 2),
          isAlive: (name) => !sup.get(name)?.status,
        });
        log(`replay: ${replay.note}; ${replay.target} dropped ${replay.dropped_as_replay}/${replay.injected} as replays`);
      } catch (e) {
        chaos.errors.push((e as Error).message);
        log(`replay check failed: ${(e as Error).message}`);
      }
    }

    // follow them
    const outboxes = new Map(clients.map((c) => [c.name, new Outbox(join(c.dir, 'outbox.sqlite'))]));
    closers.push(async () => {
      for (const ob of outboxes.values()) ob.close();
    });
    const deadline = Date.now() + o.timeoutS * 1000;
    let lastLine = '';
    let killedYet = o.killMix === 0;
    let restartedYet = o.restartGatewayMs === 0;
    for (;;) {
      const st = status(planned, outboxes, mailRoot, o.mta);
      const line =
        `sent ${st.submitted}/${planned.length} | in the mixnet ${st.inflight} fragments | ACKed ${st.acked}/${st.fragments} fragments | ` +
        `handed to MX ${st.arrived}/${st.expectArrive} | refused ${st.refusedDone}/${st.expectRefused}`;
      if (line !== lastLine) log(line);
      lastLine = line;
      if (!killedYet && (st.inflight > 0 || st.acked > 0)) {
        killedYet = true;
        for (const name of pickVictims(net.mixes, o.killMix, o.layers)) {
          await sup.kill(name);
          killed.push(name);
        }
        log(`SIGKILLed ${killed.join(', ')} mid-run: their queued packets are lost; clients must resend`);
      }
      if (!restartedYet && (st.inflight > 0 || st.acked < st.fragments)) {
        restartedYet = true;
        const gw = net.gateways.find((g) => g.domain === DOMAINS.b)!;
        const at = Date.now();
        log(`SIGKILL ${gw.name} with fragments in flight; restarting it in ${o.restartGatewayMs} ms`);
        background.push(
          sup.restart(gw.name, /gateway listening/, o.restartGatewayMs).then(
            () => {
              chaos.restarted.push({ name: gw.name, down_s: (Date.now() - at) / 1000 });
              log(`${gw.name} is back (down ${((Date.now() - at) / 1000).toFixed(1)} s): same keys, same queue database`);
            },
            (e: unknown) => {
              chaos.errors.push(`restart ${gw.name}: ${(e as Error).message}`);
            },
          ),
        );
      }
      if (st.done || Date.now() > deadline) break;
      await new Promise((r) => setTimeout(r, 1000));
    }

    await Promise.all(background);
    messages = planned.map((p) => judge(p, outboxes, mailRoot, o.mta));
    ok = messages.every((m) => m.ok) && chaos.errors.length === 0;
    if (o.restartGatewayMs > 0 && chaos.restarted.length === 0) ok = false;
    if (o.mxOutageS > 0 && chaos.mx_outage === null) ok = false;
    if (replay && replay.dropped_as_replay !== replay.injected) ok = false;
    if (o.replay > 0 && !replay) ok = false;
  } finally {
    process.removeListener('SIGINT', onSignal);
    process.removeListener('SIGTERM', onSignal);
    await sup.stopAll();
    if (captureDir) {
      // after stopAll: every link has flushed its capture on the way down
      const kinds = new Map<string, 'mix' | 'gateway'>(nodeRecords.map((n) => [n.peerId, n.kind]));
      wire = summarizeCapture(captureDir, (peer) => kinds.get(peer) ?? 'client');
      if (sizeLeaks(wire).length > 0) ok = false;
    }
    for (const c of closers.reverse()) await c().catch(() => undefined);
    if (o.captureDir && existsSync(join(dir, 'nodes.json'))) copyFileSync(join(dir, 'nodes.json'), join(o.captureDir, 'nodes.json'));
    if (!o.keep) rmSync(dir, { recursive: true, force: true });
  }
  const report: TestnetReport = {
    ok,
    wall_s: (Date.now() - t0) / 1000,
    topology,
    messages,
    totals: totals(messages),
    chaos: { killed, restarted: chaos.restarted, mx_outage: chaos.mx_outage, errors: chaos.errors },
    wire,
    replay,
    tokens: { issued_via: 'client', bundles },
    run_dir: o.keep ? dir : null,
  };
  if (o.captureDir) writeFileSync(join(o.captureDir, 'testnet.json'), JSON.stringify({ ok, topology, messages }) + '\n');
  if (o.json) process.stdout.write(JSON.stringify(report) + '\n');
  else process.stdout.write('\n' + renderTable(report) + '\n');
  return report;
}

/** K mixes to kill, spread over the layers so every layer keeps at least one live mix. */
export function pickVictims(mixes: readonly string[], k: number, layers: number): string[] {
  const byLayer: string[][] = Array.from({ length: layers }, (_, l) => mixes.filter((m) => m.startsWith(`mix-l${l + 1}-`)));
  const out: string[] = [];
  for (let round = 0; out.length < k; round++) {
    let progressed = false;
    for (const layer of byLayer) {
      if (out.length >= k) break;
      if (layer.length - round > 1) {
        out.push(layer[round]!);
        progressed = true;
      }
    }
    if (!progressed) throw new Error(`--kill-mix ${k} would leave a layer empty (${mixes.length} mixes in ${layers} layers)`);
  }
  return out;
}

interface Status {
  submitted: number;
  inflight: number;
  acked: number;
  fragments: number;
  arrived: number;
  expectArrive: number;
  refusedDone: number;
  expectRefused: number;
  done: boolean;
}

function recipientRow(p: Planned, outboxes: Map<string, Outbox>) {
  if (!p.outboxId) return undefined;
  const ob = outboxes.get(p.client.name)!;
  const prog = ob.progress(true).find((x) => x.message.id === p.outboxId);
  return prog?.recipients.find((r) => r.address.toLowerCase() === p.to.toLowerCase());
}

function status(planned: readonly Planned[], outboxes: Map<string, Outbox>, mailRoot: string, mta: MtaKind): Status {
  const s: Status = { submitted: 0, inflight: 0, acked: 0, fragments: 0, arrived: 0, expectArrive: 0, refusedDone: 0, expectRefused: 0, done: true };
  for (const p of planned) {
    if (p.outboxId) s.submitted++;
    const r = recipientRow(p, outboxes);
    if (r && r.path === 'overlay') {
      const delivered = r.state === 'delivered';
      s.inflight += delivered ? 0 : r.inflight;
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

function judge(p: Planned, outboxes: Map<string, Outbox>, mailRoot: string, mta: MtaKind): MessageReport {
  const r = recipientRow(p, outboxes);
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
