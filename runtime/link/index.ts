/** The packet link shared by mix nodes, gateways and clients (docs/spec/link.md). */
export { SPHINX_PROTOCOL, PacketLink, parseMultiaddr } from './link.ts';
export type { FrameHandler, FrameObserver, LinkCounters, LinkLogger, PacketLinkOptions } from './link.ts';
export { peerIdFromEd25519PublicKey, peerIdFromSeed, privateKeyFromSeed } from './identity.ts';
export { CAPTURE_ENV, LinkCapture, readCapturedLengths, readRecentFrames } from './capture.ts';
export type { CapturedFrame, CapturedLengths } from './capture.ts';
