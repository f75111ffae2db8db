import { mkdtempSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { CAPTURE_ENV, FRAME_RECORD_BYTES, LinkCapture, readCapturedLengths, readCapturedTimeline } from './capture.ts';

describe('link capture timeline', () => {
  it('records a timestamp per frame per link, in order, across flushes', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'postmix-capture-'));
    try {
      const cap = LinkCapture.fromEnv('peerA', { [CAPTURE_ENV]: dir })!;
      const t0 = Date.now();
      cap.record('/postmix/sphinx/1', 'out', 'peerB', 100);
      cap.record('/postmix/sphinx/1', 'in', 'peerC', 100);
      cap.flush();
      await new Promise((r) => setTimeout(r, 5));
      cap.record('/postmix/sphinx/1', 'out', 'peerB', 100);
      cap.close();
      const tl = readCapturedTimeline(dir, 'peerA');
      expect(tl.links).toEqual(['/postmix/sphinx/1 out peerB', '/postmix/sphinx/1 in peerC']);
      expect(Array.from(tl.link)).toEqual([0, 1, 0]);
      // varint prefix (1 byte for 100) + body
      expect(Array.from(tl.length)).toEqual([101, 101, 101]);
      expect(tl.time[0]!).toBeGreaterThanOrEqual(t0 - 5);
      expect(tl.time[2]! - tl.time[1]!).toBeGreaterThan(4);
      expect(statSync(join(dir, 'peerA.frames.bin')).size).toBe(3 * FRAME_RECORD_BYTES);
      // the length histogram is unchanged
      expect(readCapturedLengths(join(dir, 'peerA.lengths.json')).links['/postmix/sphinx/1 out peerB']).toEqual({ '101': 2 });
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
