/**
 * Finding token bundles in what a user saves from its mail client: the bundle file itself, or a
 * whole message (.eml, RFC 5322, as Thunderbird's "Save As" or mutt's `save`/`pipe` writes it)
 * that carries one or more bundles as attachments. MIME is parsed by mailparser.
 */
import { simpleParser } from 'mailparser';
import { BUNDLE_MEDIA_TYPE, BundleError, parseBundle } from '../proto/tokens/index.ts';

export interface FoundBundle {
  /** where it was found: "file", or `attachment "<name>"` */
  readonly source: string;
  readonly text: string;
}

const MAX_INPUT = 32 * 1024 * 1024;

function looksLikeJson(b: Buffer): boolean {
  const s = b.subarray(0, 64).toString('utf8').trimStart();
  return s.startsWith('{');
}

/**
 * The bundles in `raw`. Throws BundleError with what was found instead when there is none (an
 * encrypted message, attachments that are not bundles, …).
 */
export async function bundlesIn(raw: Buffer): Promise<FoundBundle[]> {
  if (raw.length > MAX_INPUT) throw new BundleError(`the input is ${raw.length} bytes; a bundle or a message carrying one is far smaller`);
  if (looksLikeJson(raw)) return [{ source: 'file', text: raw.toString('utf8') }];
  let mail;
  try {
    mail = await simpleParser(raw, { skipHtmlToText: true, skipTextToHtml: true, skipTextLinks: true });
  } catch (e) {
    throw new BundleError(`neither a token bundle (JSON) nor a mail message: ${(e as Error).message}`);
  }
  if (mail.headers.size === 0) throw new BundleError('neither a token bundle (JSON) nor a mail message (no header)');
  const found: FoundBundle[] = [];
  const seen: string[] = [];
  for (const a of mail.attachments) {
    const name = a.filename ?? '(unnamed)';
    seen.push(`${name} (${a.contentType})`);
    const candidate = a.contentType === BUNDLE_MEDIA_TYPE || a.contentType === 'application/json' || /\.json$/i.test(name) || looksLikeJson(a.content);
    if (!candidate) continue;
    const text = a.content.toString('utf8');
    try {
      parseBundle(text);
      found.push({ source: `attachment "${name}"`, text });
    } catch (e) {
      if (!(e instanceof BundleError)) throw e;
      seen[seen.length - 1] += `: ${e.message}`;
    }
  }
  // a bundle pasted into the body of a plain-text mail
  if (found.length === 0 && mail.text && looksLikeJson(Buffer.from(mail.text))) {
    try {
      parseBundle(mail.text.trim());
      found.push({ source: 'message body', text: mail.text.trim() });
    } catch {
      /* not a bundle */
    }
  }
  if (found.length > 0) return found;
  const ct = mail.headers.get('content-type') as { value?: string } | undefined;
  if (ct?.value === 'multipart/encrypted' || /-----BEGIN PGP MESSAGE-----/.test(mail.text ?? '') || ct?.value === 'application/pkcs7-mime')
    throw new BundleError(
      'the message is still encrypted: save it from your mail client after it decrypted it (or save the attachment itself) and import that',
    );
  throw new BundleError(`no token bundle in this message${seen.length ? `; its attachments: ${seen.join(', ')}` : ' (it has no attachment)'}`);
}
