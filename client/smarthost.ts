/**
 * The SMTP fallback: the message's bytes, unchanged, to the user's smarthost (nodemailer), for
 * recipients the overlay cannot reach. Not anonymous, and the client says so.
 */
import nodemailer from 'nodemailer';

export interface SmarthostConfig {
  readonly host: string;
  readonly port: number;
  /** implicit TLS (465) */
  readonly secure: boolean;
  /** refuse to send without STARTTLS */
  readonly requireTls: boolean;
  readonly user?: string;
  readonly password?: string;
  /** do not verify the certificate ([smarthost] insecure_tls: a relay with a self-signed one, as the testnet runs) */
  readonly insecureTls?: boolean;
}

export type RelayResult = { readonly ok: true; readonly response: string } | { readonly ok: false; readonly permanent: boolean; readonly error: string };

/** Sends the raw bytes unchanged to the smarthost with the given envelope. */
export async function relaySmtp(c: SmarthostConfig, from: string, to: readonly string[], raw: Uint8Array): Promise<RelayResult> {
  const t = nodemailer.createTransport({
    host: c.host,
    port: c.port,
    secure: c.secure,
    requireTLS: c.requireTls,
    ignoreTLS: false,
    auth: c.user ? { user: c.user, pass: c.password ?? '' } : undefined,
    tls: c.insecureTls ? { rejectUnauthorized: false } : undefined,
    connectionTimeout: 30_000,
    greetingTimeout: 30_000,
    socketTimeout: 60_000,
  });
  try {
    const info = await t.sendMail({ envelope: { from, to: [...to] }, raw: Buffer.from(raw) });
    return { ok: true, response: String(info.response ?? '') };
  } catch (e) {
    const code = (e as { responseCode?: number }).responseCode;
    return { ok: false, permanent: typeof code === 'number' && code >= 500, error: e instanceof Error ? e.message : String(e) };
  } finally {
    t.close();
  }
}
