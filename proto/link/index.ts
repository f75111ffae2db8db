/** The frame format of the packet link (docs/spec/link.md); the link itself is runtime/link. */
export { encodeFrame, encodeFrames, FrameDecoder, FramingError, varintLength } from './framing.ts';
