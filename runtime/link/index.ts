/** The packet link shared by mix nodes, gateways and clients (docs/spec/link.md). */
export { SPHINX_PROTOCOL, PacketLink, parseMultiaddr } from './link.ts';
export type { FrameHandler, FrameObserver, LinkCounters, LinkLogger, PacketLinkOptions } from './link.ts';
export { peerIdFromEd25519PublicKey, peerIdFromSeed, privateKeyFromSeed } from './identity.ts';
export { CAPTURE_ENV, FRAME_RECORD_BYTES, LinkCapture, readCapturedLengths, readCapturedTimeline, readRecentFrames } from './capture.ts';
export type { CapturedFrame, CapturedLengths, CapturedTimeline } from './capture.ts';
