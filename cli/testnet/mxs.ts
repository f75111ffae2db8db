/**
 * The testnet's MXs, its first phase: one per domain (alpha.test and beta.test behind gateways,
 * gamma.test without), embedded Maildir writers or private Postfix instances, and the senders'
 * provider that the clients' SMTP fallback goes through.
 */
import { join } from 'node:path';
import { startMaildirMx } from './maildir-mx.ts';
import type { MtaKind } from './messages.ts';
import { freePort } from './ports.ts';
import { createPostfix, postfixAvailable } from './postfix.ts';

export const DOMAINS = { a: 'alpha.test', b: 'beta.test', c: 'gamma.test' } as const;

/** Where the clients relay the SMTP fallback (the [smarthost] of their configs). */
export interface Smarthost {
  readonly host: string;
  readonly port: number;
  readonly require_tls: boolean;
  readonly insecure_tls: boolean;
}

export interface Mxs {
  /** per domain */
  readonly byDomain: ReadonlyMap<string, RunningMx>;
  readonly smarthost: Smarthost;
}

/** An MX the run can take down and bring back on the same port. */
export interface RunningMx {
  readonly domain: string;
  readonly port: number;
  stop(): Promise<void>;
  start(): Promise<void>;
  close(): Promise<void>;
}

async function embeddedMx(domain: string, root: string, host: string): Promise<RunningMx> {
  let server = await startMaildirMx({ host, port: 0, domains: [domain], root });
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
      server = await startMaildirMx({ host, port, domains: [domain], root });
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

/**
 * Starts the MXs and the senders' provider; `closers` gets what stops them. With Postfix the
 * provider is a relay of its own (STARTTLS, self-signed) in front of gamma.test's MX; embedded,
 * gamma.test's MX itself takes the clients' submissions.
 */
export async function startMxs(
  /** host: where the MXs listen (the testnet's own address: 127.0.0.1, or the bridge's with --netns) */
  o: { mta: MtaKind; keep: boolean; host?: string },
  dir: string,
  mailRoot: string,
  closers: (() => Promise<void>)[],
  log: (s: string) => void,
): Promise<Mxs> {
  const host = o.host ?? '127.0.0.1';
  if (o.mta === 'postfix') {
    const why = postfixAvailable();
    if (why) throw new Error(`--mta postfix: ${why}`);
    if (host !== '127.0.0.1') throw new Error('--mta postfix listens on loopback only: not built with --netns yet (use the embedded MXs)');
  }
  const byDomain = new Map<string, RunningMx>();
  for (const d of [DOMAINS.a, DOMAINS.b, DOMAINS.c]) {
    const users = { [DOMAINS.a]: ['alice'], [DOMAINS.b]: ['bob'], [DOMAINS.c]: ['carol'] }[d]!.map((u) => `${u}@${d}`);
    const mx = o.mta === 'postfix' ? await postfixMx(d, users, dir, mailRoot, o.keep) : await embeddedMx(d, mailRoot, host);
    closers.push(() => mx.close());
    byDomain.set(d, mx);
  }
  const ports = [...byDomain.values()].map((m) => m.port);
  if (o.mta !== 'postfix') {
    log('MX: embedded SMTP servers writing Maildirs for alpha.test, beta.test, and gamma.test (which also takes the SMTP fallback)');
    return { byDomain, smarthost: { host, port: byDomain.get(DOMAINS.c)!.port, require_tls: false, insecure_tls: false } };
  }
  const relay = createPostfix({
    dir: join(dir, 'postfix', 'relay'),
    name: 'provider-relay',
    port: await freePort(),
    role: { kind: 'relay', relayPort: byDomain.get(DOMAINS.c)!.port },
  });
  await relay.start();
  closers.push(() => (o.keep ? relay.stop() : relay.destroy()));
  log(
    `MX: private Postfix instances (virtual(8) Maildir delivery) for alpha.test, beta.test and gamma.test (ports ${ports.join(', ')}); ` +
      `the senders' provider relay, also Postfix (STARTTLS), on port ${relay.port}`,
  );
  return { byDomain, smarthost: { host: '127.0.0.1', port: relay.port, require_tls: true, insecure_tls: true } };
}
