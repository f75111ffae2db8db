/** The Sphinx packet layer: pure functions, no I/O (docs/spec/sphinx.md). */
export * from './geometry.ts';
export * from './types.ts';
export * from './suite.ts';
export { nodeSuite } from './suite-node.ts';
export { nobleSuite } from './suite-noble.ts';
export { makeSodiumSuite, type SodiumBinding } from './suite-sodium.ts';
export { fastestSuite, fastestSuiteSelection, selectSuite, requireSodiumNative, type SuiteSelection } from './suite-select.ts';
export { lionessEncrypt, lionessDecrypt } from './lioness.ts';
export { encodeCommands, decodeCommands, type HopCommands } from './commands.ts';
export { deriveHopKeys, type HopKeys } from './keys.ts';
export {
  AD,
  additionalData,
  keyPhase,
  packetKeyPhase,
  SphinxBuildError,
  buildHeader,
  createPacket,
  processPacket,
  prepareHopKey,
  type BuiltHeader,
  type CreatePacketInput,
  type CreatedPacket,
  type HopPrivateKey,
  type ProcessOptions,
} from './packet.ts';
export {
  SURB_SEED_LENGTH,
  createSurb,
  packetFromSurb,
  openSurbReply,
  encodeSurbKeys,
  decodeSurbKeys,
  type SurbKeys,
  type CreatedSurb,
  type CreateSurbInput,
  type SurbUseResult,
} from './surb.ts';
