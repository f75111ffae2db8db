/**
 * The testnet's users and clients: alice@alpha.test and bob@beta.test exist at their gateways;
 * each requests tokens from its own gateway through its client (blinded: the gateway never sees
 * them) and exports one bundle for the other, who imports it (as a recipient gives its contacts
 * permission); mallory, when asked for, holds forged tokens for bob. Every step is the `postmix`
 * command an operator or user would run.
 */
import { randomBytes } from 'node:crypto';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { stringify } from 'smol-toml';
import { DOMAINS, type Smarthost } from './mxs.ts';
import type { GatewayInfo, NetworkPlan, RunningNetwork } from './network.ts';
import { freePorts } from './ports.ts';
import { runCli, type Supervisor } from './processes.ts';
import type { TokensReport } from './report.ts';
import { submissionTlsOptions } from '../../client/submit.ts';
import { GENERATED_CERT } from '../../client/tls.ts';

export const ALICE = `alice@${DOMAINS.a}`;
export const BOB = `bob@${DOMAINS.b}`;
export const CAROL = `carol@${DOMAINS.c}`;

export interface ClientInfo {
  readonly name: string;
  readonly address: string;
  readonly dir: string;
  readonly config: string;
  /** where its SMTP submission listens (127.0.0.1, or its namespace's address with --netns) */
  readonly smtpHost: string;
  readonly smtpPort: number;
  readonly password: string;
  /** its Prometheus endpoint (the chaos plan reads which document it routes by) */
  readonly metricsUrl: string;
}

/**
 * How the testnet submits to a client: on loopback as before; off it (--netns, where the client
 * has smtp.allow_remote and so AUTH only after STARTTLS) with STARTTLS, pinning the certificate
 * the client made in its data_dir at its first start.
 */
export function clientTls(c: ClientInfo): ReturnType<typeof submissionTlsOptions> {
  return submissionTlsOptions(c.smtpHost === '127.0.0.1' ? undefined : readFileSync(join(c.dir, GENERATED_CERT), 'utf8'));
}

export interface Clients {
  readonly alice: ClientInfo;
  readonly bob: ClientInfo;
  /** with --unauthorized: holds forged tokens for bob */
  readonly mallory: ClientInfo | undefined;
  readonly all: readonly ClientInfo[];
  /** the bundles each user's client exported for its contact */
  readonly bundles: TokensReport['bundles'];
}

/** Per-user secrets for the issuance endpoint, by address. */
export type UserSecrets = ReadonlyMap<string, string>;

/** Adds alice and bob at their gateways (before the gateways start); each gets the per-user secret its provider gives it. */
export async function addUsers(gateways: readonly GatewayInfo[], log: (s: string) => void): Promise<UserSecrets> {
  const secrets = new Map<string, string>();
  for (const [domain, user] of [
    [DOMAINS.a, ALICE],
    [DOMAINS.b, BOB],
  ] as const) {
    const gw = gateways.find((g) => g.domain === domain)!;
    const out = await runCli(['gateway', 'user', 'add', '-c', gw.config, user]);
    const secret = /secret: (\S+)/.exec(out)?.[1];
    if (!secret) throw new Error(`gateway user add ${user}: no secret in ${JSON.stringify(out)}`);
    secrets.set(user, secret);
  }
  log(`users ${ALICE} and ${BOB} added at their gateways (each gets its per-user secret for the issuance endpoint)`);
  return secrets;
}

export interface ClientSettings {
  readonly logLevel: string;
  readonly epochLength: number;
  /** with --unauthorized N: N forged tokens for mallory */
  readonly forged: number;
  /** tokens each user exports for its contact */
  readonly tokensEach: number;
}

/**
 * Writes each client's config; each user requests its tokens and exports a bundle for the other,
 * who imports it; then starts the clients and waits for their SMTP submission servers.
 */
