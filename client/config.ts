/** The client's TOML config (docs/client.md lists every key). Env overrides: POSTMIX_CLIENT_SECTION__KEY. */
import { homedir } from 'node:os';
import { join } from 'node:path';
import { z } from 'zod';
import { b64Key, expandHome, pathField } from '../runtime/config-file.ts';
import { metricsSection } from '../runtime/metrics-config.ts';

const port = z.number().int().min(0).max(65535);

export const ClientConfigSchema = z
  .object({
    data_dir: pathField,
    log: z
      .object({ level: z.enum(['trace', 'debug', 'info', 'warn', 'error', 'fatal']).default('info') })
      .strict()
      .prefault({}),
    smtp: z
      .object({
        host: z.string().default('127.0.0.1'),
        port: port.default(2525),
        /** both empty: no AUTH (refused unless the host is loopback) */
        user: z.string().default(''),
        password: z.string().default(''),
        max_message_bytes: z
          .number()
          .int()
          .min(1024)
          .default(25 * 1024 * 1024),
        /** must be true to listen on a non-loopback address; then STARTTLS is offered and AUTH only after it */
        allow_remote: z.boolean().default(false),
        /** with allow_remote: the certificate (PEM, chain) and key STARTTLS presents; both empty: a self-signed pair made in data_dir */
        tls_cert: z
          .string()
          .default('')
          .transform((p) => expandHome(p)),
        tls_key: z
          .string()
          .default('')
          .transform((p) => expandHome(p)),
      })
      .strict()
      .prefault({}),
    smarthost: z
      .object({
        host: z.string().default(''),
        port: port.default(587),
        secure: z.boolean().default(false),
        require_tls: z.boolean().default(true),
        user: z.string().default(''),
        password: z.string().default(''),
        insecure_tls: z.boolean().default(false),
        /** temporary failures are retried this many times (backing off) before the message bounces */
        max_attempts: z.number().int().min(1).default(12),
        retry_base_ms: z.number().int().min(100).default(60_000),
      })
      .strict()
      .prefault({}),
    routing: z
      .object({
        overlay_only: z.boolean().default(false),
        overlay_only_recipients: z.array(z.string()).default([]),
        force_smtp: z.array(z.string()).default([]),
        /** a domain that had a gateway and lost it: refuse (default) or relay through the smarthost */
        on_gateway_loss: z.enum(['refuse', 'smtp']).default('refuse'),
        /** no usable network document for a recipient that would go by the overlay: hold it (default) or answer 451 */
        no_document: z.enum(['hold', 'refuse']).default('hold'),
      })
      .strict()
      .prefault({}),
    strip: z
      .object({
        received: z.boolean().default(false),
        x_mailer: z.boolean().default(false),
        user_agent: z.boolean().default(false),
        /** replace the Message-ID host part with the From address's domain */
        message_id_host: z.boolean().default(false),
      })
      .strict()
      .prefault({}),
    bounce: z
      .object({ maildir: pathField.default(join(homedir(), 'Maildir')) })
      .strict()
      .prefault({}),
    network: z
      .object({
        /** the cached signed network document (written by the PKI client) */
        document: z
          .string()
          .default('')
          .transform((p) => expandHome(p)),
        /** directory authority base URLs; the daemon fetches the current document from them */
        authority_urls: z.array(z.string().url()).default([]),
        /** longest wait between two document fetches (the next epoch's is also fetched ahead of each boundary) */
        refresh_s: z.number().int().min(1).default(300),
        /** the authorities' identity public keys, base64, as `postmix keygen` prints them and the hops' configs take them */
        authorities: z.array(b64Key).default([]),
        threshold: z.number().int().min(1).default(1),
        /** the home gateway (mailbox for ACKs and loops): a mail domain it serves, or its node id in hex */
        home_gateway: z.string().default(''),
      })
      .strict()
      .prefault({}),
    overlay: z
      .object({
        max_attempts: z.number().int().min(1).max(100).default(5),
        timeout_factor: z.number().min(1).default(3),
        timeout_margin_ms: z.number().int().min(0).default(5_000),
        /** upper bound of the nominal resend wait, which doubles per attempt (proto/mixing/retransmit.ts) */
        timeout_max_s: z.number().int().min(1).default(3600),
        cover: z.boolean().default(true),
        low_tokens_warning: z.number().int().min(0).default(3),
      })
      .strict()
      .prefault({}),
    /** off unless enabled; the same table as the daemons' (runtime/metrics-config.ts) */
    metrics: metricsSection(0, false),
    /** Giving permission: this user as a recipient, requesting tokens from its own gateway (docs/client.md). */
    tokens: z
      .object({
        /** your own address, the recipient your contacts' tokens admit mail to */
        address: z.string().default(''),
        /** the per-user secret your provider gave you (or secret_file, a file holding it) */
        secret: z.string().default(''),
        secret_file: z
          .string()
          .default('')
          .transform((p) => expandHome(p)),
        /** the issuance endpoint; default: the one your gateway publishes in the signed network document */
        issuance_url: z.string().default(''),
        timeout_ms: z.number().int().min(100).default(30_000),
        /** tokens per contact when `tokens export` has no --count */
        bundle_size: z.number().int().min(1).max(1000).default(20),
      })
      .strict()
      .prefault({}),
  })
  .strict();

export type ClientConfig = z.infer<typeof ClientConfigSchema>;

export function outboxPath(c: Pick<ClientConfig, 'data_dir'>): string {
  return join(c.data_dir, 'outbox.sqlite');
}
