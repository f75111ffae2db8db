/**
 * What the gateway's TLS settings toward its MX (`[mx] starttls`, `tls_verify`) will do against
 * the MX actually configured, said at start and by `postmix gateway run --check`, and the TLS
 * reason of a failed hand-off in words an operator can act on.
 *
 * The trap this exists for: `starttls = "opportunistic"` means "STARTTLS when the MX offers it",
 * NOT "fall back to plaintext when TLS fails". With `tls_verify = true`, an MX that offers
 * STARTTLS with a certificate that does not verify for `[mx] host` (Debian Postfix's usual
 * self-signed snakeoil certificate; any certificate when host is 127.0.0.1) fails every
 * hand-off. The probe speaks just enough SMTP/LMTP (greeting, EHLO/LHLO, STARTTLS, handshake)
 * to tell which case the MX is in; it sends no mail.
 */
import net from 'node:net';
import tls from 'node:tls';

export type StartTls = 'opportunistic' | 'require' | 'never';

export interface MxTlsSettings {
  readonly host: string;
  readonly port: number;
  readonly protocol: 'smtp' | 'lmtp';
  readonly starttls: StartTls;
  readonly tlsVerify: boolean;
  readonly heloName: string;
}

export type MxTlsProbe =
  | { readonly kind: 'unreachable'; readonly error: string }
  | { readonly kind: 'no-starttls' }
  /** STARTTLS offered and the handshake done; `verifyError` null when the certificate verifies for host */
  | { readonly kind: 'starttls'; readonly verifyError: string | null }
  | { readonly kind: 'tls-failed'; readonly error: string };

export interface MxTlsVerdict {
  /** 'fail': every hand-off will fail with these settings; 'warn': works, with a weakness to know */
  readonly level: 'ok' | 'warn' | 'fail';
  readonly text: string;
}

const FIX_VERIFY = (host: string) =>
  `set [mx] tls_verify = false if the MX is on loopback or a link you trust (TLS then still encrypts, without authenticating the MX), ` +
  `or give the MX a certificate that verifies for "${host}"`;

/** Pure: the settings applied to what the probe found. */
export function mxTlsVerdict(s: MxTlsSettings, p: MxTlsProbe): MxTlsVerdict {
  const mx = `${s.protocol}://${s.host}:${s.port}`;
  const setting = `starttls = "${s.starttls}", tls_verify = ${s.tlsVerify}`;
  if (p.kind === 'unreachable') return { level: 'warn', text: `MX ${mx} not reachable (${p.error}): hand-offs queue and retry; TLS (${setting}) not checked` };
  if (s.starttls === 'never')
    return p.kind === 'no-starttls'
      ? { level: 'ok', text: `plaintext to ${mx} (${setting}; the MX offers no STARTTLS)` }
      : {
          level: 'warn',
          text: `plaintext to ${mx} although it offers STARTTLS (${setting}): fine on loopback, otherwise set starttls = "opportunistic" or "require"`,
        };
  if (p.kind === 'no-starttls')
    return s.starttls === 'require'
      ? {
          level: 'fail',
          text: `every hand-off to ${mx} will FAIL: starttls = "require" but the MX offers no STARTTLS; enable TLS on the MX (Postfix: smtpd_tls_security_level = may) or set starttls = "opportunistic"/"never"`,
        }
      : { level: 'warn', text: `plaintext to ${mx}: the MX offers no STARTTLS (${setting}); fine on loopback` };
  if (p.kind === 'tls-failed')
    return {
      level: 'fail',
      text: `every hand-off to ${mx} will FAIL: the STARTTLS handshake fails (${p.error}); set starttls = "never" if the MX is on loopback, or fix the MX's TLS`,
    };
  if (p.verifyError === null) return { level: 'ok', text: `TLS to ${mx}, certificate verified for "${s.host}" (${setting})` };
  if (s.tlsVerify)
    return {
      level: 'fail',
      text: `every hand-off to ${mx} will FAIL: the MX offers STARTTLS but its certificate does not verify (${p.verifyError}), and with tls_verify = true "opportunistic" does not fall back to plaintext; ${FIX_VERIFY(s.host)}`,
    };
  return {
    level: 'warn',
    text: `TLS to ${mx}, certificate NOT verified (${p.verifyError}; ${setting}): encrypted against a passive listener, not against one who can intercept`,
  };
}

/** The TLS reason of a hand-off failure (nodemailer's error), or null when it is not about TLS. */
export function handoffTlsReason(err: { code?: string; message?: string }, s: Pick<MxTlsSettings, 'host' | 'tlsVerify'>): string | null {
  const m = err.message ?? '';
  if (/self[- ]signed|certificate|unable to verify|Hostname\/IP does not match|CERT_|ERR_TLS/i.test(m))
    return `TLS: the MX's certificate does not verify (${m})${s.tlsVerify ? `; ${FIX_VERIFY(s.host)}` : ''}`;
  if (err.code === 'ETLS' || /STARTTLS|TLS|SSL/i.test(m)) return `TLS: ${m}`;
  return null;
}

