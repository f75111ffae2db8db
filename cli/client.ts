import { existsSync, readFileSync } from 'node:fs';
import { X509Certificate } from 'node:crypto';
import { homedir } from 'node:os';
import { join } from 'node:path';
import type { Command } from 'commander';
import { createLogger, loadConfig, onShutdown } from '../runtime/daemon.ts';
import { ConfigError, EXIT, exitCodeOf } from '../runtime/errors.ts';
import { ClientConfigSchema, outboxPath, type ClientConfig } from '../client/config.ts';
import { Outbox } from '../client/outbox.ts';
import { Wallet, walletNotices } from '../client/wallet.ts';
import { registerClientTokens } from './client-tokens.ts';
import { formatLostGateways, formatStatus } from '../client/status.ts';
import { GatewayMemory } from '../client/gateway-memory.ts';
import { replyLines, submitLocal, type SubmitTarget } from '../client/submit.ts';
import { submissionCertFile } from '../client/tls.ts';
import { recipientsFromHeaders, headerValues, addressesIn } from '../client/headers.ts';
import { parseSendmailArgs, prepareSendmail } from '../client/sendmail.ts';
import { addInit } from './init.ts';

export const CLIENT_ENV_PREFIX = 'POSTMIX_CLIENT';

function defaultConfigPath(): string {
  return process.env.POSTMIX_CLIENT_CONFIG || join(homedir(), '.config', 'postmix', 'client.toml');
}

function loadCfg(file: string | undefined, cmd: string): ClientConfig | null {
  try {
    return loadConfig(file ?? defaultConfigPath(), ClientConfigSchema, CLIENT_ENV_PREFIX);
  } catch (e) {
    if (!(e instanceof ConfigError)) throw e;
    process.stderr.write(`postmix ${cmd}: ${e.message}\n`);
    process.exitCode = exitCodeOf(e);
    return null;
  }
}

const RUN_HELP = `
Configuration (TOML; docs/client.md has a complete example):
  data_dir                 outbox.sqlite (messages, fragments, SURB keys, token wallet) lives here
  [smtp]       host (127.0.0.1) port (2525) user password max_message_bytes allow_remote tls_cert tls_key
  [smarthost]  host port (587) secure require_tls (true) user password max_attempts retry_base_ms
  [routing]    overlay_only (false) overlay_only_recipients [] force_smtp [] on_gateway_loss (refuse|smtp)
  [strip]      received x_mailer user_agent message_id_host (all false)
  [bounce]     maildir (~/Maildir): where bounces (RFC 3464 DSNs) are written
  [network]    document authority_urls refresh_s authorities threshold home_gateway
  [overlay]    max_attempts (5) timeout_factor (3) timeout_margin_ms (5000) timeout_max_s (3600) cover (true) low_tokens_warning (3)
  [metrics]    enabled (false) host (127.0.0.1) port allow_remote (false) bearer_token | bearer_token_file; also /healthz, /readyz
Environment overrides: ${CLIENT_ENV_PREFIX}_<SECTION>__<KEY>=value (e.g. ${CLIENT_ENV_PREFIX}_SMTP__PORT=2526).
Logs: JSON lines on stdout. SIGTERM/SIGINT: stop intake and scheduler, close the outbox (it is durable at every step).
Exit codes: 0 ok, 1 failure, 69 port unavailable, 78 bad configuration.
`;

async function readStdin(): Promise<Uint8Array> {
  const chunks: Buffer[] = [];
  for await (const c of process.stdin) chunks.push(c as Buffer);
  return new Uint8Array(Buffer.concat(chunks));
}

function submitTarget(cfg: ClientConfig): SubmitTarget {
  const t = { host: cfg.smtp.host, port: cfg.smtp.port, user: cfg.smtp.user || undefined, password: cfg.smtp.password || undefined };
  // with allow_remote the intake offers STARTTLS and AUTH only inside it: pin its certificate
  const certFile = submissionCertFile(cfg);
  if (!certFile) return t;
  try {
    return { ...t, certificate: readFileSync(certFile, 'utf8') };
  } catch (e) {
    throw new ConfigError(`the submission's STARTTLS certificate ${certFile} cannot be read (${(e as Error).message}); is the client running?`);
  }
}

