/** postmix PKI: keys, descriptors, the network document, epochs, verification. See docs/spec/pki.md. */
export * from './errors.ts';
export * from './epoch.ts';
export * from './keys.ts';
export * from './codec.ts';
export * from './signing.ts';
export * from './descriptor.ts';
export * from './peer-id.ts';
export * from './layers.ts';
export * from './topology.ts';
export * from './validity.ts';
export {
  buildDocumentBody,
  signDocumentBody,
  checkDocumentSignature,
  combineSignatures,
  verifyDocument,
  encodeCheckedDocumentBody,
  gatewayForDomain,
  findNode,
  type DocumentParams,
  type VerifyOptions,
  type VerifiedDocument,
} from './document.ts';
