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

  it('keeps a committed tag when the process is killed (SIGKILL) right after seenOrAdd', () => {
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
    expect(statSync(join(base, 'tags-9.log')).size).toBe(64);
  });
});