export function registerClient(program: Command): void {
  const cmd = program
    .command('client')
    .description('the sender client: local SMTP submission, overlay sending with cover traffic, SMTP fallback, token wallet');
  addInit(cmd, 'client');

  cmd
    .command('run')
    .description('run the client daemon (SMTP submission on loopback, durable outbox, Poisson sending, fallback relay)')
    .option('-c, --config <file>', 'TOML configuration', defaultConfigPath())
    .option('--check', 'validate the configuration and the cached network document, print a summary, and exit', false)
    .addHelpText('after', RUN_HELP)
    .action(async (opts: { config: string; check: boolean }) => {
      const cfg = loadCfg(opts.config, 'client run');
      if (!cfg) return;
      if (opts.check) return checkClient(cfg);
      const log = createLogger('client', cfg.log.level);
      // loaded here so the other client commands start fast (libp2p is heavy)
      const { runClient } = await import('../client/daemon.ts');
      try {
        const c = await runClient(cfg, { log });
        onShutdown(log, () => c.stop());
      } catch (e) {
        process.stderr.write(`postmix client run: ${(e as Error).message}\n`);
        process.exitCode = exitCodeOf(e);
      }
    });

  cmd
    .command('send')
    .description("submit a message file to the running client's SMTP intake (the file's bytes are sent unchanged)")
    .argument('<file>', 'an RFC 5322 message (already encrypted); - for stdin')
    .option('-c, --config <file>', 'TOML configuration', defaultConfigPath())
    .option('--to <addr...>', 'recipient(s); default: To/Cc/Bcc of the message')
    .option('--from <addr>', 'envelope sender; default: the From header')
    .action(async (file: string, opts: { config: string; to?: string[]; from?: string }) => {
      const cfg = loadCfg(opts.config, 'client send');
      if (!cfg) return;
      const raw = file === '-' ? await readStdin() : new Uint8Array(readFileSync(file));
      const to = opts.to && opts.to.length > 0 ? opts.to : recipientsFromHeaders(raw);
      const from = opts.from ?? addressesIn(headerValues(raw, 'from'))[0] ?? '';
      if (to.length === 0) {
        process.stderr.write('postmix client send: no recipient (use --to or To/Cc headers)\n');
        process.exitCode = EXIT.usage;
        return;
      }
      let target: SubmitTarget;
      try {
        target = submitTarget(cfg);
      } catch (e) {
        if (!(e instanceof ConfigError)) throw e;
        process.stderr.write(`postmix client send: ${e.message}\n`);
        process.exitCode = EXIT.unavailable;
        return;
      }
      const r = await submitLocal(target, from, to, raw);
      if (r.ok) process.stdout.write(`queued as ${r.outboxId ?? '?'}: ${r.response}\n`);
      else {
        process.stderr.write(`postmix client send: ${r.error}\n`);
        process.exitCode = r.code !== null && r.code >= 500 ? EXIT.failure : EXIT.unavailable;
      }
    });

  cmd
    .command('status')
    .description('messages in flight: fragments ACKed per recipient, the path taken and why, expected time left')
    .option('-c, --config <file>', 'TOML configuration', defaultConfigPath())
    .option('--all', 'include delivered and bounced messages', false)
    .option('--json', 'machine-readable output: the messages and their recipients (one line per snapshot with --watch)', false)
    .option('--watch <seconds>', 'print again every N seconds until interrupted', (v) => {
      const n = Number(v);
      if (!(n > 0 && n <= 3600)) throw new Error(`--watch must be a number of seconds in (0, 3600], got "${v}"`);
      return n;
    })
    .action(async (opts: { config: string; all: boolean; json: boolean; watch?: number }) => {
      const cfg = loadCfg(opts.config, 'client status');
      if (!cfg) return;
      const ob = new Outbox(outboxPath(cfg));
      const json = (p: unknown, indent?: number) => JSON.stringify(p, (_k, v: unknown) => (v instanceof Uint8Array ? undefined : v), indent);
      try {
        ob.db.pragma('busy_timeout = 5000');
        if (opts.watch !== undefined) {
          // a reader beside a running client: the same snapshot it would print, every N seconds
          for (;;) {
            const p = ob.progress(opts.all);
            process.stdout.write(opts.json ? json(p) + '\n' : formatStatus(p, null) + '\n');
            await new Promise((r) => setTimeout(r, opts.watch! * 1000));
          }
        }
        const p = ob.progress(opts.all);
        if (opts.json) {
          process.stdout.write(json(p, 2) + '\n');
          return;
        }
        let eta = null;
        let doc = null;
        try {
          const { loadDocument } = await import('../client/network.ts');
          doc = (await loadDocument(cfg, null)).body;
          eta = { mixing: doc.mixing, layers: doc.layers.length };
        } catch {
          /* no document: no estimate */
        }
        const lost = new GatewayMemory(ob.db).lost(doc);
        process.stdout.write(formatLostGateways(lost, cfg.routing.on_gateway_loss, doc !== null) + formatStatus(p, eta));
        // told before sending: recipients whose tokens expired (their mail is refused at submission)
        for (const n of walletNotices(new Wallet(ob.db, cfg.overlay.low_tokens_warning))) process.stdout.write(`warning: ${n.text}\n`);
      } finally {
        ob.close();
      }
    });

  registerClientTokens(cmd, { loadCfg, readStdin, defaultConfigPath });

  program
    .command('sendmail')
    .description(
      'sendmail-compatible intake: reads a message on stdin (-t: recipients from To/Cc/Bcc; -i: a lone "." does not end it; -f sender; -v: each recipient\'s path on stderr)',
    )
    .helpOption(false)
    .allowUnknownOption(true)
    .allowExcessArguments(true)
    .action(async (_o: unknown, c: Command) => {
      const code = await sendmailMain(c.args);
      process.exitCode = code;
    });
}

