import { spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { appendFileSync, mkdtempSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { LogReplayStore, ReplayStore, type ReplayTagStore } from './replay-store.ts';

let dir: string;
const open: ReplayTagStore[] = [];
beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'postmix-replay-'));
});
afterEach(() => {
  for (const s of open.splice(0)) s.close();
  rmSync(dir, { recursive: true, force: true });
});

const kinds = [
  { kind: 'sqlite', cls: 'ReplayStore', make: (base: string): ReplayTagStore => new ReplayStore(join(base, 'replay.db')) },
  { kind: 'log', cls: 'LogReplayStore', make: (base: string): ReplayTagStore => new LogReplayStore(join(base, 'replay-log')) },
] as const;

describe.each(kinds)('replay store ($kind)', ({ cls, make }) => {
  function store(): ReplayTagStore {
    const s = make(dir);
    open.push(s);
    return s;
  }

  it('reports a tag as seen the second time, per epoch', () => {
    const s = store();
    const t = randomBytes(32);
    expect(s.seenOrAdd(7, t)).toBe(false);
    expect(s.seenOrAdd(7, t)).toBe(true);
    expect(s.seenOrAdd(8, t)).toBe(false); // another epoch key: another set
    expect(s.has(7, t)).toBe(true);
    expect(s.has(9, t)).toBe(false);
    expect(() => s.seenOrAdd(7, new Uint8Array(31))).toThrow(RangeError);
    expect(() => s.seenOrAdd(-1, t)).toThrow(RangeError);
  });

  it('batches: duplicates inside a batch and against earlier tags are replays', () => {
    const s = store();
    const a = randomBytes(32),
      b = randomBytes(32),
      c = randomBytes(32);
    s.seenOrAdd(1, a);
    expect(s.seenOrAddMany(1, [a, b, c, b])).toEqual([true, false, false, true]);
    expect(s.count(1)).toBe(3);
  });

  it('survives close and reopen', () => {
    const s1 = make(dir);
    const tags = Array.from({ length: 1000 }, () => randomBytes(32));
    for (const t of tags) expect(s1.seenOrAdd(42, t)).toBe(false);
    s1.seenOrAddMany(43, tags.slice(0, 10));
    s1.close();
    const s2 = store();
    expect(s2.epochs()).toEqual([42, 43]);
    expect(s2.count(42)).toBe(1000);
    expect(s2.count(43)).toBe(10);
    for (const t of tags) expect(s2.seenOrAdd(42, t)).toBe(true);
  });

  it('keeps a tag when the process is killed (SIGKILL) right after seenOrAdd and flush', () => {
    const tag = randomBytes(32);
    const mod = fileURLToPath(new URL('./replay-store.ts', import.meta.url));
    const script = join(dir, 'kill.ts');
    const ctor =
      cls === 'ReplayStore' ? `new ReplayStore(${JSON.stringify(join(dir, 'replay.db'))})` : `new LogReplayStore(${JSON.stringify(join(dir, 'replay-log'))})`;
    writeFileSync(
      script,
      `import { ${cls} } from ${JSON.stringify(mod)};\n` +
        `const s = ${ctor};\n` +
        `if (s.seenOrAdd(5, Buffer.from(${JSON.stringify(tag.toString('hex'))}, 'hex'))) process.exit(3);\n` +
        `s.flush();\n` +
        `process.kill(process.pid, 'SIGKILL');\n`,
    );
    const r = spawnSync(process.execPath, ['--import', 'tsx', script], { timeout: 30_000, encoding: 'utf8' });
    expect(r.signal).toBe('SIGKILL');
    const s = store();
    expect(s.seenOrAdd(5, tag)).toBe(true);
  });

  it('drops an expired epoch and only that one', () => {
    const s = store();
    const t = randomBytes(32);
    for (const e of [1, 2, 3]) s.seenOrAdd(e, t);
    expect(s.dropEpochsBefore(3)).toEqual([1, 2]);
    expect(s.epochs()).toEqual([3]);
    expect(s.seenOrAdd(1, t)).toBe(false); // a fresh set (the key is gone in practice)
    expect(s.seenOrAdd(3, t)).toBe(true);
    s.dropEpoch(3);
    expect(s.count(3)).toBe(0);
  });
});

describe('LogReplayStore', () => {
  it('holds new tags in memory until flush: exact at once, on disk after one write for all of them', () => {
    const base = join(dir, 'pending');
    const s = new LogReplayStore(base);
    open.push(s);
    const tags = Array.from({ length: 5 }, () => randomBytes(32));
    for (const t of tags.slice(0, 3)) expect(s.seenOrAdd(9, t)).toBe(false);
    expect(s.seenOrAddMany(9, [tags[3]!, tags[0]!, tags[4]!, tags[3]!])).toEqual([false, true, false, true]);
    // the decision is exact before anything is written
    for (const t of tags) expect(s.seenOrAdd(9, t)).toBe(true);
    // and a second store on the directory (what a restart after SIGKILL would read) has none yet
    expect(new LogReplayStore(base).count(9)).toBe(0);
    s.flush();
    expect(statSync(join(base, 'tags-9.log')).size).toBe(5 * 32);
    const again = new LogReplayStore(base);
    open.push(again);
    for (const t of tags) expect(again.has(9, t)).toBe(true);
    s.flush(); // nothing pending: no second copy
    expect(statSync(join(base, 'tags-9.log')).size).toBe(5 * 32);
  });

  it('writes by itself once 2,048 tags are pending, and grows for a larger batch', () => {
    const base = join(dir, 'full');
    const s = new LogReplayStore(base);
    open.push(s);
    for (let i = 0; i < 2048; i++) s.seenOrAdd(3, randomBytes(32));
    expect(statSync(join(base, 'tags-3.log'), { throwIfNoEntry: false })).toBeUndefined();
    s.seenOrAdd(3, randomBytes(32)); // the 2,049th: the 2,048 before it are written first
    expect(statSync(join(base, 'tags-3.log')).size).toBe(2048 * 32);
    const batch = Array.from({ length: 5000 }, () => randomBytes(32));
    expect(s.seenOrAddMany(3, batch).every((x) => !x)).toBe(true);
    s.flush();
    expect(statSync(join(base, 'tags-3.log')).size).toBe(7049 * 32);
    expect(new LogReplayStore(base).count(3)).toBe(7049);
  });

  it('cuts a torn trailing record on open and keeps the whole ones', () => {
    const base = join(dir, 'torn');
    const s1 = new LogReplayStore(base);
    const a = randomBytes(32);
    s1.seenOrAdd(9, a);
    s1.close();
    appendFileSync(join(base, 'tags-9.log'), randomBytes(13)); // a crash mid-write
    const s2 = new LogReplayStore(base);
    open.push(s2);
    expect(s2.count(9)).toBe(1);
    expect(statSync(join(base, 'tags-9.log')).size).toBe(32);
    expect(s2.seenOrAdd(9, a)).toBe(true);
    const b = randomBytes(32);
    expect(s2.seenOrAdd(9, b)).toBe(false);
    s2.flush();
    expect(statSync(join(base, 'tags-9.log')).size).toBe(64);
  });
});
