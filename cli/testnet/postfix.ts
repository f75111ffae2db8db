/**
 * Private Postfix instances on loopback, for `postmix testnet --mta postfix` and for tests.
 *
 * Why a private instance: we want a real MTA (Debian's `postfix` package) in the loop without
 * touching the machine's own mail system. Each instance has its own config (`<dir>/etc`), queue,
 * data directory and log file (`<dir>/maillog`) and is driven with `postfix -c <dir>/etc`;
 * nothing is written under /etc/postfix (it is only read, as meta_directory). smtpd listens on
 * 127.0.0.1:<port> only; no chroot, no DNS, no header rewriting for loopback clients.
 *
 * Roles:
 * - `mx`: the recipient's MX. Delivers as nobody/nogroup (65534) into the Maildir
 *   `<mailRoot>/<domain>/<local part>/` (lower-cased). Several instances (one per domain) may
 *   share one mailRoot. With `mailboxes` listed (the testnet, the gateway tests), Postfix's own
 *   virtual(8) agent delivers to exactly those and smtpd refuses anyone else at RCPT TO. Without
 *   them it accepts any local part (a regexp: table checked by smtpd), and delivery is by pipe(8) running a small sh Maildir writer (etc/maildir.sh), NOT by virtual(8):
 *   virtual(8) refuses $1 substitution in regexp: tables ("regular expression substitution is not
 *   allowed", see virtual(8) SECURITY) and also socketmap:/tcp: tables, and Debian's base postfix
 *   has no sqlite/pcre maps, so virtual(8) cannot map ANY local part to its own Maildir. With
 *   flags=DORX, pipe(8) prepends the same trace fields as virtual(8) (Return-Path, X-Original-To,
 *   Delivered-To, above smtpd's Received) and writes LF line ends, like virtual(8).
 * - `relay`: a sender's provider / smarthost: offers STARTTLS (self-signed certificate) and relays
 *   everything from 127.0.0.0/8 to [127.0.0.1]:relayPort.
 *
 * Needs root (postfix's master runs as root and drops privileges per daemon).
 */
