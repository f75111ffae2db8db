import { privateDir, writePrivateFile } from '../runtime/private-files.ts';
import { existsSync } from 'node:fs';
import type { Command } from 'commander';
import { openKeyStore } from '../runtime/hop/epoch-keys.ts';
import { createLogger, onShutdown } from '../runtime/daemon.ts';
import { ConfigError, EXIT, exitCodeOf } from '../runtime/errors.ts';
import { finalizeTokens, issueTokens, makeBundle, requestTokens } from '../proto/tokens/index.ts';
import { formatDuration as formatSeconds, parseDuration as parseSeconds } from './units.ts';

/** Key-epoch durations: whole seconds in the one duration syntax (`90d`, `12h`), or `never` (0). */
function parseDuration(text: string, flag: string): number {
  if (text.trim().toLowerCase() === 'never') return 0;
  let s: number;
  try {
    s = parseSeconds(text);
  } catch (e) {
    throw new Error(`${flag}: ${(e as Error).message}`);
  }
  if (!Number.isInteger(s)) throw new Error(`${flag}: ${text} is not a whole number of seconds`);
  return s;
}
const formatDuration = (s: number): string => (s === 0 ? 'never' : formatSeconds(s));
import { ENV_PREFIX, loadGatewayConfig, loadOrCreateIssuer, rotationPolicy, type GatewayConfig } from '../gateway/config.ts';
import { Gateway } from '../gateway/daemon.ts';
import { GatewayStore, type Policy, type QueueState, type Schedule } from '../gateway/store.ts';
import { addInit } from './init.ts';
import { hex } from '../proto/util/bytes.ts';

const RUN_HELP = `
Configuration (one TOML file; docs/gateway.md has a complete example and every key):
  [gateway]    data_dir (gateway.sqlite, issuer.seed, keys/, replay store), keys_dir, listen
               (/ip4/127.0.0.1/tcp/4101), announce, domains (required), log_level, shutdown_grace_ms, tick_ms
  [intake]     max_message_bytes (10 MiB), reassembly_ttl_s (172800), ack_unknown_recipient (false)
  [mx]         host, port (25), protocol (smtp|lmtp), starttls (opportunistic|require|never), tls_verify,
               helo_name, envelope_from (""), retry_base_s (30), retry_max_s (3600), max_age_s (5 days),
               recovery (resend|hold), concurrency (4), keep_delivered_s (7 days)
  [mailbox]    max_items (1000), ttl_s (86400)
  [issuance]   enabled (true), host (127.0.0.1), port (4180), public_url, max_per_request (100),
               max_tokens_per_hour (1000), max_requests_per_minute (60), max_tokens_per_epoch (10000),
               max_body_bytes (65536), headers_timeout_ms (10000), request_timeout_ms (30000), max_connections (256)
  [tokens]     rotation_s (7776000 = 90 days; 0 = never), grace_s (604800 = 7 days): recipients' key epochs
  [limits]     max_queued_bytes, per_peer_queue, max_batch_frames, max_connections
  [replay]     store ("sqlite" | "log")
  [metrics]    enabled (true), host (loopback unless allow_remote), port (9102), allow_remote (false),
               bearer_token | bearer_token_file; the listener also serves /healthz and /readyz
  [directory]  threshold, epoch_length, epoch_origin, grace, timeout_ms, retry_ms, [[directory.authorities]]

Environment overrides: ${ENV_PREFIX}_<SECTION>__<KEY>=value (e.g. ${ENV_PREFIX}_MX__PORT=2525).
Keys: \`postmix keygen -d <data_dir>/keys -e none\` once; issuer.seed is created on first use.
Exit codes: 0 ok, 1 failure, 69 port in use, 77 key file problem, 78 bad configuration.
`;

function fail(what: string, msg: string, code: number): void {
  process.stderr.write(`postmix gateway ${what}: ${msg}\n`);
  process.exitCode = code;
}

function withConfig(what: string, file: string): GatewayConfig | undefined {
  try {
    return loadGatewayConfig(file);
  } catch (e) {
    if (!(e instanceof ConfigError)) throw e;
    fail(what, e.message, exitCodeOf(e));
    return undefined;
  }
}

function withStore<T>(what: string, file: string, fn: (store: GatewayStore, cfg: GatewayConfig) => T): T | undefined {
  const cfg = withConfig(what, file);
  if (!cfg) return undefined;
  privateDir(cfg.dataDir); // the admin commands create the database and the issuer seed here
  const store = new GatewayStore(cfg.dbPath, { rotation: rotationPolicy(cfg.file) });
  try {
    return fn(store, cfg);
  } catch (e) {
    fail(what, (e as Error).message, exitCodeOf(e));
    return undefined;
  } finally {
    store.close();
  }
}

