/**
 * Test support: throw-away Postfix instances on loopback (separate config, queue and data
 * directories under a temp dir; needs root and the Debian `postfix` package). One acts as the
 * sender's provider (smarthost: relays everything from 127.0.0.0/8 to `relayPort`, offers
 * STARTTLS with a self-signed certificate), one as the recipient's MX (virtual Maildir delivery
 * for the listed addresses).
 */
import { execFileSync } from 'node:child_process';
import { chownSync, mkdirSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { join } from 'node:path';

export interface PostfixInstance {
  readonly dir: string;
  readonly port: number;
  /** Maildir of a virtual mailbox (mx role) */
  maildir(localPart: string): string;
  stop(): void;
}

export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const a = s.address();
      const p = typeof a === 'object' && a ? a.port : 0;
      s.close(() => resolve(p));
    });
  });
}

const MASTER_CF = (port: number) => `127.0.0.1:${port} inet n - n - - smtpd
pickup    unix  n       -       n       60      1       pickup
cleanup   unix  n       -       n       -       0       cleanup
qmgr      unix  n       -       n       300     1       qmgr
tlsmgr    unix  -       -       n       1000?   1       tlsmgr
rewrite   unix  -       -       n       -       -       trivial-rewrite
bounce    unix  -       -       n       -       0       bounce
defer     unix  -       -       n       -       0       bounce
trace     unix  -       -       n       -       0       bounce
verify    unix  -       -       n       -       1       verify
flush     unix  n       -       n       1000?   0       flush
proxymap  unix  -       -       n       -       -       proxymap
smtp      unix  -       -       n       -       -       smtp
relay     unix  -       -       n       -       -       smtp
showq     unix  n       -       n       -       -       showq
error     unix  -       -       n       -       -       error
retry     unix  -       -       n       -       -       error
discard   unix  -       -       n       -       -       discard
virtual   unix  -       n       n       -       -       virtual
anvil     unix  -       -       n       -       1       anvil
scache    unix  -       -       n       -       1       scache
postlog   unix-dgram n  -       n       -       1       postlogd
`;

export interface PostfixOptions {
  readonly dir: string;
  readonly name: string;
  readonly port: number;
  readonly role: { readonly kind: 'relay'; readonly relayPort: number } | { readonly kind: 'mx'; readonly domain: string; readonly mailboxes: readonly string[] };
}

export function startPostfix(o: PostfixOptions): PostfixInstance {
  const d = o.dir;
  const etc = join(d, 'etc');
  for (const x of ['etc', 'queue', 'data', 'mail']) mkdirSync(join(d, x), { recursive: true });
  const pf = Number(execFileSync('id', ['-u', 'postfix']).toString().trim());
  const pfg = Number(execFileSync('id', ['-g', 'postfix']).toString().trim());
  chownSync(join(d, 'data'), pf, pfg);
  const main = [
    'compatibility_level = 3.6',
    `queue_directory = ${d}/queue`,
    `data_directory = ${d}/data`,
    'command_directory = /usr/sbin',
    'daemon_directory = /usr/lib/postfix/sbin',
    'shlib_directory = /usr/lib/postfix',
    'meta_directory = /etc/postfix',
    'mail_owner = postfix',
    'setgid_group = postdrop',
    `myhostname = ${o.name}.postmix-test.invalid`,
    'mydomain = postmix-test.invalid',
    'myorigin = $myhostname',
    'inet_interfaces = 127.0.0.1',
    'inet_protocols = ipv4',
    'mynetworks = 127.0.0.0/8',
    'mydestination =',
    'local_transport = error:no local delivery',
    'alias_maps =',
    'alias_database =',
    // treat loopback clients as remote: no header rewriting, no added Message-ID/Date
    'local_header_rewrite_clients =',
    'smtpd_relay_restrictions = permit_mynetworks reject',
    'smtp_dns_support_level = disabled',
    'disable_dns_lookups = yes',
    'smtp_host_lookup = native',
    `maillog_file = ${d}/maillog`,
    `maillog_file_prefixes = ${d}`,
    'biff = no',
    'import_environment = MAIL_CONFIG MAIL_DEBUG MAIL_LOGTAG TZ LANG=C',
  ];
  if (o.role.kind === 'relay') {
    main.push(
      `relayhost = [127.0.0.1]:${o.role.relayPort}`,
      `smtpd_tls_cert_file = ${etc}/cert.pem`,
      `smtpd_tls_key_file = ${etc}/key.pem`,
      'smtpd_tls_security_level = may',
    );
    execFileSync('openssl', ['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', `${etc}/key.pem`, '-out', `${etc}/cert.pem`, '-days', '2', '-subj', `/CN=${o.name}`], {
      stdio: 'ignore',
    });
  } else {
    main.push(
      `virtual_mailbox_domains = ${o.role.domain}`,
      `virtual_mailbox_base = ${d}/mail`,
      `virtual_mailbox_maps = texthash:${etc}/vmailbox`,
      'virtual_uid_maps = static:65534',
      'virtual_gid_maps = static:65534',
      'virtual_minimum_uid = 100',
    );
    writeFileSync(join(etc, 'vmailbox'), o.role.mailboxes.map((m) => `${m}@${o.role.kind === 'mx' ? o.role.domain : ''} ${m}/\n`).join(''));
    chownSync(join(d, 'mail'), 65534, 65534);
  }
  writeFileSync(join(etc, 'main.cf'), main.join('\n') + '\n');
  writeFileSync(join(etc, 'master.cf'), MASTER_CF(o.port));
  try {
    execFileSync('postfix', ['-c', etc, 'set-permissions'], { stdio: 'ignore' });
  } catch {
    /* not needed for a fresh queue */
  }
  execFileSync('postfix', ['-c', etc, 'start'], { stdio: 'ignore' });
  return {
    dir: d,
    port: o.port,
    maildir: (lp) => join(d, 'mail', lp),
    stop() {
      try {
        execFileSync('postfix', ['-c', etc, 'stop'], { stdio: 'ignore' });
      } catch {
        /* already stopped */
      }
    },
  };
}

/** Removes the trace fields Postfix prepends on relay and delivery (Return-Path, X-Original-To, Delivered-To, Received). */
export function stripPostfixTrace(delivered: string): string {
  const lines = delivered.split('\n');
  let i = 0;
  const trace = /^(Return-Path|X-Original-To|Delivered-To|Received):/i;
  while (i < lines.length && trace.test(lines[i]!)) {
    i++;
    while (i < lines.length && /^[ \t]/.test(lines[i]!)) i++;
  }
  return lines.slice(i).join('\n');
}
