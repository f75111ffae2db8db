import { MAC_LENGTH, NODE_ID_LENGTH, QUEUE_ID_LENGTH, SURB_ID_LENGTH } from './geometry.ts';

/**
 * Routing commands: what one hop finds in its slot of the routing information
 * (docs/spec/sphinx.md §4). A slot is a sequence of commands, each a type byte and a fixed-size
 * body, ended by a zero byte or by the slot's end; everything after the end marker is zero.
 */
export const CMD_END = 0x00;
export const CMD_NEXT_HOP = 0x01;
export const CMD_DELAY = 0x02;
export const CMD_DELIVER = 0x03;
export const CMD_DROP = 0x04;
export const CMD_SURB_REPLY = 0x05;

const BODY: Record<number, number> = {
  [CMD_NEXT_HOP]: NODE_ID_LENGTH + MAC_LENGTH,
  [CMD_DELAY]: 4,
  [CMD_DELIVER]: QUEUE_ID_LENGTH,
  [CMD_DROP]: 0,
  [CMD_SURB_REPLY]: SURB_ID_LENGTH,
};

/** A hop's decoded commands. Exactly one action; SurbReply only with Deliver. */
export type HopCommands =
  | { readonly action: 'next'; readonly next: Uint8Array; readonly mac: Uint8Array; readonly delayMs: number }
  | { readonly action: 'deliver'; readonly queueId: Uint8Array; readonly surbId?: Uint8Array; readonly delayMs: number }
  | { readonly action: 'drop'; readonly delayMs: number };

function checkLength(b: Uint8Array, n: number, what: string): void {
  if (b.length !== n) throw new RangeError(`${what} must be ${n} bytes, got ${b.length}`);
}

/** Writes `cmds` into the zero-filled slot `out`. Throws RangeError if they do not fit. */
export function encodeCommands(cmds: HopCommands, out: Uint8Array): void {
  out.fill(0);
  let o = 0;
  const put = (type: number, body?: Uint8Array) => {
    const need = 1 + BODY[type]!;
    if (o + need > out.length) throw new RangeError(`routing commands do not fit in a ${out.length}-byte slot`);
    out[o] = type;
    if (body) out.set(body, o + 1);
    o += need;
  };
  if (!Number.isInteger(cmds.delayMs) || cmds.delayMs < 0 || cmds.delayMs > 0xffffffff)
    throw new RangeError(`delayMs must be an integer in 0..2^32-1, got ${cmds.delayMs}`);
  switch (cmds.action) {
    case 'next': {
      checkLength(cmds.next, NODE_ID_LENGTH, 'next hop id');
      checkLength(cmds.mac, MAC_LENGTH, 'next hop MAC');
      const body = new Uint8Array(NODE_ID_LENGTH + MAC_LENGTH);
      body.set(cmds.next, 0);
      body.set(cmds.mac, NODE_ID_LENGTH);
      put(CMD_NEXT_HOP, body);
      break;
    }
    case 'deliver':
      checkLength(cmds.queueId, QUEUE_ID_LENGTH, 'queue id');
      put(CMD_DELIVER, cmds.queueId);
      if (cmds.surbId) {
        checkLength(cmds.surbId, SURB_ID_LENGTH, 'SURB id');
        put(CMD_SURB_REPLY, cmds.surbId);
      }
      break;
    case 'drop':
      put(CMD_DROP);
      break;
  }
  if (cmds.delayMs > 0) {
    const d = new Uint8Array(4);
    new DataView(d.buffer).setUint32(0, cmds.delayMs, false);
    put(CMD_DELAY, d);
  }
}

/** Parses a slot; null for anything that is not exactly a legal command set. */
export function decodeCommands(slot: Uint8Array): HopCommands | null {
  let next: Uint8Array | undefined;
  let mac: Uint8Array | undefined;
  let queueId: Uint8Array | undefined;
  let surbId: Uint8Array | undefined;
  let drop = false;
  let delayMs: number | undefined;
  let o = 0;
  while (o < slot.length) {
    const type = slot[o]!;
    if (type === CMD_END) {
      for (let i = o + 1; i < slot.length; i++) if (slot[i] !== 0) return null;
      break;
    }
    const len = BODY[type];
    if (len === undefined || o + 1 + len > slot.length) return null;
    const body = slot.subarray(o + 1, o + 1 + len);
    switch (type) {
      case CMD_NEXT_HOP:
        if (next) return null;
        next = body.slice(0, NODE_ID_LENGTH);
        mac = body.slice(NODE_ID_LENGTH);
        break;
      case CMD_DELAY:
        if (delayMs !== undefined) return null;
        delayMs = new DataView(body.buffer, body.byteOffset, 4).getUint32(0, false);
        break;
      case CMD_DELIVER:
        if (queueId) return null;
        queueId = body.slice();
        break;
      case CMD_DROP:
        if (drop) return null;
        drop = true;
        break;
      case CMD_SURB_REPLY:
        if (surbId) return null;
        surbId = body.slice();
        break;
    }
    o += 1 + len;
  }
  const actions = (next ? 1 : 0) + (queueId ? 1 : 0) + (drop ? 1 : 0);
  if (actions !== 1) return null;
  const d = delayMs ?? 0;
  if (next && mac) return surbId ? null : { action: 'next', next, mac, delayMs: d };
  if (queueId) return surbId ? { action: 'deliver', queueId, surbId, delayMs: d } : { action: 'deliver', queueId, delayMs: d };
  return surbId ? null : { action: 'drop', delayMs: d };
}
