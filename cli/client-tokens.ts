/**
 * `postmix client tokens …`: delivery permission from both sides (docs/client.md).
 *
 *   as a recipient:  request (blinded, from your own gateway), export --for CONTACT (one bundle
 *                    per contact), rotate (revoke everything you gave out);
 *   as a sender:     import (a bundle file or a saved .eml carrying one), forget;
 *   both:            `tokens` (or `tokens list`): what you hold per recipient and what you gave
 *                    per contact.
 */
import { readFileSync, renameSync, rmSync } from 'node:fs';
import { writePrivateFile } from '../runtime/private-files.ts';
import { resolve } from 'node:path';
import type { Command } from 'commander';
import { exitCodeOf } from '../runtime/errors.ts';
import type { DocumentBody } from '../proto/pki/index.ts';
import { BundleError, normalizeRecipient } from '../proto/tokens/index.ts';
import { outboxPath, type ClientConfig } from '../client/config.ts';
import { Outbox } from '../client/outbox.ts';
import { Wallet, walletNotices } from '../client/wallet.ts';
import { bundlesIn } from '../client/bundle-mail.ts';
import { PermissionStore, permissionPath, type ContactSummary } from '../client/permission.ts';
import {
  exportFor,
  learnSchedule,
  ownGateway,
  PermissionError,
  requestEpoch,
  type EpochChoice,
  type RequestOptions,
  type Schedule,
} from '../client/issuance.ts';

export interface TokensCliDeps {
  loadCfg(file: string | undefined, cmd: string): ClientConfig | null;
  readStdin(): Promise<Uint8Array>;
  defaultConfigPath(): string;
}

const isoS = (s: number | null) => (s === null ? 'no end' : new Date(s * 1000).toISOString().replace(/\.\d{3}Z$/, 'Z'));
const validity = (from: number | null, until: number | null) =>
  from === null && until === null ? 'no validity window given' : `valid ${from === null ? 'now' : `from ${isoS(from)}`} until ${isoS(until)}`;

function fail(cmd: string, e: unknown): void {
  const known = e instanceof PermissionError || e instanceof BundleError;
  process.stderr.write(`postmix client tokens ${cmd}: ${known ? '' : 'error: '}${(e as Error).message}\n`);
  process.exitCode = exitCodeOf(e);
}

/** The verified network document: the only place the issuer key is taken from. */
async function signedDocument(cfg: ClientConfig): Promise<DocumentBody> {
  if (!cfg.network.document)
    throw new PermissionError('no network document is configured ([network] document): the issuer key can only come from the signed document');
  const { loadDocument } = await import('../client/network.ts');
  try {
    return (await loadDocument(cfg, null)).body;
  } catch (e) {
    throw new PermissionError(`no valid network document: ${(e as Error).message}`);
  }
}

function secretOf(cfg: ClientConfig): string {
  if (cfg.tokens.secret) return cfg.tokens.secret;
  if (cfg.tokens.secret_file) {
    try {
      return readFileSync(cfg.tokens.secret_file, 'utf8').trim();
    } catch (e) {
      throw new PermissionError(`[tokens] secret_file: ${(e as Error).message}`);
    }
  }
  throw new PermissionError('set [tokens] secret (or secret_file) to the per-user secret your provider gave you');
}

async function requestContext(cfg: ClientConfig, store: PermissionStore, o: { acceptEpoch?: string; acceptIssuerKey?: boolean }): Promise<RequestOptions> {
  if (!cfg.tokens.address) throw new PermissionError('set [tokens] address to your own mail address (the recipient your contacts write to)');
  const gateway = ownGateway(await signedDocument(cfg), cfg.tokens.address, cfg.tokens.issuance_url);
  const acceptEpoch = o.acceptEpoch === undefined ? undefined : Number(o.acceptEpoch);
  if (acceptEpoch !== undefined && !Number.isInteger(acceptEpoch)) throw new PermissionError('--accept-epoch wants a key epoch number');
  return {
    store,
    gateway,
    endpoint: { url: gateway.url, address: cfg.tokens.address, secret: secretOf(cfg), timeoutMs: cfg.tokens.timeout_ms },
    acceptEpoch,
    acceptIssuerKey: o.acceptIssuerKey,
  };
}

