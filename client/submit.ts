/**
 * Local submission to a running client's SMTP intake, used by `postmix client send` and
 * `postmix sendmail`: the running daemon is the only writer of the outbox, and the SMTP
 * transaction gives the same 250/4xx/5xx answers a mail client gets.
 */
import { X509Certificate } from 'node:crypto';
import { rootCertificates, type ConnectionOptions, type PeerCertificate } from 'node:tls';
import nodemailer from 'nodemailer';

export interface SubmitTarget {
  readonly host: string;
  readonly port: number;
  readonly user?: string;
  readonly password?: string;
  /**
   * The submission's certificate (PEM) when it offers STARTTLS (smtp.allow_remote): then TLS is
   * required and the server must present exactly this certificate (its SHA-256 is pinned; the
   * host name, often 0.0.0.0, is not checked against it).
   */
  readonly certificate?: string;
}

export type SubmitResult =
  | { readonly ok: true; readonly outboxId: string | null; readonly response: string }
  | {
      readonly ok: false;
      readonly code: number | null;
      readonly error: string;
      readonly rejected: readonly string[];
      /** the reply to DATA, when the message was taken for the other recipients */
      readonly response?: string;
    };

/**
 * The per-recipient lines of the client's reply to DATA (client/smtp-server.ts): the queue id
 * line, then `<addr> overlay: ...`, `<addr> smtp fallback (not anonymous): ...`, `<addr> refused (550): ...`.
 */
export function replyLines(response: string): string[] {
  return response
    .split(/\r?\n/)
    .map((l) => l.replace(/^\d{3}[- ]/, '').replace(/^2\.0\.0 /, ''))
    .filter((l) => l.length > 0);
}

/**
 * nodemailer's TLS options for the client's intake: none without a certificate (loopback, no
 * STARTTLS); else STARTTLS required, and the server must present exactly `certificate` (the
 * system's roots and the file are the trust anchors, so a self-signed one and a CA-issued chain
 * both verify; the SHA-256 of its leaf is then pinned instead of the host name).
 */
export function submissionTlsOptions(certificate: string | undefined): { ignoreTLS: true } | { requireTLS: true; tls: ConnectionOptions } {
  if (!certificate) return { ignoreTLS: true };
  const pinned = new X509Certificate(certificate).fingerprint256;
  return {
    requireTLS: true,
    tls: {
      ca: [...rootCertificates, certificate],
      checkServerIdentity: (_host: string, cert: PeerCertificate) =>
        cert.fingerprint256 === pinned ? undefined : new Error(`the submission presented certificate ${cert.fingerprint256}, not the configured ${pinned}`),
    },
  };
}

export async function submitLocal(t: SubmitTarget, from: string, to: readonly string[], raw: Uint8Array): Promise<SubmitResult> {
  const tr = nodemailer.createTransport({
    host: t.host,
    port: t.port,
    secure: false,
    ...submissionTlsOptions(t.certificate),
    auth: t.user ? { user: t.user, pass: t.password ?? '' } : undefined,
    connectionTimeout: 10_000,
    socketTimeout: 60_000,
  });
  try {
    const info = await tr.sendMail({ envelope: { from, to: [...to] }, raw: Buffer.from(raw) });
    const response = String(info.response ?? '');
    if (info.rejected && info.rejected.length > 0)
      return {
        ok: false,
        code: null,
        error: `rejected: ${info.rejected.map(String).join(', ')}: ${response}`,
        rejected: info.rejected.map(String),
        response,
      };
    return { ok: true, outboxId: /queued as (\S+)/.exec(response)?.[1] ?? null, response };
  } catch (e) {
    const x = e as { responseCode?: number; response?: string; rejected?: string[]; message?: string };
    return { ok: false, code: x.responseCode ?? null, error: x.response ?? x.message ?? String(e), rejected: x.rejected ?? [] };
  } finally {
    tr.close();
  }
}
