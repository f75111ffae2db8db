/**
 * A private Postfix instance for integration tests (Debian's postfix package; run as root):
 * its own config, queue, data and Maildir directories under one temp dir, smtpd on a loopback
 * port, virtual Maildir delivery for the given addresses, no chroot, logs to DIR/maillog.
 * Started with `postfix -c DIR start`, stopped with `postfix -c DIR stop`.
 */
import { execFileSync } from 'node:child_process';
import { chmodSync, chownSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const a = s.address();
      const port = typeof a === 'object' && a ? a.port : 0;
      s.close(() => resolve(port));
    });
  });
}

export function postfixAvailable(): string | null {
  if (process.getuid?.() !== 0) return 'the Postfix tests start a private Postfix instance and must run as root';
  if (!existsSync('/usr/sbin/postfix')) return 'postfix is not installed (apt-get install postfix; see .ci/apt-packages)';
  return null;
}

export class PostfixInstance {
  readonly dir: string;
  readonly config: string;
  readonly mailBase: string;
  private running = false;

  private constructor(readonly port: number, readonly domain: string, readonly users: readonly string[]) {
    this.dir = mkdtempSync(join(tmpdir(), 'pmx-postfix-'));
    chmodSync(this.dir, 0o755);
    this.config = join(this.dir, 'etc');
    this.mailBase = join(this.dir, 'mail');
    mkdirSync(this.config);
    mkdirSync(join(this.dir, 'queue'));
    mkdirSync(join(this.dir, 'data'));
    mkdirSync(this.mailBase);
    chownSync(join(this.dir, 'data'), 102, 105);
    const uid = 65534;
    const gid = 65534;
    chownSync(this.mailBase, uid, gid);
    const main = [
      `queue_directory = ${join(this.dir, 'queue')}`,
      `data_directory = ${join(this.dir, 'data')}`,
      'command_directory = /usr/sbin',
      'daemon_directory = /usr/lib/postfix/sbin',
      'meta_directory = /etc/postfix',
      'shlib_directory = /usr/lib/postfix',
      'mail_owner = postfix',
      'setgid_group = postdrop',
      'compatibility_level = 3.6',
      `myhostname = mx.${domain}`,
      'mydomain = localdomain',
      'mydestination = localhost',
      'inet_interfaces = 127.0.0.1',
      'inet_protocols = ipv4',
      'mynetworks = 127.0.0.0/8',
      'smtpd_relay_restrictions = permit_mynetworks, reject',
      'alias_maps =',
      'alias_database =',
      `virtual_mailbox_domains = ${domain}`,
      `virtual_mailbox_base = ${this.mailBase}`,
      `virtual_mailbox_maps = texthash:${join(this.config, 'vmailbox')}`,
      `virtual_uid_maps = static:${uid}`,
      `virtual_gid_maps = static:${gid}`,
      'virtual_minimum_uid = 100',
      `maillog_file = ${join(this.dir, 'maillog')}`,
      `maillog_file_prefixes = ${this.dir}`,
      'smtputf8_enable = no',
      // mail from the gateway is final: no header rewriting, no added Date/Message-ID/From
      'local_header_rewrite_clients =',
      'biff = no',
      'smtpd_banner = $myhostname ESMTP',
      'message_size_limit = 20480000',
    ];
    writeFileSync(join(this.config, 'main.cf'), main.join('\n') + '\n');
    writeFileSync(join(this.config, 'vmailbox'), users.map((u) => `${u} ${domain}/${u.split('@')[0]}/\n`).join(''));
    // the stock master.cf, with smtpd on our loopback port and no chroot
    const master = readFileSync('/etc/postfix/master.cf', 'utf8')
      .split('\n')
      .map((l) => (/^smtp\s+inet\s/.test(l) ? `127.0.0.1:${port} inet n - n - - smtpd` : l))
      .join('\n');
    writeFileSync(join(this.config, 'master.cf'), master);
    execFileSync('/usr/sbin/postconf', ['-c', this.config, '-F', '*/*/chroot = n']);
  }

  static async create(domain: string, users: readonly string[]): Promise<PostfixInstance> {
    return new PostfixInstance(await freePort(), domain, users);
  }

  start(): void {
    execFileSync('/usr/sbin/postfix', ['-c', this.config, 'start'], { stdio: 'pipe' });
    this.running = true;
  }

  async waitListening(timeoutMs = 15_000): Promise<void> {
    const end = Date.now() + timeoutMs;
    while (Date.now() < end) {
      const ok = await new Promise<boolean>((r) => {
        const s = net.connect(this.port, '127.0.0.1');
        s.once('connect', () => (s.destroy(), r(true)));
        s.once('error', () => r(false));
      });
      if (ok) return;
      await new Promise((r) => setTimeout(r, 100));
    }
    throw new Error(`postfix did not listen on ${this.port}; log:\n${this.log()}`);
  }

  stop(): void {
    if (!this.running) return;
    try {
      execFileSync('/usr/sbin/postfix', ['-c', this.config, 'stop'], { stdio: 'pipe' });
    } catch {
      /* already stopped */
    }
    this.running = false;
  }

  /** Waits until the master process is gone (after stop). */
  async waitStopped(timeoutMs = 15_000): Promise<void> {
    const pidFile = join(this.dir, 'queue', 'pid', 'master.pid');
    const end = Date.now() + timeoutMs;
    while (Date.now() < end) {
      let alive = false;
      try {
        const pid = Number(readFileSync(pidFile, 'utf8').trim());
        if (pid > 0) {
          process.kill(pid, 0);
          alive = true;
        }
      } catch {
        alive = false;
      }
      if (!alive) return;
      await new Promise((r) => setTimeout(r, 100));
    }
  }

  log(): string {
    try {
      return readFileSync(join(this.dir, 'maillog'), 'utf8');
    } catch {
      return '(no maillog)';
    }
  }

  /** Files delivered to `user`'s Maildir/new. */
  maildirFiles(user: string): string[] {
    const d = join(this.mailBase, this.domain, user.split('@')[0]!, 'new');
    if (!existsSync(d)) return [];
    return readdirSync(d).sort().map((f) => join(d, f));
  }

  async waitForMail(user: string, n: number, timeoutMs = 20_000): Promise<string[]> {
    const end = Date.now() + timeoutMs;
    for (;;) {
      const files = this.maildirFiles(user);
      if (files.length >= n || Date.now() > end) return files;
      await new Promise((r) => setTimeout(r, 100));
    }
  }

  destroy(): void {
    this.stop();
    rmSync(this.dir, { recursive: true, force: true });
  }
}