function describeSchedule(s: Schedule): string {
  return `key epoch ${s.current.keyEpoch} (${isoS(s.current.starts)} – ${isoS(s.current.ends)})${s.next ? `, next ${s.next.keyEpoch} from ${isoS(s.next.starts)}` : ''}`;
}

function count(s: string | undefined, dflt: number, what: string): number {
  if (s === undefined) return dflt;
  const n = Number(s);
  if (!Number.isInteger(n) || n < 1 || n > 10_000) throw new PermissionError(`${what}: want a whole number 1..10000`);
  return n;
}

function withStores<T>(cfg: ClientConfig, fn: (w: Wallet, p: PermissionStore) => T): T {
  const ob = new Outbox(outboxPath(cfg));
  ob.db.pragma('busy_timeout = 5000');
  const p = new PermissionStore(permissionPath(cfg.data_dir));
  try {
    return fn(new Wallet(ob.db, cfg.overlay.low_tokens_warning), p);
  } finally {
    p.close();
    ob.close();
  }
}

/** The overview: tokens held per recipient (sender side) and given per contact (recipient side). */
export function overview(w: Wallet, p: PermissionStore, ownAddress: string, now = Date.now()) {
  const t = Math.floor(now / 1000);
  const held = [...new Set(w.list().map((e) => e.recipient))].map((recipient) => {
    const s = w.state(recipient, undefined, now);
    const spent = w
      .list()
      .filter((e) => e.recipient === recipient)
      .reduce((a, e) => a + e.spent, 0);
    return {
      recipient,
      usable: s.usable,
      usableUntil: s.usableUntil,
      expired: s.expired,
      lastExpired: s.lastExpired,
      notYet: s.notYet,
      firstValid: s.firstValid,
      spent,
    };
  });
  const own = ownAddress ? normalizeRecipient(ownAddress) : '';
  const epochs = own ? p.epochs(own) : [];
  const given: ContactSummary[] = own ? p.contacts(own, t, 0) : [];
  const notGiven = epochs.filter((e) => !e.revoked).map((e) => ({ keyEpoch: e.keyEpoch, ends: e.ends, held: p.held(own, e.keyEpoch) }));
  return { held, own: own || null, epochs, given, notGiven: notGiven.filter((n) => n.held > 0), notices: walletNotices(w, now).map((n) => n.text) };
}

function printOverview(o: ReturnType<typeof overview>): void {
  const out: string[] = [];
  out.push('Tokens you hold, to write to them:');
  if (o.held.length === 0) out.push('  none (import a bundle a contact sent you: postmix client tokens import FILE)');
  for (const h of o.held) {
    const parts = [`${h.usable} usable${h.usable && h.usableUntil !== null ? ` until ${isoS(h.usableUntil)}` : ''}`];
    if (h.expired) parts.push(`${h.expired} expired at ${isoS(h.lastExpired)}`);
    if (h.notYet) parts.push(`${h.notYet} valid from ${isoS(h.firstValid)}`);
    if (h.spent) parts.push(`${h.spent} spent`);
    out.push(`  ${h.recipient.padEnd(28)} ${parts.join(', ')}`);
  }
  if (o.own) {
    const cur = o.epochs.filter((e) => !e.revoked).at(-1);
    out.push('', `Permission you gave, to write to you (${o.own}${cur ? `; latest key epoch ${cur.keyEpoch}, until ${isoS(cur.ends)}` : ''}):`);
    if (o.given.length === 0) out.push('  nobody yet (postmix client tokens export --for CONTACT)');
    for (const g of o.given) {
      const per = g.given.map((x) => `${x.count} of key epoch ${x.keyEpoch}${x.live ? '' : ' (ended)'}`).join(' + ');
      out.push(`  ${g.contact.padEnd(28)} given ${per}; at most ${g.atMostLeft} left`);
    }
    for (const n of o.notGiven) out.push(`  not given to anyone yet: ${n.held} of key epoch ${n.keyEpoch}`);
    if (o.given.length > 0) out.push('  (how many a contact used is not known: the gateway cannot tell whose tokens it redeems, by design)');
  }
  for (const n of o.notices) out.push(`warning: ${n}`);
  process.stdout.write(out.join('\n') + '\n');
}

