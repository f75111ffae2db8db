import { EventEmitter } from 'node:events';
import { describe, expect, it } from 'vitest';
import { tolerateClosedPipe } from './closed-pipe.ts';

class FakeStream extends EventEmitter {
  written: string[] = [];
  write = (c: string): boolean => (this.written.push(c), true);
}

describe('tolerateClosedPipe', () => {
  it('after EPIPE the stream drops later writes; any other error still throws', () => {
    const s = new FakeStream();
    tolerateClosedPipe(s);
    tolerateClosedPipe(s); // idempotent: one listener
    expect(s.listenerCount('error')).toBe(1);
    s.write('a');
    expect(() => s.emit('error', Object.assign(new Error('write EPIPE'), { code: 'EPIPE' }))).not.toThrow();
    expect(s.write('b')).toBe(true);
    expect(s.written).toEqual(['a']);
    expect(() => s.emit('error', Object.assign(new Error('disk on fire'), { code: 'EIO' }))).toThrow(/disk on fire/);
  });
});
