/**
 * Local submission to a running client's SMTP intake, used by `postmix client send` and
 * `postmix sendmail`: the running daemon is the only writer of the outbox, and the SMTP
 * transaction gives the same 250/4xx/5xx answers a mail client gets.
 */
import nodemailer from 'nodemailer';

export interface SubmitTarget {
  readonly host: string;
  readonly port: number;
  readonly user?: string;
  readonly password?: string;
}

export type SubmitResult =
  | { readonly ok: true; readonly outboxId: string | null; readonly response: string }
  | { readonly ok: false; readonly code: number | null; readonly error: string; readonly rejected: readonly string[] };

export async function submitLocal(t: SubmitTarget, from: string, to: readonly string[], raw: Uint8Array): Promise<SubmitResult> {
  const tr = nodemailer.createTransport({
    host: t.host,
    port: t.port,
    secure: false,
    ignoreTLS: true,
    auth: t.user ? { user: t.user, pass: t.password ?? '' } : undefined,
    connectionTimeout: 10_000,
    socketTimeout: 60_000,
  });
  try {
    const info = await tr.sendMail({ envelope: { from, to: [...to] }, raw: Buffer.from(raw) });
    const response = String(info.response ?? '');
    if (info.rejected && info.rejected.length > 0)
      return { ok: false, code: null, error: `rejected: ${info.rejected.map(String).join(', ')}: ${response}`, rejected: info.rejected.map(String) };
    return { ok: true, outboxId: /queued as (\S+)/.exec(response)?.[1] ?? null, response };
  } catch (e) {
    const x = e as { responseCode?: number; response?: string; rejected?: string[]; message?: string };
    return { ok: false, code: x.responseCode ?? null, error: x.response ?? x.message ?? String(e), rejected: x.rejected ?? [] };
  } finally {
    tr.close();
  }
}