export async function startClients(
  dir: string,
  net: RunningNetwork,
  plan: NetworkPlan,
  smarthost: Smarthost,
  secrets: UserSecrets,
  o: ClientSettings,
  sup: Supervisor,
  log: (s: string) => void,
): Promise<Clients> {
  const ports = await freePorts(6);
  const mk = (name: string, address: string, port: number, metricsPort: number, home: string): ClientInfo => {
    const cdir = join(dir, name);
    mkdirSync(cdir, { recursive: true });
    const config = join(cdir, 'client.toml');
    // the submission password of a testnet user: random, as a provider would hand it out; hex,
    // since a base64url one starts with '-' one time in 64 and mail clients' command lines
    // (swaks --auth-password, msmtp's passwordeval) read that as an option
    const password = randomBytes(16).toString('hex');
    const host = plan.host(name);
    writeFileSync(
      config,
      stringify({
        data_dir: cdir,
        log: { level: o.logLevel },
        // off loopback (--netns) the listeners must be allowed there; SMTP has AUTH either way
        smtp: { host, port, user: name, password, ...(host === '127.0.0.1' ? {} : { allow_remote: true }) },
        metrics: { enabled: true, host, port: metricsPort, ...(host === '127.0.0.1' ? {} : { allow_remote: true }) },
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
    return { name, address, dir: cdir, config, smtpHost: host, smtpPort: port, password, metricsUrl: `http://${host}:${metricsPort}/metrics` };
  };
  const alice = mk('client-alice', ALICE, ports[0]!, ports[3]!, DOMAINS.a);
  const bob = mk('client-bob', BOB, ports[1]!, ports[4]!, DOMAINS.b);
  const all = [alice, bob];
  // each user requests tokens from its own gateway through its client (blinded: the gateway
  // never sees them) and exports one bundle per contact; the contact imports it
  const bundles: TokensReport['bundles'][number][] = [];
  const exportFor = async (c: ClientInfo, contact: ClientInfo): Promise<string> => {
    const out = join(dir, `tokens-${c.address}-for-${contact.address}.json`);
    const t = Date.now();
    await runCli(['client', 'tokens', 'export', '--for', contact.address, '--count', String(o.tokensEach), '--out', out, '-c', c.config]);
    bundles.push({ recipient: c.address, contact: contact.address, tokens: o.tokensEach, export_ms: Date.now() - t });
    return out;
  };
  const [aliceForBob, bobForAlice] = await Promise.all([exportFor(alice, bob), exportFor(bob, alice)]);
  const imports = [
    runCli(['client', 'tokens', 'import', bobForAlice, '-c', alice.config]),
    runCli(['client', 'tokens', 'import', aliceForBob, '-c', bob.config]),
  ];
  log(
    `${ALICE} and ${BOB} each requested ${o.tokensEach} tokens from their own gateway through their client (blinded, RFC 9497 POPRF, proof checked against the document's issuer key) ` +
      `and exported one bundle for the other (${bundles.map((x) => `${x.export_ms} ms`).join(', ')})`,
  );
  let mallory: ClientInfo | undefined;
  if (o.forged > 0) {
    mallory = mk('client-mallory', `mallory@${DOMAINS.a}`, ports[2]!, ports[5]!, DOMAINS.a);
    all.push(mallory);
    // forged tokens: the right format and issuer key, outputs the gateway never computed
    const real = JSON.parse(readFileSync(bobForAlice, 'utf8')) as { epochs: { tokens: string[] }[] };
    const group = real.epochs[0]!;
    const epochHex = group.tokens[0]!.slice(0, 8);
    const forged = { ...real, epochs: [{ ...group, tokens: Array.from({ length: o.forged }, () => epochHex + randomBytes(96).toString('hex')) }] };
    const fpath = join(dir, 'forged-tokens-for-bob.json');
    writeFileSync(fpath, JSON.stringify(forged));
    imports.push(runCli(['client', 'tokens', 'import', fpath, '-c', mallory.config]));
  }
  await Promise.all(imports);
  for (const c of all) sup.start(c.name, ['client', 'run', '--config', c.config]);
  await Promise.all(all.map((c) => sup.waitForLog(c.name, /smtp submission listening/, 60_000)));
  log(`clients up: ${all.map((c) => `${c.name} (SMTP ${c.smtpHost}:${c.smtpPort})`).join(', ')}`);
  return { alice, bob, mallory, all, bundles };
}
