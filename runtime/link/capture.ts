/**
 * Link capture, for tests and diagnostics only: with POSTMIX_LINK_CAPTURE=<dir> in its
 * environment, every PacketLink records what crosses it, so a test can check the wire from the
 * outside instead of trusting the code that writes it.
 *
 * - `<dir>/<peer id>.lengths.json`: for every link (protocol × direction × neighbour) a
 *   histogram of the on-wire frame lengths (varint prefix + body) — including inbound Sphinx
 *   frames of the wrong size, which the decoder skips. A passive observer's first question is
 *   "do lengths differ?": here the answer must be one length per protocol, network-wide.
 * - `<dir>/<peer id>.recent.bin`: the last RECENT_FRAMES inbound frames (whole), so a test can
 *   re-inject a frame a node has already processed and watch it be dropped as a replay.
 * - `<dir>/<peer id>.frames.bin` and `.frames.json`: a timestamp per frame per link (what a
 *   global passive observer sees: when each frame crossed which link), so `postmix sim analyze`
 *   can measure per-hop delays and rebuild the adversary's trace from the real network.
 *
 * Files are rewritten (tmp + rename) every FLUSH_MS and on close; nothing is written on the
 * packet path itself. Off by default: a production node never keeps packets it has forwarded.
 */
import { appendFileSync, mkdirSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { varintLength } from '../../proto/link/framing.ts';

export const CAPTURE_ENV = 'POSTMIX_LINK_CAPTURE';
const RECENT_FRAMES = 64;
const FLUSH_MS = 500;

export type CaptureDirection = 'in' | 'out';

export interface CapturedLengths {
  readonly peer: string;
  /** key `${protocol} ${direction} ${neighbour peer id}` → { wire length → frames } */
  readonly links: Record<string, Record<string, number>>;
}

export interface CapturedFrame {
  /** the neighbour the frame came from */
  readonly from: string;
  /** wall-clock ms when it arrived */
  readonly at: number;
  readonly frame: Uint8Array;
}

/** One record of `<peer>.frames.bin`: f64 time (ms since the epoch) | u32 link | u32 wire length, big-endian. */
export const FRAME_RECORD_BYTES = 16;

export interface CapturedTimeline {
  readonly peer: string;
  /** link index → `${protocol} ${direction} ${neighbour peer id}` */
  readonly links: readonly string[];
  /** per frame: when (ms since the epoch, sub-millisecond), which link, on-wire length */
  readonly time: Float64Array;
  readonly link: Uint32Array;
  readonly length: Uint32Array;
}

export class LinkCapture {
  private readonly links = new Map<string, Map<number, number>>();
  private readonly linkIndex = new Map<string, number>();
  private pending = Buffer.alloc(64 * FRAME_RECORD_BYTES);
  private pendingBytes = 0;
  private readonly recent: CapturedFrame[] = [];
  private dirty = false;
  private readonly timer: NodeJS.Timeout;

  private constructor(
    private readonly dir: string,
    private readonly peer: string,
  ) {
    mkdirSync(dir, { recursive: true });
    this.timer = setInterval(() => this.flush(), FLUSH_MS);
    this.timer.unref();
  }

  /** A capture when the environment asks for one, else undefined (the normal case). */
  static fromEnv(peer: string, env: NodeJS.ProcessEnv = process.env): LinkCapture | undefined {
    const dir = env[CAPTURE_ENV];
    return dir ? new LinkCapture(dir, peer) : undefined;
  }

  /**
   * One frame of `bodyLength` bytes (its declared length, for a skipped inbound frame) on
   * `protocol`; whole inbound frames given as `frame` are kept among the recent ones.
   */
  record(protocol: string, direction: CaptureDirection, neighbour: string, bodyLength: number, frame?: Uint8Array): void {
    const key = `${protocol} ${direction} ${neighbour}`;
    let h = this.links.get(key);
    if (!h) this.links.set(key, (h = new Map()));
    const wire = varintLength(bodyLength) + bodyLength;
    h.set(wire, (h.get(wire) ?? 0) + 1);
    let li = this.linkIndex.get(key);
    if (li === undefined) this.linkIndex.set(key, (li = this.linkIndex.size));
    if (this.pendingBytes + FRAME_RECORD_BYTES > this.pending.length) {
      const b = Buffer.alloc(this.pending.length * 2);
      this.pending.copy(b, 0, 0, this.pendingBytes);
      this.pending = b;
    }
    // wall-clock ms with the monotonic clock's resolution, comparable across processes on one host
    this.pending.writeDoubleBE(performance.timeOrigin + performance.now(), this.pendingBytes);
    this.pending.writeUInt32BE(li, this.pendingBytes + 8);
    this.pending.writeUInt32BE(wire, this.pendingBytes + 12);
    this.pendingBytes += FRAME_RECORD_BYTES;
    if (direction === 'in' && frame) {
      this.recent.push({ from: neighbour, at: Date.now(), frame: frame.slice() });
      if (this.recent.length > RECENT_FRAMES) this.recent.shift();
    }
    this.dirty = true;
  }

  flush(): void {
    if (!this.dirty) return;
    this.dirty = false;
    const lengths: CapturedLengths = {
      peer: this.peer,
      links: Object.fromEntries([...this.links].map(([k, h]) => [k, Object.fromEntries([...h].map(([len, n]) => [String(len), n]))])),
    };
    atomicWrite(join(this.dir, `${this.peer}.lengths.json`), JSON.stringify(lengths));
    atomicWrite(join(this.dir, `${this.peer}.recent.bin`), encodeRecent(this.recent));
    // the index first: a reader that sees a record always finds its link
    atomicWrite(join(this.dir, `${this.peer}.frames.json`), JSON.stringify({ peer: this.peer, links: [...this.linkIndex.keys()] }));
    appendFileSync(join(this.dir, `${this.peer}.frames.bin`), this.pending.subarray(0, this.pendingBytes));
    this.pendingBytes = 0;
  }

  close(): void {
    clearInterval(this.timer);
    this.flush();
  }
}

function atomicWrite(path: string, data: string | Uint8Array): void {
  const tmp = `${path}.tmp`;
  writeFileSync(tmp, data);
  renameSync(tmp, path);
}

// recent.bin: records of  u16 len(from) | from (utf8) | f64 at | u32 len(frame) | frame,  big-endian
function encodeRecent(frames: readonly CapturedFrame[]): Uint8Array {
  const parts: Buffer[] = [];
  for (const f of frames) {
    const from = Buffer.from(f.from, 'utf8');
    const head = Buffer.alloc(2 + from.length + 8 + 4);
    head.writeUInt16BE(from.length, 0);
    from.copy(head, 2);
    head.writeDoubleBE(f.at, 2 + from.length);
    head.writeUInt32BE(f.frame.length, 2 + from.length + 8);
    parts.push(head, Buffer.from(f.frame));
  }
  return Buffer.concat(parts);
}

/** Reads a `<peer>.recent.bin`; a truncated tail (file replaced mid-read) is ignored. */
export function readRecentFrames(path: string): CapturedFrame[] {
  const b = readFileSync(path);
  const out: CapturedFrame[] = [];
  let at = 0;
  while (at + 2 <= b.length) {
    const fl = b.readUInt16BE(at);
    if (at + 2 + fl + 12 > b.length) break;
    const from = b.subarray(at + 2, at + 2 + fl).toString('utf8');
    const t = b.readDoubleBE(at + 2 + fl);
    const n = b.readUInt32BE(at + 2 + fl + 8);
    const start = at + 2 + fl + 12;
    if (start + n > b.length) break;
    out.push({ from, at: t, frame: new Uint8Array(b.subarray(start, start + n)) });
    at = start + n;
  }
  return out;
}

/** Reads `<dir>/<peer>.frames.{json,bin}`; a partial last record is ignored. */
export function readCapturedTimeline(dir: string, peer: string): CapturedTimeline {
  const idx = JSON.parse(readFileSync(join(dir, `${peer}.frames.json`), 'utf8')) as { peer: string; links: string[] };
  const b = readFileSync(join(dir, `${peer}.frames.bin`));
  const n = Math.floor(b.length / FRAME_RECORD_BYTES);
  const time = new Float64Array(n);
  const link = new Uint32Array(n);
  const length = new Uint32Array(n);
  for (let i = 0; i < n; i++) {
    const o = i * FRAME_RECORD_BYTES;
    time[i] = b.readDoubleBE(o);
    link[i] = b.readUInt32BE(o + 8);
    length[i] = b.readUInt32BE(o + 12);
  }
  return { peer: idx.peer, links: idx.links, time, link, length };
}

export function readCapturedLengths(path: string): CapturedLengths {
  return JSON.parse(readFileSync(path, 'utf8')) as CapturedLengths;
}