/** `postmix sendmail [-t] [-i|-oi] [-v] [-f from] [-C config] [--] [rcpt...]`; returns the exit code (sysexits). */
export async function sendmailMain(args: readonly string[]): Promise<number> {
  const a = parseSendmailArgs(args);
  const cfg = loadCfg(a.config, 'sendmail');
  if (!cfg) return EXIT.config;
  const { raw, to, from } = prepareSendmail(a, await readStdin());
  if (to.length === 0) {
    process.stderr.write('sendmail: no recipients (give addresses or use -t)\n');
    return 64; // EX_USAGE
  }
  let target: SubmitTarget;
  try {
    target = submitTarget(cfg);
  } catch (e) {
    if (!(e instanceof ConfigError)) throw e;
    process.stderr.write(`sendmail: ${e.message}\n`);
    return 75; // EX_TEMPFAIL: the certificate appears when the client has started
  }
  const r = await submitLocal(target, from, to, raw);
  // -v: what the client said it does with each recipient (quiet otherwise, as sendmail is)
  if (a.v && r.response) for (const l of replyLines(r.response)) process.stderr.write(`sendmail: ${l}\n`);
  if (r.ok) return 0;
  process.stderr.write(`sendmail: ${r.error}\n`);
  if (r.code === null || r.code < 500) return 75; // EX_TEMPFAIL: the caller may retry
  // 5.6.x: the message itself was refused (empty, no header section): sendmail's EX_DATAERR
  return /\b5\.6\.\d/.test(r.error) ? 65 : 67; /* EX_NOUSER */
}

/** `client run --check`: what the daemon would refuse at start, and which paths mail will take. */
async function checkClient(cfg: ClientConfig): Promise<void> {
  const { checkListen } = await import('../client/daemon.ts');
  const { DocumentCache } = await import('../runtime/pki/client.ts');
  const { submissionTls, submissionCertFile } = await import('../client/tls.ts');
  const n = cfg.network;
  let starttls = '';
  try {
    checkListen(cfg);
    if (cfg.smtp.allow_remote) {
      // the operator's pair is checked as the daemon would; the self-signed one is only read (made at the first start)
      const own = cfg.smtp.tls_cert ? submissionTls(cfg) : null;
      const file = submissionCertFile(cfg)!;
      const fp = own?.fingerprint ?? (existsSync(file) ? new X509Certificate(readFileSync(file)).fingerprint256 : null);
      starttls = fp
        ? `, STARTTLS (AUTH after it; ${own ? '' : 'self-signed '}certificate ${file}, SHA-256 ${fp})`
        : `, STARTTLS (AUTH after it; a self-signed certificate is made at the first start in ${file})`;
    }
    if (n.authorities.length > 0 && n.threshold > n.authorities.length)
      throw new ConfigError(`network.threshold ${n.threshold} exceeds the ${n.authorities.length} listed authorities`);
    if (n.authorities.length > 0 && !n.document)
      throw new ConfigError('network.authorities is set but network.document is empty: the client needs a file to cache the document in');
  } catch (e) {
    if (!(e instanceof ConfigError)) throw e;
    process.stderr.write(`postmix client run: ${e.message}\n`);
    process.exitCode = exitCodeOf(e);
    return;
  }
  let overlay: string;
  if (!n.document || n.authorities.length === 0) overlay = 'off (no [network] document and authorities): every recipient goes by the smarthost';
  else {
    const doc = new DocumentCache(n.document).load({
      authorities: n.authorities.map((k) => Uint8Array.from(Buffer.from(k, 'base64'))),
      threshold: n.threshold,
      now: Math.floor(Date.now() / 1000),
    });
    overlay = doc
      ? `document for epoch ${doc.body.epoch} verified (${doc.signers.length} signatures, ${doc.body.gateways.length} gateways)`
      : `no valid cached document at ${n.document}${n.authority_urls.length ? `; fetched at start from ${n.authority_urls.length} authority URL(s)` : ' and no authority_urls to fetch one from'}`;
  }
  const r = cfg.routing;
  process.stdout.write(
    `config ok: SMTP ${cfg.smtp.host}:${cfg.smtp.port}${cfg.smtp.user ? ' (AUTH)' : ''}${starttls}, outbox ${outboxPath(cfg)}, ` +
      `smarthost ${cfg.smarthost.host ? `${cfg.smarthost.host}:${cfg.smarthost.port}${cfg.smarthost.insecure_tls ? ' (certificate NOT verified)' : ''}` : 'none'}, ` +
      `routing ${r.overlay_only ? 'overlay only' : 'overlay, else SMTP'}${r.overlay_only_recipients.length ? `, overlay only for ${r.overlay_only_recipients.length} pattern(s)` : ''}${r.force_smtp.length ? `, SMTP forced for ${r.force_smtp.length} pattern(s)` : ''}; ` +
      `overlay: ${overlay}\n`,
  );
}