/** OpenSSL's verify codes (tls.TLSSocket.authorizationError) in words. */
const VERIFY_WORDS: Record<string, string> = {
  DEPTH_ZERO_SELF_SIGNED_CERT: 'self-signed certificate',
  SELF_SIGNED_CERT_IN_CHAIN: 'self-signed certificate in the chain',
  UNABLE_TO_GET_ISSUER_CERT_LOCALLY: 'issued by a CA this host does not trust',
  UNABLE_TO_VERIFY_LEAF_SIGNATURE: 'issued by a CA this host does not trust',
  CERT_HAS_EXPIRED: 'certificate expired',
  CERT_NOT_YET_VALID: 'certificate not yet valid',
  ERR_TLS_CERT_ALTNAME_INVALID: 'certificate does not name the configured host',
};

function verifyWords(code: string): string {
  const w = VERIFY_WORDS[code];
  return w ? `${w}, ${code}` : code;
}

/** Connects, reads the greeting, EHLO/LHLO, STARTTLS if offered, handshakes without rejecting, QUIT. */
export function probeMxTls(s: Pick<MxTlsSettings, 'host' | 'port' | 'protocol' | 'heloName'>, timeoutMs = 5000): Promise<MxTlsProbe> {
  return new Promise((resolve) => {
    let done = false;
    const sock = net.connect(s.port, s.host);
    let tsock: tls.TLSSocket | null = null;
    const finish = (p: MxTlsProbe) => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      const end = tsock ?? sock;
      try {
        end.write('QUIT\r\n');
      } catch {
        /* already closed */
      }
      end.destroy();
      sock.destroy();
      resolve(p);
    };
    const timer = setTimeout(() => finish({ kind: 'unreachable', error: `no answer in ${timeoutMs} ms` }), timeoutMs);
    sock.on('error', (e: NodeJS.ErrnoException) => finish({ kind: 'unreachable', error: e.code ?? e.message }));
    let buf = '';
    let step: 'greeting' | 'ehlo' | 'starttls' = 'greeting';
    const onData = (c: Buffer) => {
      buf += c.toString('latin1');
      // a complete reply: its last line is "ddd " (not "ddd-")
      const lines = buf.split('\r\n');
      const last = lines.at(-2);
      if (last === undefined || !/^\d{3} /.test(last)) return;
      const reply = buf;
      buf = '';
      if (step === 'greeting') {
        if (!reply.startsWith('2')) return finish({ kind: 'unreachable', error: `greeting ${last}` });
        step = 'ehlo';
        sock.write(`${s.protocol === 'lmtp' ? 'LHLO' : 'EHLO'} ${s.heloName}\r\n`);
      } else if (step === 'ehlo') {
        if (!/^250[- ]STARTTLS\b/im.test(reply)) return finish({ kind: 'no-starttls' });
        step = 'starttls';
        sock.write('STARTTLS\r\n');
      } else {
        if (!reply.startsWith('220')) return finish({ kind: 'tls-failed', error: `STARTTLS answered ${last}` });
        sock.off('data', onData);
        const ip = net.isIP(s.host) !== 0;
        tsock = tls.connect({ socket: sock, host: s.host, ...(ip ? {} : { servername: s.host }), rejectUnauthorized: false });
        tsock.once('secureConnect', () => {
          const t = tsock!;
          const e = t.authorizationError;
          const code = e instanceof Error ? ((e as NodeJS.ErrnoException).code ?? e.message) : String(e ?? 'not authorized');
          finish({ kind: 'starttls', verifyError: t.authorized ? null : verifyWords(code) });
        });
        tsock.once('error', (e: Error) => finish({ kind: 'tls-failed', error: e.message }));
      }
    };
    sock.on('data', onData);
  });
}

/** The `[mx]` section of the gateway's config as the settings above. */
export function mxTlsSettingsOf(mx: {
  readonly host: string;
  readonly port: number;
  readonly protocol: 'smtp' | 'lmtp';
  readonly starttls: StartTls;
  readonly tls_verify: boolean;
  readonly helo_name: string;
}): MxTlsSettings {
  return { host: mx.host, port: mx.port, protocol: mx.protocol, starttls: mx.starttls, tlsVerify: mx.tls_verify, heloName: mx.helo_name };
}

/** Probes the MX and says what the settings will do (for `--check` and the start log). */
export async function checkMxTls(s: MxTlsSettings, timeoutMs = 5000): Promise<MxTlsVerdict> {
  return mxTlsVerdict(s, await probeMxTls(s, timeoutMs));
}
