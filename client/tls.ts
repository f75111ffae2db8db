/**
 * The certificate the client's SMTP submission presents with STARTTLS (only with
 * `smtp.allow_remote`: a mail client on another host must be able to keep its password off the
 * wire). `smtp.tls_cert` / `smtp.tls_key` name the operator's own pair; with neither set, the
 * daemon makes a self-signed one in `data_dir` on its first start (ECDSA P-256, ten years, both
 * files 0600), reuses it afterwards, and logs its SHA-256 fingerprint, which a mail client pins
 * (msmtp's `tls_fingerprint`) or compares when it asks to trust it (Thunderbird). This is what
 * Debian's Postfix and Dovecot do at install (the "snakeoil" certificate): submission with TLS
 * works at once, and a real certificate replaces it by configuration.
 *
 * The certificate is written by hand in DER (X.509 v3: the subject as its own issuer, a random
 * serial, subjectAltName localhost, 127.0.0.1, ::1, the host name and the listen address), signed
 * with node:crypto, and read back with X509Certificate before it is used.
 */
import { createPrivateKey, generateKeyPairSync, randomBytes, sign, X509Certificate } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import { hostname } from 'node:os';
import { join } from 'node:path';
import { isIP, isIPv4 } from 'node:net';
import { createSecureContext } from 'node:tls';
import { ConfigError } from '../runtime/errors.ts';
import { privateDir, privateFile, writePrivateFile } from '../runtime/private-files.ts';
import type { ClientConfig } from './config.ts';

export const GENERATED_CERT = 'smtp-tls.crt';
export const GENERATED_KEY = 'smtp-tls.key';

export interface SubmissionTls {
  readonly cert: string;
  readonly key: string;
  readonly certFile: string;
  readonly keyFile: string;
  /** SHA-256 of the certificate (DER), colon-separated hex: msmtp's `tls_fingerprint` form */
  readonly fingerprint: string;
  /** true: made by the daemon in data_dir (self-signed) */
  readonly generated: boolean;
}

// ---- DER, as much as a certificate needs ----

function len(n: number): Buffer {
  if (n < 0x80) return Buffer.from([n]);
  const b: number[] = [];
  for (let x = n; x > 0; x = Math.floor(x / 256)) b.unshift(x & 0xff);
  return Buffer.from([0x80 | b.length, ...b]);
}
const tlv = (tag: number, ...body: Buffer[]): Buffer => {
  const v = Buffer.concat(body);
  return Buffer.concat([Buffer.from([tag]), len(v.length), v]);
};
const seq = (...b: Buffer[]) => tlv(0x30, ...b);
function oid(dotted: string): Buffer {
  const [a, b, ...rest] = dotted.split('.').map(Number);
  const out = [a! * 40 + b!];
  for (const n of rest) {
    const parts = [n & 0x7f];
    for (let x = n >>> 7; x > 0; x >>>= 7) parts.unshift(0x80 | (x & 0x7f));
    out.push(...parts);
  }
  return tlv(0x06, Buffer.from(out));
}
function time(d: Date): Buffer {
  const iso = d.toISOString().replace(/[-:T]/g, '').slice(0, 14) + 'Z'; // YYYYMMDDHHMMSSZ
  return d.getUTCFullYear() < 2050 ? tlv(0x17, Buffer.from(iso.slice(2), 'ascii')) : tlv(0x18, Buffer.from(iso, 'ascii'));
}
function ipBytes(ip: string): Buffer {
  if (isIPv4(ip)) return Buffer.from(ip.split('.').map(Number));
  // IPv6: expand '::'
  const [head, tail] = ip.includes('::') ? ip.split('::') : [ip, undefined];
  const h = head ? head.split(':') : [];
  const t = tail ? tail.split(':') : [];
  const groups = tail === undefined ? h : [...h, ...Array<string>(8 - h.length - t.length).fill('0'), ...t];
  return Buffer.concat(groups.map((g) => Buffer.from(g.padStart(4, '0'), 'hex')));
}