import { execFile, execFileSync } from 'node:child_process';
import { chmodSync, chownSync, existsSync, mkdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import { dirname, join, resolve } from 'node:path';

const POSTFIX = '/usr/sbin/postfix';
/** Maildir delivery runs as this uid/gid (nobody/nogroup on Debian). */
const MAIL_UID = 65534;
const MAIL_GID = 65534;

/** null when private Postfix instances can be started here; otherwise why not. */
export function postfixAvailable(): string | null {
  if (process.getuid?.() !== 0) return 'a private Postfix instance must be started as root';
  if (!existsSync(POSTFIX)) return 'postfix is not installed (apt-get install postfix; see .ci/apt-packages)';
  try {
    postfixIds();
  } catch {
    return 'there is no "postfix" user/group (is the postfix package installed properly?)';
  }
  return null;
}

export interface PostfixOptions {
  /** private dir for etc/ queue/ data/ maillog (created if missing) */
  readonly dir: string;
  /** used in myhostname (`<name>.postmix-test.invalid`) */
  readonly name: string;
  /** smtpd on 127.0.0.1:port */
  readonly port: number;
  readonly role:
    | {
        readonly kind: 'mx';
        readonly domains: readonly string[];
        readonly mailRoot: string;
        /**
         * Optional: accept only these addresses (anything else at the domains is refused with
         * 550 5.1.1 at RCPT TO), delivered by virtual(8). Default: any local part, delivered by
         * pipe(8) and a small Maildir writer (virtual(8) cannot map arbitrary local parts).
         */
        readonly mailboxes?: readonly string[];
      }
    | { readonly kind: 'relay'; readonly relayPort: number };
}

export interface PostfixServer {
  readonly dir: string;
  readonly port: number;
  /** Maildir of an address for the mx role: `<mailRoot>/<domain>/<local part>/` (lower-cased) */
  maildir(address: string): string;
  /** postfix -c etc start, then wait until the port accepts connections (throws with the maillog tail on timeout) */
  start(): Promise<void>;
  /** postfix -c etc stop, then wait until the master process has exited (idempotent) */
  stop(): Promise<void>;
  /** maillog contents */
  log(): string;
  /** stop + rm -rf dir (NOT mailRoot) */
  destroy(): Promise<void>;
}

const MASTER_CF = (port: number, extra = '') => `# private instance: smtpd on loopback only, nothing chrooted
127.0.0.1:${port} inet n - n - - smtpd
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
${extra}`;

let ids: { uid: number; gid: number } | undefined;
/** The postfix user's uid/gid (differs between machines). */
function postfixIds(): { uid: number; gid: number } {
  ids ??= {
    uid: Number(
      execFileSync('id', ['-u', 'postfix'], { stdio: ['ignore', 'pipe', 'ignore'] })
        .toString()
        .trim(),
    ),
    gid: Number(
      execFileSync('id', ['-g', 'postfix'], { stdio: ['ignore', 'pipe', 'ignore'] })
        .toString()
        .trim(),
    ),
  };
  return ids;
}

/** Adds o+x (only that bit) to `path` and every parent up to /, so unprivileged daemons can traverse it. */
function makeTraversable(path: string): void {
  for (let p = resolve(path); ; p = dirname(p)) {
    const mode = statSync(p).mode & 0o7777;
    if (!(mode & 0o001)) chmodSync(p, mode | 0o001);
    if (dirname(p) === p) break;
  }
}

/** POSIX ERE escape (for regexp: tables). */
const reEscape = (s: string) => s.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&');

/** sh single-quoting. */
const shQuote = (s: string) => `'${s.replace(/'/g, `'\\''`)}'`;

/** user:group names of MAIL_UID:MAIL_GID, for pipe(8)'s user= (which wants names). */
function mailUserGroup(): string {
  const name = (db: string, id: number) =>
    execFileSync('getent', [db, String(id)], { stdio: ['ignore', 'pipe', 'ignore'] })
      .toString()
      .split(':')[0]!;
  return `${name('passwd', MAIL_UID)}:${name('group', MAIL_GID)}`;
}

/**
 * The Maildir writer pipe(8) runs for each recipient (as nobody:nogroup, message on stdin):
 * `maildir.sh DOMAIN LOCALPART`. Exit codes are sysexits(3): 67 (EX_NOUSER) bounces, 75
 * (EX_TEMPFAIL) defers. Maildir rules: write into tmp/, then rename into new/.
 */
const MAILDIR_SH = (mailRoot: string) => `#!/bin/sh
# Maildir delivery for a private Postfix mx, generated by postmix (cli/testnet/postfix.ts).
umask 077
root=${shQuote(mailRoot)}
domain=$(printf '%s' "$1" | tr '[:upper:]' '[:lower:]')
user=$(printf '%s' "$2" | tr '[:upper:]' '[:lower:]')
case $domain in ''|.*|*/*) echo "unusable domain: $domain" >&2; exit 67 ;; esac
case $user in ''|.*|*/*) echo "unusable local part: $user" >&2; exit 67 ;; esac
dir=$root/$domain/$user
mkdir -p "$dir/tmp" "$dir/new" "$dir/cur" || exit 75
name=$(date +%s.M%NP$$).$(uname -n)
if cat > "$dir/tmp/$name" && sync "$dir/tmp/$name" && mv "$dir/tmp/$name" "$dir/new/$name"; then exit 0; fi
rm -f "$dir/tmp/$name"
exit 75
`;

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

function accepting(port: number): Promise<boolean> {
  return new Promise((r) => {
    const s = net.connect(port, '127.0.0.1');
    s.once('connect', () => (s.destroy(), r(true)));
    s.once('error', () => r(false));
  });
}

function postfixCmd(etc: string, cmd: 'start' | 'stop'): Promise<{ ok: boolean; output: string }> {
  return new Promise((r) => {
    execFile(POSTFIX, ['-c', etc, cmd], { timeout: 60_000 }, (err, stdout, stderr) => r({ ok: !err, output: `${stdout}${stderr}`.trim() }));
  });
}

/** Writes the instance's configuration (and, for the mx role, prepares mailRoot); does not start it. */
export function createPostfix(o: PostfixOptions): PostfixServer {
  const dir = resolve(o.dir);
  // main.cf / master.cf values are whitespace-separated
  for (const p of [dir, ...(o.role.kind === 'mx' ? [resolve(o.role.mailRoot)] : [])]) {
    if (/\s/.test(p)) throw new Error(`postfix ${o.name}: paths with white space are not supported: ${JSON.stringify(p)}`);
  }
  const etc = join(dir, 'etc');
  const queue = join(dir, 'queue');
  const data = join(dir, 'data');
  const maillog = join(dir, 'maillog');
  for (const d of [etc, queue, data]) mkdirSync(d, { recursive: true });
  makeTraversable(dir); // the daemons run as user postfix and must reach their queue
  const pf = postfixIds();
  chownSync(data, pf.uid, pf.gid);

  const main = [
    '# generated by postmix (cli/testnet/postfix.ts): a private instance, see that file',
    'compatibility_level = 3.6',
    `queue_directory = ${queue}`,
    `data_directory = ${data}`,
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
    // treat loopback clients as remote: no header rewriting, no added Message-ID/Date/From
    'local_header_rewrite_clients =',
    // no DNS anywhere: everything is on 127.0.0.1
    'smtp_dns_support_level = disabled',
    'disable_dns_lookups = yes',
    'smtp_host_lookup = native',
    'smtpd_peername_lookup = no',
    'message_size_limit = 20971520',
    'smtputf8_enable = no',
    `maillog_file = ${maillog}`,
    `maillog_file_prefixes = ${dir}`,
    'biff = no',
    'smtpd_banner = $myhostname ESMTP',
    'import_environment = MAIL_CONFIG MAIL_DEBUG MAIL_LOGTAG TZ LANG=C',
  ];

  const role = o.role;
  let mailRoot: string | undefined;
  let masterExtra = '';
  if (role.kind === 'relay') {
    main.push(
      'smtpd_relay_restrictions = permit_mynetworks, reject',
      `relayhost = [127.0.0.1]:${role.relayPort}`,
      `smtpd_tls_cert_file = ${etc}/cert.pem`,
      `smtpd_tls_key_file = ${etc}/key.pem`,
      'smtpd_tls_security_level = may',
    );
    if (!existsSync(join(etc, 'cert.pem'))) {
      execFileSync(
        'openssl',
        ['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', `${etc}/key.pem`, '-out', `${etc}/cert.pem`, '-days', '2', '-subj', `/CN=${o.name}`],
        {
          stdio: 'ignore',
        },
      );
    }
  } else {
    if (role.domains.length === 0) throw new Error('postfix mx role: no domains');
    mailRoot = resolve(role.mailRoot);
    mkdirSync(mailRoot, { recursive: true });
    chownSync(mailRoot, MAIL_UID, MAIL_GID);
    makeTraversable(mailRoot);
    const domains = role.domains.map((d) => d.toLowerCase());
    // RCPT TO validation (smtpd; regexp tables match case-insensitively). The right-hand side is
    // informational (smtpd only needs a match); it names the Maildir below mailRoot. The local
    // part may not contain '/' or start with '.', so it stays one directory below the domain
    // ('/' is the pattern delimiter, hence '\/' inside the bracket expressions). Quoted local parts
    // are refused: smtpd looks up such an address in its quoted form (".hidden"@domain).
    main.push(
      // an MX: mail for its own domains only, from anyone (no relaying)
      'smtpd_relay_restrictions = reject_unauth_destination',
      `virtual_mailbox_domains = ${domains.join(', ')}`,
    );
    if (role.mailboxes) {
      // known mailboxes: Postfix's own virtual(8) delivery agent writes the Maildirs
      const lines = role.mailboxes.map((a) => {
        const [local, domain] = splitAddress(a);
        return `${local}@${domain} ${domain}/${local}/`;
      });
      writeFileSync(join(etc, 'vmailbox'), lines.join('\n') + '\n');
      main.push(
        `virtual_mailbox_base = ${mailRoot}`,
        `virtual_mailbox_maps = texthash:${etc}/vmailbox`,
        `virtual_uid_maps = static:${MAIL_UID}`,
        `virtual_gid_maps = static:${MAIL_GID}`,
        'virtual_minimum_uid = 100',
      );
    } else {
      const lines = domains.map((d) => `/^([^".\\/@[:space:][:cntrl:]][^"\\/@[:space:][:cntrl:]]*)@${reEscape(d)}$/ ${d}/$1/`);
      writeFileSync(join(etc, 'vmailbox.regexp'), lines.join('\n') + '\n');
      main.push(
        `virtual_mailbox_maps = regexp:${etc}/vmailbox.regexp`,
        // delivery: pipe(8) + etc/maildir.sh, one recipient per call (see the file comment)
        'virtual_transport = maildir',
        'maildir_destination_recipient_limit = 1',
      );
      writeFileSync(join(etc, 'maildir.sh'), MAILDIR_SH(mailRoot), { mode: 0o644 });
      chmodSync(join(etc, 'maildir.sh'), 0o644);
      chmodSync(etc, 0o755); // nobody must read the script
      masterExtra = `maildir   unix  -       n       n       -       -       pipe\n  flags=DORX user=${mailUserGroup()} argv=/bin/sh ${etc}/maildir.sh \${domain} \${user}\n`;
    }
  }
  writeFileSync(join(etc, 'main.cf'), main.join('\n') + '\n');
  writeFileSync(join(etc, 'master.cf'), MASTER_CF(o.port, masterExtra));

  const log = (): string => {
    try {
      return readFileSync(maillog, 'utf8');
    } catch {
      return '(no maillog yet)';
    }
  };
  const tail = () => log().split('\n').slice(-40).join('\n');
  const masterPid = (): number | null => {
    try {
      const pid = Number(readFileSync(join(queue, 'pid', 'master.pid'), 'utf8').trim());
      if (!(pid > 0)) return null;
      process.kill(pid, 0);
      return pid;
    } catch {
      return null;
    }
  };

  const server: PostfixServer = {
    dir,
    port: o.port,
    maildir(address: string): string {
      if (!mailRoot) throw new Error(`postfix ${o.name}: maildir() is for the mx role`);
      const [local, domain] = splitAddress(address);
      return join(mailRoot, domain, local) + '/';
    },
    async start(): Promise<void> {
      const r = await postfixCmd(etc, 'start');
      if (!r.ok) throw new Error(`postfix ${o.name}: "postfix -c ${etc} start" failed: ${r.output}\nmaillog tail:\n${tail()}`);
      const end = Date.now() + 20_000;
      while (!(await accepting(o.port))) {
        if (Date.now() > end) throw new Error(`postfix ${o.name} did not accept connections on 127.0.0.1:${o.port}; maillog tail:\n${tail()}`);
        await sleep(100);
      }
    },
    async stop(): Promise<void> {
      const wasRunning = masterPid() !== null;
      await postfixCmd(etc, 'stop'); // fails harmlessly when already stopped
      const end = Date.now() + 20_000;
      // wait until the master has exited and taken its children (which share the listening socket) with it
      while (masterPid() !== null || (wasRunning && (await accepting(o.port)))) {
        if (Date.now() > end) throw new Error(`postfix ${o.name} did not stop; maillog tail:\n${tail()}`);
        await sleep(100);
      }
    },
    log,
    async destroy(): Promise<void> {
      await server.stop();
      rmSync(dir, { recursive: true, force: true });
    },
  };
  return server;
}

function splitAddress(address: string): [local: string, domain: string] {
  const a = address.toLowerCase();
  const at = a.lastIndexOf('@');
  const local = a.slice(0, at);
  if (at <= 0 || local.includes('/') || local.startsWith('.')) throw new Error(`not a usable mailbox address: ${address}`);
  return [local, a.slice(at + 1)];
}

/**
 * Removes the trace fields Postfix prepends on relay and delivery (Return-Path, X-Original-To,
 * Delivered-To, Received, each with its continuation lines) from the top of a delivered message.
 */
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

/**
 * A delivered Maildir file back in the form SMTP carried it: the trace fields removed and the
 * LF line ends Postfix stores turned back into CRLF. Nothing else is undone, so any other change
 * shows up when it is compared with the submitted bytes.
 */
export function postfixAsSubmitted(delivered: Uint8Array | string): Buffer {
  const text = typeof delivered === 'string' ? delivered : Buffer.from(delivered).toString('latin1');
  return Buffer.from(stripPostfixTrace(text).replace(/\r?\n/g, '\r\n'), 'latin1');
}
