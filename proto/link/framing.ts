/**
 * Frame codec for `/postmix/sphinx/1` (docs/spec/link.md): every frame is an unsigned LEB128
 * varint length (the same prefix it-length-prefixed writes) followed by that many bytes.
 * The decoder never buffers more than one packet: a frame whose declared length is not the
 * configured packet size is skipped byte by byte as it streams past and counted.
 */

/** Longest varint we accept: 5 bytes cover lengths up to 2^35 - 1. */
const MAX_VARINT_BYTES = 5;

export function varintLength(n: number): number {
  let len = 1;
  while (n >= 0x80) {
    n = Math.floor(n / 128);
    len++;
  }
  return len;
}

function writeVarint(n: number, out: Uint8Array, at: number): number {
  while (n >= 0x80) {
    out[at++] = (n & 0x7f) | 0x80;
    n = Math.floor(n / 128);
  }
  out[at++] = n;
  return at;
}

/** One frame: length prefix + body, in one buffer. */
export function encodeFrame(frame: Uint8Array): Uint8Array {
  const out = new Uint8Array(varintLength(frame.length) + frame.length);
  out.set(frame, writeVarint(frame.length, out, 0));
  return out;
}

/** Several frames concatenated into one buffer, so one stream write carries them all. */
export function encodeFrames(frames: readonly Uint8Array[]): Uint8Array {
  let total = 0;
  for (const f of frames) total += varintLength(f.length) + f.length;
  const out = new Uint8Array(total);
  let at = 0;
  for (const f of frames) {
    at = writeVarint(f.length, out, at);
    out.set(f, at);
    at += f.length;
  }
  return out;
}

export interface FrameDecoderEvents {
  /**
   * A complete frame of exactly the packet size. The buffer is the receiver's, and holds no
   * more memory than the frame, unless the decoder was made with `views` (see FrameDecoderOptions).
   */
  readonly frame: (frame: Uint8Array) => void;
  /** A frame of another declared length went past (its bytes were skipped, not buffered). */
  readonly wrongSize: (declaredLength: number) => void;
}

export interface FrameDecoderOptions {
  /**
   * Hand out a frame that lies whole inside a pushed chunk as a view of that chunk instead of a
   * copy: one allocation and one 2 KiB copy less per frame. The view keeps the whole chunk (a
   * Noise message, up to 64 KiB) alive as long as it is referenced, so only for a receiver that
   * is done with each frame when its callback returns (or copies what it keeps), and only when
   * the pusher never reuses a chunk's memory. A frame split across chunks is always a copy.
   */
  readonly views?: boolean;
}

/** Thrown by `push` when the prefix is not a valid varint: the stream cannot be resynchronised. */
export class FramingError extends Error {
  override readonly name = 'FramingError';
}

/**
 * Incremental decoder. `push` accepts any chunking of the byte stream. Memory held is at most
 * one packet plus a 5-byte prefix, whatever the peer sends.
 */
export class FrameDecoder {
  private readonly packetSize: () => number;
  private readonly events: FrameDecoderEvents;
  // prefix state
  private lenValue = 0;
  private lenShift = 1;
  private lenBytes = 0;
  // body state
  private body: Uint8Array | null = null;
  private bodyFilled = 0;
  private skipRemaining = 0;
  private readonly views: boolean;

  /** `packetSize` may be a function, read at each frame boundary (the size can change per epoch). */
  constructor(packetSize: number | (() => number), events: FrameDecoderEvents, opts: FrameDecoderOptions = {}) {
    if (typeof packetSize === 'number' && (!Number.isInteger(packetSize) || packetSize <= 0)) {
      throw new RangeError(`bad packet size ${packetSize}`);
    }
    this.packetSize = typeof packetSize === 'number' ? () => packetSize : packetSize;
    this.events = events;
    this.views = opts.views === true;
  }

  /** True when the decoder sits exactly between frames (nothing partial held). */
  get idle(): boolean {
    return this.body === null && this.skipRemaining === 0 && this.lenBytes === 0;
  }

  push(chunk: Uint8Array): void {
    let i = 0;
    const n = chunk.length;
    while (i < n) {
      if (this.skipRemaining > 0) {
        const take = Math.min(this.skipRemaining, n - i);
        this.skipRemaining -= take;
        i += take;
        continue;
      }
      if (this.body !== null) {
        const take = Math.min(this.body.length - this.bodyFilled, n - i);
        this.body.set(chunk.subarray(i, i + take), this.bodyFilled);
        this.bodyFilled += take;
        i += take;
        if (this.bodyFilled === this.body.length) {
          const frame = this.body;
          this.body = null;
          this.bodyFilled = 0;
          this.events.frame(frame);
        }
        continue;
      }
      // length prefix, byte by byte (it may straddle chunks)
      const b = chunk[i++] as number;
      this.lenValue += (b & 0x7f) * this.lenShift;
      this.lenShift *= 128;
      this.lenBytes++;
      if (b & 0x80) {
        if (this.lenBytes >= MAX_VARINT_BYTES) throw new FramingError('length prefix longer than 5 bytes');
        continue;
      }
      const len = this.lenValue;
      this.lenValue = 0;
      this.lenShift = 1;
      this.lenBytes = 0;
      if (len !== this.packetSize()) {
        this.skipRemaining = len;
        this.events.wrongSize(len);
        continue;
      }
      if (n - i >= len) {
        // by default a copy (into a plain Uint8Array), so the frame does not pin the larger network buffer
        const frame = this.views ? chunk.subarray(i, i + len) : new Uint8Array(chunk.subarray(i, i + len));
        i += len;
        this.events.frame(frame);
      } else {
        this.body = new Uint8Array(len);
        this.bodyFilled = 0;
      }
    }
  }
}