const iso = (ms: number | null) => (ms === null ? '-' : new Date(ms).toISOString());

export function registerGateway(program: Command): void {
  const cmd = program.command('gateway').description('the gateway beside a provider MX: last hop, delivery tokens, reassembly, hand-off to the MX');
  addInit(cmd, 'gateway');

  cmd
    .command('run')
    .description('run the gateway daemon (libp2p link, Sphinx final hop, token checks, durable queue, SMTP/LMTP hand-off, mailboxes, issuance, metrics)')
    .requiredOption('-c, --config <file>', 'the TOML configuration file')
    .option('--check', 'validate the configuration and the key files (identity, Sphinx keys, issuer seed), print a summary, and exit', false)
    .addHelpText('after', RUN_HELP)
    .action(async (opts: { config: string; check: boolean }) => {
      const cfg = withConfig('run', opts.config);
      if (!cfg) return;
      if (opts.check) {
        const f = cfg.file;
        let node: string;
        try {
          node = hex(openKeyStore(cfg.keysDir).identity.nodeId).slice(0, 16);
          // made on first start when missing; a seed that is there must be sound
          if (existsSync(cfg.issuerSeedPath)) loadOrCreateIssuer(cfg.issuerSeedPath);
        } catch (e) {
          return fail('run', (e as Error).message, exitCodeOf(e));
        }
        process.stdout.write(
          `config ok: node ${node}…, domains ${f.gateway.domains.join(', ')}, listen ${f.gateway.listen}, MX ${f.mx.protocol}://${f.mx.host}:${f.mx.port}, ` +
            `${cfg.authorities.length} authorities (threshold ${f.directory.threshold}), epoch ${f.directory.epoch_length}s, db ${cfg.dbPath}, ` +
            `issuer seed ${existsSync(cfg.issuerSeedPath) ? 'ok' : 'made on first start'}\n`,
        );
        // what [mx] starttls / tls_verify will do against the MX as it answers now
        const { checkMxTls, mxTlsSettingsOf } = await import('../gateway/mx-tls.ts');
        const tlsv = await checkMxTls(mxTlsSettingsOf(f.mx));
        process.stdout.write(`MX TLS${tlsv.level === 'ok' ? '' : ` (${tlsv.level})`}: ${tlsv.text}\n`);
        if (tlsv.level === 'fail') process.exitCode = EXIT.config;
        return;
      }
      const log = createLogger('gateway', cfg.file.gateway.log_level);
      let gw: Gateway;
      try {
        gw = await Gateway.start({ config: cfg, logger: log });
      } catch (e) {
        log.error({ err: (e as Error).message }, 'cannot start');
        log.flush?.();
        return fail('run', (e as Error).message, exitCodeOf(e));
      }
      onShutdown(log, () => gw.close(), cfg.file.gateway.shutdown_grace_ms + 5000);
    });

  const queue = cmd.command('queue').description('list, retry or purge the hand-off queue');
  queue
    .command('list')
    .description('list queue rows (default: everything not yet delivered)')
    .requiredOption('-c, --config <file>', 'the TOML configuration file')
    .option('--all', 'include delivered rows', false)
    .option('--json', 'JSON lines', false)
    .action((o: { config: string; all: boolean; json: boolean }) =>
      withStore('queue list', o.config, (store) => {
        const states: QueueState[] = o.all ? ['queued', 'sending', 'failed', 'delivered'] : ['queued', 'sending', 'failed'];
        for (const r of store.listQueue(states)) {
          const row = {
            handoffId: r.handoffId,
            recipient: r.recipient,
            size: r.size,
            state: r.state,
            attempts: r.attempts,
            nextAttempt: iso(r.nextAttempt),
            created: iso(r.created),
            lastError: r.lastError,
          };
          process.stdout.write(
            o.json
              ? JSON.stringify(row) + '\n'
              : `${row.handoffId}  ${row.state.padEnd(9)} ${String(row.attempts).padStart(3)}  ${row.recipient}  ${row.size} B  next ${row.nextAttempt}${row.lastError ? `  (${row.lastError})` : ''}\n`,
          );
        }
        const d = store.queueDepth();
        process.stderr.write(`queued ${d.queued}, sending ${d.sending}, failed ${d.failed}, delivered ${d.delivered}\n`);
      }),
    );
  queue
    .command('retry')
    .description('hand a failed or waiting message over again now (a running gateway picks it up within a poll)')
    .requiredOption('-c, --config <file>', 'the TOML configuration file')
    .argument('<handoff-id|all>')
    .action((id: string, o: { config: string }) =>
      withStore('queue retry', o.config, (store) => {
        const n = store.retry(id, Date.now());
        process.stdout.write(`${n} message(s) requeued\n`);
        if (n === 0 && id !== 'all') process.exitCode = EXIT.failure;
      }),
    );
  queue
    .command('purge')
    .description('delete a message from the queue, all failed ones (--failed), or delivered records older than --delivered-days')
    .requiredOption('-c, --config <file>', 'the TOML configuration file')
    .argument('[handoff-id]')
    .option('--failed', 'purge every failed message', false)
    .option('--delivered-days <n>', 'purge delivered records older than n days')
    .action((id: string | undefined, o: { config: string; failed: boolean; deliveredDays?: string }) =>
      withStore('queue purge', o.config, (store) => {
        let n: number;
        if (id) n = store.purge({ handoffId: id });
        else if (o.failed) n = store.purge({ failed: true });
        else if (o.deliveredDays !== undefined) n = store.purge({ deliveredBefore: Date.now() - Number(o.deliveredDays) * 86_400_000 });
        else throw new Error('give a queue id, --failed or --delivered-days N');
        process.stdout.write(`${n} row(s) purged\n`);
      }),
    );

  const user = cmd.command('user').description('add a recipient, revoke its tokens, set its key-epoch rotation');
  const nowS = () => Math.floor(Date.now() / 1000);
  user
    .command('add')
    .description('add a recipient; prints its per-user secret once (for the issuance endpoint its postmix client calls)')
    .requiredOption('-c, --config <file>', 'the TOML configuration file')
    .argument('<address>')
    .option('--open', 'open policy: no token needed, rate limited', false)
    .option('--rate <n>', 'open policy: new messages per hour', '100')
    .option('--rotate-every <duration>', "its own key-epoch length (90d, 12h, never); default: the gateway's [tokens] rotation_s")
    .option('--grace <duration>', "its own grace after an epoch ends; default: the gateway's [tokens] grace_s")
    .action((address: string, o: { config: string; open: boolean; rate: string; rotateEvery?: string; grace?: string }) =>
      withStore('user add', o.config, (store, cfg) => {
        const at = address.lastIndexOf('@');
        const dom = address.slice(at + 1).toLowerCase();
        if (!cfg.file.gateway.domains.includes(dom)) throw new Error(`${dom} is not one of this gateway's domains (${cfg.file.gateway.domains.join(', ')})`);
        const policy: Policy = o.open ? 'open' : 'tokens';
        const rotationS = o.rotateEvery === undefined ? null : parseDuration(o.rotateEvery, '--rotate-every');
        const graceS = o.grace === undefined ? null : parseDuration(o.grace, '--grace');
        const { secret, user: u } = store.addUser(address, { policy, ratePerHour: Number(o.rate), rotationS, graceS });
        const s = store.schedule(u.address, nowS());
        process.stdout.write(`added ${u.address} (policy ${u.policy}; ${describe(s)})\nsecret: ${secret}\n`);
        process.stderr.write('Give the secret to the user over a trusted channel; it is shown only once (reset: user rotate --secret).\n');
      }),
    );
  user
    .command('rotate')
    .description(
      'revoke now every token the recipient handed out: its key epochs end at once, without grace, and a fresh one starts (scheduled rotation needs no command); --secret also replaces its per-user secret',
    )
    .requiredOption('-c, --config <file>', 'the TOML configuration file')
    .argument('<address>')
    .option('--secret', 'also issue a new per-user secret', false)
    .option('--no-epoch', 'keep the key epoch (with --secret: only reset the secret)')
    .action((address: string, o: { config: string; secret: boolean; epoch: boolean }) =>
      withStore('user rotate', o.config, (store) => {
        if (o.epoch) {
          const e = store.rotateUser(address, nowS());
          process.stdout.write(
            `${address}: key epoch now ${e}; every earlier token is refused. The user's client will refuse the new epoch until told: postmix client tokens request --accept-epoch ${e}\n`,
          );
        }
        if (o.secret) process.stdout.write(`secret: ${store.resetSecret(address)}\n`);
      }),
    );
  user
    .command('rotation')
    .description("set a recipient's own key-epoch rotation (it applies from the epoch after the next, whose window is already announced)")
    .requiredOption('-c, --config <file>', 'the TOML configuration file')
    .argument('<address>')
    .requiredOption('--every <duration>', 'key-epoch length: 90d, 12h, 3600, never; "default" for the gateway\'s')
    .option('--grace <duration>', 'grace after a scheduled end; "default" for the gateway\'s', 'default')
    .action((address: string, o: { config: string; every: string; grace: string }) =>
      withStore('user rotation', o.config, (store) => {
        const rot = o.every === 'default' ? null : parseDuration(o.every, '--every');
        const grace = o.grace === 'default' ? null : parseDuration(o.grace, '--grace');
        const eff = { rotationS: rot ?? store.rotation.rotationS, graceS: grace ?? store.rotation.graceS };
        if (eff.rotationS > 0 && eff.graceS > eff.rotationS) throw new Error('the grace must not be longer than the rotation');
        store.setRotation(address, rot, grace);
        process.stdout.write(
          `${address}: key epochs of ${formatDuration(eff.rotationS)} with ${formatDuration(eff.graceS)} grace, from the epoch after the next\n`,
        );
      }),
    );
  user
    .command('list')
    .description('list recipients with their current key epoch and when it ends')
    .requiredOption('-c, --config <file>', 'the TOML configuration file')
    .action((o: { config: string }) =>
      withStore('user list', o.config, (store) => {
        for (const u of store.listUsers())
          process.stdout.write(
            `${u.address}  ${u.policy}${u.policy === 'open' ? `(${u.ratePerHour}/h)` : ''}  ${describe(store.schedule(u.address, nowS()))}\n`,
          );
      }),
    );

  cmd
    .command('tokens')
    .description('delivery tokens (admin path; recipients normally run `postmix client tokens request` themselves)')
    .command('issue')
    .description(
      "LINKABLE admin path: issue a bundle for a user from the gateway's own keys. The gateway then knows every token input of the bundle " +
        "and can link each redeemed token to it (and so to the contact it went to). Prefer `postmix client tokens request` on the user's " +
        'machine, which blinds the inputs so the gateway never sees them.',
    )
    .requiredOption('-c, --config <file>', 'the TOML configuration file')
    .requiredOption('-u, --user <address>', 'the recipient')
    .requiredOption('-n, --count <n>', 'how many tokens (1..1000)')
    .requiredOption('-o, --out <file>', 'where to write the bundle (JSON)')
    .option('--next', 'for the next key epoch (once the current one has an end)', false)
    .action((o: { config: string; user: string; count: string; out: string; next: boolean }) =>
      withStore('tokens issue', o.config, (store, cfg) => {
        const u = store.getUser(o.user);
        if (!u) throw new Error(`no such user: ${o.user} (add it with: postmix gateway user add)`);
        const count = Number(o.count);
        const s = store.schedule(u.address, nowS());
        const e = o.next ? s.next : s.current;
        if (!e) throw new Error(`${u.address} has no next key epoch yet (its current one has no scheduled end)`);
        if (!store.countIssued(u.address, e.keyEpoch, count, cfg.file.issuance.max_tokens_per_epoch))
          throw new Error(`key epoch ${e.keyEpoch} of ${u.address} would exceed its cap of ${cfg.file.issuance.max_tokens_per_epoch} tokens`);
        const issuer = loadOrCreateIssuer(cfg.issuerSeedPath);
        // the same blind/evaluate/finalize steps as a remote client, so the proof is checked too
        const st = requestTokens(issuer.publicKey, u.address, e.keyEpoch, count);
        const tokens = finalizeTokens(st, issueTokens(issuer, u.address, e.keyEpoch, st.blinded));
        const bundle = makeBundle(u.address, issuer.publicKey, tokens, () => ({ notBefore: e.starts, expires: e.ends }));
        writePrivateFile(o.out, JSON.stringify(bundle, null, 1) + '\n');
        process.stdout.write(`${tokens.length} tokens for ${u.address} (key epoch ${e.keyEpoch}) written to ${o.out}\n`);
        process.stderr.write('note: issued on the gateway host, these tokens are linkable by the gateway (it saw their inputs)\n');
      }),
    );
}

const isoS = (s: number | null) => (s === null ? 'never' : new Date(s * 1000).toISOString().replace('.000Z', 'Z'));

/** "key epoch 3 until 2025-03-01T00:00:00Z (next 4 scheduled), rotation 90d, grace 7d" */
function describe(s: Schedule): string {
  const c = s.current;
  return (
    `key epoch ${c.keyEpoch} ${c.ends === null ? 'with no scheduled end' : `until ${isoS(c.ends)}`}${s.next ? ` (next ${s.next.keyEpoch} scheduled)` : ''}, ` +
    `rotation ${formatDuration(s.policy.rotationS)}, grace ${formatDuration(s.policy.graceS)}`
  );
}
