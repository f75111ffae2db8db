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

/** A recipient the smarthost refused at RCPT TO while the transaction went on for the others. */
export interface RecipientRefusal {
  readonly address: string;
  /** 5xx: bounce; 4xx (e.g. 452 too many recipients): try again in a later transaction */
  readonly permanent: boolean;
  readonly error: string;
}

/**
 * ok: the message was taken for every recipient but those in `refused`; not ok: for none of
 * them (`refused`, when given, says why per recipient).
 */
export type RelayResult =
  | { readonly ok: true; readonly response: string; readonly refused?: readonly RecipientRefusal[] }
  | { readonly ok: false; readonly permanent: boolean; readonly error: string; readonly refused?: readonly RecipientRefusal[] };

/**
 * Recipients per SMTP transaction: RFC 5321 §4.5.3.1.8 obliges a server to take at least 100.
 * A server with a lower limit answers 452 to the rest, which then go in the next transaction.
 */
export const MAX_RECIPIENTS_PER_TRANSACTION = 100;

interface RcptError {
  readonly recipient?: string;
  readonly responseCode?: number;
  readonly response?: string;
  readonly message?: string;
}

function refusals(errors: readonly RcptError[] | undefined): RecipientRefusal[] {
  return (errors ?? [])
    .filter((e) => typeof e.recipient === 'string')
    .map((e) => ({
      address: e.recipient!,
      permanent: typeof e.responseCode === 'number' && e.responseCode >= 500,
      error: e.response ?? e.message ?? 'refused',
    }));
}

/** Sends the raw bytes unchanged to the smarthost in one transaction for all of `to`. */
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
    const refused = refusals((info as { rejectedErrors?: RcptError[] }).rejectedErrors);
    return { ok: true, response: String(info.response ?? ''), ...(refused.length ? { refused } : {}) };
  } catch (e) {
    const x = e as { responseCode?: number; rejectedErrors?: RcptError[] };
    const code = x.responseCode;
    const refused = refusals(x.rejectedErrors);
    return {
      ok: false,
      permanent: typeof code === 'number' && code >= 500,
      error: e instanceof Error ? e.message : String(e),
      ...(refused.length ? { refused } : {}),
    };
  } finally {
    t.close();
  }
}