export function registerClientTokens(cmd: Command, deps: TokensCliDeps): void {
  const configOpt = (c: Command) => c.option('-c, --config <file>', 'TOML configuration', deps.defaultConfigPath());
  const cfgPath = (c: Command) => c.optsWithGlobals<{ config: string }>().config;
  const show = async (opts: { config: string; json: boolean }) => {
    const cfg = deps.loadCfg(opts.config, 'client tokens');
    if (!cfg) return;
    const o = withStores(cfg, (w, p) => overview(w, p, cfg.tokens.address));
    if (opts.json) process.stdout.write(JSON.stringify(o, null, 2) + '\n');
    else printOverview(o);
  };
  const tokens = configOpt(
    cmd
      .command('tokens')
      .description('delivery permission: tokens you hold for others (sender) and tokens you give your contacts (recipient)')
      // -c is this command's, and so every sub-command's (commander would take it here anyway)
      .configureHelp({ showGlobalOptions: true })
      .option('--json', 'machine-readable output', false),
  ).action(show);
  tokens
    .command('list')
    .description('the same as `tokens`: held per recipient, given per contact')
    .option('--json', 'machine-readable output', false)
    .action((o: { json: boolean }, c: Command) => show({ ...c.optsWithGlobals<{ config: string }>(), json: o.json || tokens.opts<{ json: boolean }>().json }));

  tokens
    .command('import')
    .description('import a token bundle a contact sent you: the JSON file, or a whole saved message (.eml) that carries it as an attachment')
    .argument('<file>', 'bundle or .eml file; - for stdin')
    .action(async (file: string, _o: unknown, c: Command) => {
      const cfg = deps.loadCfg(cfgPath(c), 'client tokens import');
      if (!cfg) return;
      try {
        const raw = file === '-' ? Buffer.from(await deps.readStdin()) : readFileSync(file);
        const found = await bundlesIn(raw);
        withStores(cfg, (w) => {
          for (const f of found) {
            const r = w.importBundle(f.text);
            const per = r.epochs
              .map((e) => `key epoch ${e.keyEpoch}: ${e.added} new${e.duplicates ? `, ${e.duplicates} already held` : ''}, ${validity(e.notBefore, e.expires)}`)
              .join('; ');
            process.stdout.write(`imported ${r.added} token(s) for ${r.recipient} from ${f.source} (${per})\n`);
            if (r.added === 0) process.stdout.write('  (nothing new: this bundle was imported before)\n');
          }
        });
      } catch (e) {
        fail('import', e);
      }
    });

  tokens
    .command('request')
    .description(
      'request tokens from your own gateway: blinded here, evaluated there (it never sees them), checked against the issuer key of the signed network document',
    )
    .option('-n, --count <n>', 'how many', '20')
    .option('--next', 'for your next key epoch (requestable once the current one has a scheduled end)', false)
    .option('--accept-epoch <n>', 'accept key epoch N although it overlaps the ones known (after your tokens were revoked by `gateway user rotate`)')
    .option('--accept-issuer-key', 'accept an issuer key other than the one pinned at your last request (your provider changed it)', false)
    .action(async (opts: { count: string; next: boolean; acceptEpoch?: string; acceptIssuerKey: boolean }, c: Command) => {
      const cfg = deps.loadCfg(cfgPath(c), 'client tokens request');
      if (!cfg) return;
      const store = new PermissionStore(permissionPath(cfg.data_dir));
      try {
        const n = count(opts.count, 20, '--count');
        const ctx = await requestContext(cfg, store, opts);
        const s = await learnSchedule(ctx);
        for (const m of s.notices) process.stdout.write(`${m}\n`);
        const e = opts.next ? s.next : s.current;
        if (!e) throw new PermissionError(`key epoch ${s.current.keyEpoch} has no scheduled end, so there is no next epoch to request`);
        const t0 = performance.now();
        const added = await requestEpoch(ctx, s, e, n);
        process.stdout.write(
          `${added} token(s) of key epoch ${e.keyEpoch} (${isoS(e.starts)} – ${isoS(e.ends)}) issued by ${ctx.gateway.url} in ${(performance.now() - t0).toFixed(0)} ms; ` +
            `the proof verified against the issuer key in the signed network document; ${store.held(ctx.endpoint.address, e.keyEpoch)} held, not given to anyone yet\n`,
        );
      } catch (e) {
        fail('request', e);
      } finally {
        store.close();
      }
    });

  tokens
    .command('export')
    .description('write a bundle for one contact: tokens no other contact has (requested from your gateway first if you hold too few)')
    .requiredOption('--for <contact>', "the contact's address (remembered, so `tokens` shows who holds how many)")
    .option('-n, --count <n>', 'tokens per key epoch (default [tokens] bundle_size)')
    .option('-o, --out <file>', 'the bundle file ("-": stdout); default postmix-tokens-<you>-for-<contact>.json')
    .option('--epochs <which>', 'auto (the next epoch too in the last quarter of the current one), current, next, both', 'auto')
    .action(async (opts: { for: string; count?: string; out?: string; epochs: string }, c: Command) => {
      const cfg = deps.loadCfg(cfgPath(c), 'client tokens export');
      if (!cfg) return;
      const store = new PermissionStore(permissionPath(cfg.data_dir));
      let written: string | null = null;
      try {
        if (!['auto', 'current', 'next', 'both'].includes(opts.epochs)) throw new PermissionError('--epochs: auto, current, next or both');
        const n = count(opts.count, cfg.tokens.bundle_size, '--count');
        const ctx = await requestContext(cfg, store, {});
        const s = await learnSchedule(ctx);
        for (const m of s.notices) process.stderr.write(`${m}\n`);
        const me = normalizeRecipient(cfg.tokens.address);
        const contact = normalizeRecipient(opts.for);
        const out = opts.out ?? `postmix-tokens-${me}-for-${contact}.json`;
        const r = await exportFor(ctx, s, contact, n, opts.epochs as EpochChoice, (json) => {
          if (out === '-') return;
          const path = resolve(out);
          const tmp = `${path}.tmp-${process.pid}`;
          writePrivateFile(tmp, json);
          renameSync(tmp, path);
          written = path;
        });
        if (out === '-') process.stdout.write(r.json);
        const per = r.epochs.map((e) => `${n} of key epoch ${e.keyEpoch} (valid ${isoS(e.starts)} – ${isoS(e.ends)})`).join(' + ');
        process.stderr.write(
          `bundle for ${contact}: ${per}${r.requested ? `; ${r.requested} requested from your gateway` : ''}${written ? `, written to ${written}` : ''}\n` +
            `Attach it to an encrypted mail to ${contact}; they import it with: postmix client tokens import <the file or the saved message>\n`,
        );
      } catch (e) {
        // a bundle file whose tokens were not recorded as given must not be sent
        if (written) rmSync(written, { force: true });
        fail('export', e);
      } finally {
        store.close();
      }
    });

  tokens
    .command('rotate')
    .description(
      'revoke now every token you gave out (all contacts): your gateway starts a fresh key epoch; give new bundles to the contacts you still want mail from',
    )
    .action(async (_o: unknown, c: Command) => {
      const cfg = deps.loadCfg(cfgPath(c), 'client tokens rotate');
      if (!cfg) return;
      const store = new PermissionStore(permissionPath(cfg.data_dir));
      try {
        const ctx = await requestContext(cfg, store, {});
        const s = await learnSchedule(ctx, true);
        process.stdout.write(`revoked: every token given before no longer admits mail; now ${describeSchedule(s)}\n`);
      } catch (e) {
        fail('rotate', e);
      } finally {
        store.close();
      }
    });

  tokens
    .command('forget')
    .description('drop the unspent tokens you hold for a recipient (default: only expired ones), e.g. to let mail to it take the SMTP fallback')
    .argument('<recipient>')
    .option('--all', 'also the ones still valid', false)
    .action((recipient: string, opts: { all: boolean }, c: Command) => {
      const cfg = deps.loadCfg(cfgPath(c), 'client tokens forget');
      if (!cfg) return;
      const n = withStores(cfg, (w) => w.forget(recipient, !opts.all));
      process.stdout.write(`${n} token(s) for ${normalizeRecipient(recipient)} dropped\n`);
    });
}