/** A self-signed ECDSA P-256 certificate for `names` (DNS names and IP addresses), PEM, with its PKCS#8 key. */
export function selfSignedCertificate(commonName: string, names: readonly string[], now = new Date(), years = 10): { cert: string; key: string } {
  const { publicKey, privateKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
  const ecdsaSha256 = seq(oid('1.2.840.10045.4.3.2'));
  const name = seq(tlv(0x31, seq(oid('2.5.4.3'), tlv(0x0c, Buffer.from(commonName, 'utf8')))));
  const serial = randomBytes(16);
  serial[0] = (serial[0]! & 0x7f) | 0x40; // positive, 16 bytes
  const notAfter = new Date(now);
  notAfter.setUTCFullYear(notAfter.getUTCFullYear() + years);
  const uniq = [...new Set(names.filter((n) => n.length > 0))];
  const general = uniq.map((n) => (isIP(n) ? tlv(0x87, ipBytes(n)) : tlv(0x82, Buffer.from(n, 'ascii'))));
  const extensions = tlv(
    0xa3,
    seq(
      seq(oid('2.5.29.17'), tlv(0x04, seq(...general))), // subjectAltName
      seq(oid('2.5.29.37'), tlv(0x04, seq(oid('1.3.6.1.5.5.7.3.1')))), // extKeyUsage: serverAuth
    ),
  );
  const tbs = seq(
    tlv(0xa0, tlv(0x02, Buffer.from([2]))), // v3
    tlv(0x02, serial),
    ecdsaSha256,
    name,
    seq(time(now), time(notAfter)),
    name,
    publicKey.export({ type: 'spki', format: 'der' }),
    extensions,
  );
  const signature = sign('sha256', tbs, privateKey); // DER Ecdsa-Sig-Value, as X.509 wants it
  const der = seq(tbs, ecdsaSha256, tlv(0x03, Buffer.from([0]), signature));
  const b64 = der.toString('base64').replace(/.{64}/g, '$&\n');
  return {
    cert: `-----BEGIN CERTIFICATE-----\n${b64}${b64.endsWith('\n') ? '' : '\n'}-----END CERTIFICATE-----\n`,
    key: privateKey.export({ type: 'pkcs8', format: 'pem' }).toString(),
  };
}

function readPem(path: string, key: string): string {
  try {
    return readFileSync(path, 'utf8');
  } catch (e) {
    throw new ConfigError(`${key} ${path} cannot be read: ${(e as Error).message}`);
  }
}

/** The TLS keys' rules that need no file (`run --check` too): true when STARTTLS is to be offered. */
export function checkTlsKeys(cfg: ClientConfig): boolean {
  const { tls_cert, tls_key, allow_remote } = cfg.smtp;
  if (!allow_remote) {
    if (tls_cert || tls_key)
      throw new ConfigError('smtp.tls_cert and smtp.tls_key are only used with smtp.allow_remote = true (loopback-only submission offers no STARTTLS)');
    return false;
  }
  if (Boolean(tls_cert) !== Boolean(tls_key))
    throw new ConfigError(`smtp.tls_cert and smtp.tls_key go together: ${tls_cert ? 'smtp.tls_key' : 'smtp.tls_cert'} is not set`);
  return true;
}

/**
 * The certificate and key STARTTLS presents, or null when the submission is loopback-only
 * (`smtp.allow_remote` off: no STARTTLS, as before). Throws ConfigError (exit 78) for half a
 * pair, a file that cannot be read, a certificate or key that does not parse, or a key that is
 * not the certificate's.
 */
export function submissionTls(cfg: ClientConfig, log?: { info(o: object, m?: string): void }): SubmissionTls | null {
  if (!checkTlsKeys(cfg)) return null;
  const { tls_cert, tls_key, host } = cfg.smtp;
  let certFile = tls_cert;
  let keyFile = tls_key;
  let generated = false;
  if (!certFile) {
    certFile = join(cfg.data_dir, GENERATED_CERT);
    keyFile = join(cfg.data_dir, GENERATED_KEY);
    generated = true;
    if (!existsSync(certFile) || !existsSync(keyFile)) {
      privateDir(cfg.data_dir);
      const names = ['localhost', '127.0.0.1', '::1', hostname(), ...(host === '0.0.0.0' || host === '::' ? [] : [host])];
      const made = selfSignedCertificate(`postmix client submission (${hostname()})`, names);
      writePrivateFile(keyFile, made.key);
      writePrivateFile(certFile, made.cert);
      log?.info({ cert: certFile }, 'smtp: made a self-signed certificate for STARTTLS (set smtp.tls_cert and smtp.tls_key to use your own)');
    } else {
      privateFile(keyFile);
      privateFile(certFile);
    }
  }
  const cert = readPem(certFile, generated ? 'the generated certificate' : 'smtp.tls_cert');
  const key = readPem(keyFile, generated ? 'the generated key' : 'smtp.tls_key');
  let x509: X509Certificate;
  try {
    x509 = new X509Certificate(cert);
  } catch (e) {
    throw new ConfigError(`smtp.tls_cert ${certFile} is not a PEM certificate: ${(e as Error).message}`);
  }
  try {
    createPrivateKey(key);
  } catch (e) {
    throw new ConfigError(`smtp.tls_key ${keyFile} is not a PEM private key: ${(e as Error).message}`);
  }
  if (!x509.checkPrivateKey(createPrivateKey(key))) throw new ConfigError(`smtp.tls_key ${keyFile} is not the key of smtp.tls_cert ${certFile}`);
  try {
    createSecureContext({ cert, key });
  } catch (e) {
    throw new ConfigError(`smtp.tls_cert/smtp.tls_key cannot be used for TLS: ${(e as Error).message}`);
  }
  return { cert, key, certFile, keyFile, fingerprint: x509.fingerprint256, generated };
}

/**
 * Where a local submitter (`postmix sendmail`, `client send`) finds the certificate to pin when
 * the submission offers STARTTLS; null when it does not (allow_remote off).
 */
export function submissionCertFile(cfg: ClientConfig): string | null {
  if (!cfg.smtp.allow_remote) return null;
  return cfg.smtp.tls_cert || join(cfg.data_dir, GENERATED_CERT);
}
