/**
 * A network document signed by a one-authority directory made up for a test, listing one
 * gateway with the issuer key and issuance URL the test gives: what a client needs to take its
 * gateway's issuer key from a signed document, without running authorities.
 */
import { writeFileSync } from 'node:fs';
import { combineSignatures, encodeCheckedDocumentBody, generateIdentity, signDocumentBody, type IdentityKey } from '../../proto/pki/index.ts';
import { testDocumentBody } from './pki.ts';

export interface SignedTestDocument {
  readonly authority: IdentityKey;
  /** the authority key in base64, as a client config's [network] authorities takes it */
  readonly authorityB64: string;
  readonly bytes: Uint8Array;
}

export function signedDocument(gateway: { domain: string; issuerKey: Uint8Array; url: string }, nowS = Math.floor(Date.now() / 1000)): SignedTestDocument {
  const body = testDocumentBody([1, 1, 1], { gateways: 1 });
  const authority = generateIdentity();
  const signedBody = encodeCheckedDocumentBody({
    ...body,
    epoch: 1000,
    validAfter: nowS - 60,
    freshUntil: nowS - 60 + 3600,
    validUntil: nowS - 60 + 3600,
    epochLength: 3600,
    authorities: [authority.publicKey],
    threshold: 1,
    gateways: body.gateways.map((g) => ({
      ...g,
      gateway: {
        domains: [gateway.domain],
        issuerKeys: [{ keyEpoch: 0, publicKey: gateway.issuerKey }],
        keyDirectoryUrl: gateway.url,
        policy: 'token-required',
      },
    })),
  });
  const bytes = combineSignatures(signedBody, [signDocumentBody(authority, signedBody)]);
  return { authority, authorityB64: Buffer.from(authority.publicKey).toString('base64'), bytes };
}

/** The [network] and [tokens] parts of a client config (TOML) that use such a document. */
export function clientConfigToml(o: {
  dataDir: string;
  documentPath: string;
  doc: SignedTestDocument;
  address: string;
  secret?: string;
  issuanceUrl?: string;
  smtpPort?: number;
}): string {
  writeFileSync(o.documentPath, o.doc.bytes);
  const q = JSON.stringify;
  return (
    [
      `data_dir = ${q(o.dataDir)}`,
      `[log]\nlevel = "warn"`,
      `[smtp]\nhost = "127.0.0.1"\nport = ${o.smtpPort ?? 0}`,
      `[network]\ndocument = ${q(o.documentPath)}\nauthorities = [${q(o.doc.authorityB64)}]\nthreshold = 1`,
      `[tokens]\naddress = ${q(o.address)}\nsecret = ${q(o.secret ?? '')}\nissuance_url = ${q(o.issuanceUrl ?? '')}\ntimeout_ms = 10000`,
    ].join('\n') + '\n'
  );
}
