import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { encodeFrame, encodeFrames, FrameDecoder, FramingError } from './framing.ts';

const SIZE = 2048;

function frame(i: number, size = SIZE): Uint8Array {
  const f = new Uint8Array(size);
  if (size >= 4) {
    new DataView(f.buffer).setUint32(0, i);
    f.fill(i & 0xff, 4);
  }
  return f;
}

describe('framing', () => {
  it('property: any frame sequence, in any chunking, yields exactly the right-size frames in order and counts the others', () => {
    fc.assert(
      fc.property(
        fc.array(fc.oneof(fc.constant(100), fc.integer({ min: 0, max: 300 })), { maxLength: 20 }),
        fc.array(fc.integer({ min: 1, max: 400 }), { minLength: 1, maxLength: 8 }),
        (lengths, cuts) => {
          const frames = lengths.map((len, i) => frame(i, len));
          const bytes = encodeFrames(frames);
          const got: number[] = [];
          let wrong = 0;
          const d = new FrameDecoder(100, { frame: (f) => got.push(new DataView(f.buffer, f.byteOffset).getUint32(0)), wrongSize: () => wrong++ });
          for (let at = 0, k = 0; at < bytes.length; k++) {
            const n = cuts[k % cuts.length]!;
            d.push(bytes.subarray(at, at + n));
            at += n;
          }
          expect(got).toEqual(lengths.flatMap((len, i) => (len === 100 ? [i] : [])));
          expect(wrong).toBe(lengths.filter((len) => len !== 100).length);
          expect(d.idle).toBe(true);
        },
      ),
      { numRuns: 300 },
    );
  });

  it('property: arbitrary bytes never make the decoder throw anything but FramingError', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 2000 }), fc.integer({ min: 1, max: 300 }), (bytes, step) => {
        const d = new FrameDecoder(100, { frame: (f) => expect(f.length).toBe(100), wrongSize: () => {} });
        try {
          for (let at = 0; at < bytes.length; at += step) d.push(bytes.subarray(at, at + step));
        } catch (e) {
          expect(e).toBeInstanceOf(FramingError);
        }
      }),
      { numRuns: 500 },
    );
  });

  it('decodes any chunking of a frame stream and skips wrong-size frames', () => {
    const frames = [frame(1, 100), frame(2, 7), frame(3, 100), frame(4, 300), frame(5, 100)];
    const bytes = encodeFrames(frames);
    for (const step of [1, 3, 64, 101, 4096]) {
      const got: number[] = [];
      const wrong: number[] = [];
      const d = new FrameDecoder(100, {
        frame: (f) => got.push(new DataView(f.buffer, f.byteOffset).getUint32(0)),
        wrongSize: (l) => wrong.push(l),
      });
      for (let i = 0; i < bytes.length; i += step) d.push(bytes.subarray(i, i + step));
      expect(got).toEqual([1, 3, 5]);
      expect(wrong).toEqual([7, 300]);
      expect(d.idle).toBe(true);
    }
    expect(encodeFrame(frame(9, 100))).toEqual(encodeFrames([frame(9, 100)]));
  });

  it('with views, hands out whole frames as views of the chunk and copies split ones', () => {
    const bytes = encodeFrames([frame(1, 100), frame(2, 100), frame(3, 100)]);
    const got: Uint8Array[] = [];
    const d = new FrameDecoder(100, { frame: (f) => got.push(f), wrongSize: () => {} }, { views: true });
    const a = bytes.subarray(0, 150);
    const b = bytes.subarray(150);
    d.push(a);
    d.push(b);
    expect(got.map((f) => new DataView(f.buffer, f.byteOffset).getUint32(0))).toEqual([1, 2, 3]);
    expect(got[0]!.buffer).toBe(bytes.buffer); // inside the first chunk
    expect(got[1]!.buffer).not.toBe(bytes.buffer); // split across the two
    expect(got[2]!.buffer).toBe(bytes.buffer);
    expect(got.every((f) => f.length === 100)).toBe(true);
    // without views every frame is its own buffer
    const own: Uint8Array[] = [];
    new FrameDecoder(100, { frame: (f) => own.push(f), wrongSize: () => {} }).push(bytes);
    expect(own.every((f) => f.buffer !== bytes.buffer && f.byteLength === f.buffer.byteLength)).toBe(true);
  });

  it('rejects an over-long varint prefix', () => {
    const d = new FrameDecoder(100, { frame: () => {}, wrongSize: () => {} });
    expect(() => d.push(new Uint8Array([0xff, 0xff, 0xff, 0xff, 0xff, 0x01]))).toThrow(FramingError);
  });
});
