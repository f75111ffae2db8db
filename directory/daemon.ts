/**
 * The running authority: HTTP server + epoch scheduler over an Authority (docs/spec/pki.md §6.4).
 */
import { mkdirSync } from 'node:fs';
import { dirname } from 'node:path';
import type { Logger } from 'pino';
import { bytesEqual, epochAt, schedulePoint, SCHEDULE, type DocumentParams, type IdentityKey } from '../proto/pki/index.ts';
import type { AuthorityRef } from '../runtime/config-schema.ts';
import { KeyFileError, listenError } from '../runtime/errors.ts';
import { loadIdentity } from '../runtime/pki/key-store.ts';
import { Authority } from './authority.ts';
import type { ResolvedDirectoryConfig } from './config.ts';
import { DirectoryHttp } from './http.ts';
import { DirectoryMetrics } from './metrics.ts';
import { AuthorityStore } from './store.ts';
import { hex } from '../proto/util/bytes.ts';

export interface RunningDirectory {
  readonly authority: Authority;
  readonly url: string;
  close(): Promise<void>;
}

export interface RunOptions {
  readonly logger: Logger;
  readonly now?: () => number;
  /** Scheduler tick in ms (default 500). */
  readonly tickMs?: number;
  readonly defaultMetrics?: boolean;
}

/**
 * This authority's identity (identity_key) and its entry in [[authorities]]. Throws PkiError for
 * an unreadable key file, KeyFileError when the key is not one of the configured authorities.
 */
export function ownAuthorityKey(cfg: ResolvedDirectoryConfig): { identity: IdentityKey; self: AuthorityRef } {
  const identity = loadIdentity(cfg.identityKeyPath);
  const self = cfg.authorities.find((a) => bytesEqual(a.publicKey, identity.publicKey));
  if (!self) throw new KeyFileError(`the key in ${cfg.identityKeyPath} is not one of the configured [[authorities]]`);
  return { identity, self };
}

export async function runDirectory(cfg: ResolvedDirectoryConfig, opts: RunOptions): Promise<RunningDirectory> {
  const log = opts.logger;
  const { identity, self } = ownAuthorityKey(cfg);
  const n = cfg.file.network;
  const params: DocumentParams = {
    epochConfig: { origin: n.epoch_origin, length: n.epoch_length, grace: n.grace },
    geometry: cfg.geometry,
    mixing: cfg.mixing,
    numLayers: n.layers,
    authorities: cfg.authorities.map((a) => a.publicKey),
    threshold: n.threshold,
    keysAhead: n.keys_ahead,
  };
  mkdirSync(dirname(cfg.databasePath), { recursive: true });
  const store = new AuthorityStore(cfg.databasePath);
  const authority = new Authority({
    identity,
    peers: cfg.authorities.filter((a) => a !== self),
    params,
    store,
    logger: log,
    metrics: new DirectoryMetrics(opts.defaultMetrics ?? false),
    now: opts.now,
    peerTimeoutMs: cfg.file.authority.peer_timeout_ms,
    maxDescriptorsPerEpoch: cfg.file.authority.max_descriptors_per_epoch,
  });
  const http = new DirectoryHttp(authority);
  let addr;
  try {
    addr = await http.listen(cfg.file.authority.listen_host, cfg.file.authority.listen_port);
  } catch (e) {
    store.close();
    throw listenError(e, `authority ${cfg.file.authority.listen_host}:${cfg.file.authority.listen_port}`);
  }
  const url = `http://${addr.address}:${addr.port}`;
  log.info({ url, nodeId: hex(identity.nodeId), authorities: cfg.authorities.length, threshold: n.threshold }, 'directory authority listening');

  // scheduler: during epoch e, work on the document for e + 1
  let stopped = false;
  let busy = false;
  let lastCollect = 0;
  const collectEvery = Math.max(1, params.epochConfig.length / 32);
  const tick = async (): Promise<void> => {
    const now = authority.now();
    const e = epochAt(params.epochConfig, now);
    const target = e + 1;
    if (now >= schedulePoint(params.epochConfig, e, SCHEDULE.vote)) authority.vote(target);
    if (now >= schedulePoint(params.epochConfig, e, SCHEDULE.tally) && !store.getBody(target)) await authority.tally(target);
    const doc = store.getDocument(target);
    if (
      now >= schedulePoint(params.epochConfig, e, SCHEDULE.collect) &&
      (!doc || doc.signers < params.authorities.length) &&
      now - lastCollect >= collectEvery
    ) {
      lastCollect = now;
      await authority.collect(target);
    }
    if (e >= 3) store.prune(e - 2);
  };
  const timer = setInterval(() => {
    if (busy || stopped) return;
    busy = true;
    tick()
      .catch((err: unknown) => log.error({ err: (err as Error).message }, 'scheduler step failed'))
      .finally(() => {
        busy = false;
      });
  }, opts.tickMs ?? 500);
  timer.unref();

  return {
    authority,
    url,
    async close() {
      if (stopped) return;
      stopped = true;
      clearInterval(timer);
      for (let i = 0; busy && i < 100; i++) await new Promise((r) => setTimeout(r, 50));
      await http.close();
      store.close();
      log.info('directory authority stopped');
    },
  };
}
