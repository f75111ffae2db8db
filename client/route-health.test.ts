import { describe, expect, it } from 'vitest';
import { RouteHealth } from './route-health.ts';

const id = (n: number) => new Uint8Array(32).fill(n);
const tag = (n: number) => new Uint8Array(16).fill(n);

describe('RouteHealth', () => {
  it('avoids a node that lost packets twice in a row, until a reply clears it', () => {
    const h = new RouteHealth(2);
    const layer = [{ nodeId: id(1) }, { nodeId: id(2) }, { nodeId: id(3) }];
    h.sent(tag(1), [id(1), id(4)]);
    h.failed(tag(1));
    expect(h.usable(layer)).toHaveLength(3); // one strike is not enough
    h.sent(tag(2), [id(1), id(5)]);
    h.failed(tag(2));
    expect(h.suspect(id(1))).toBe(true);
    expect(h.usable(layer).map((n) => n.nodeId[0])).toEqual([2, 3]);
    h.sent(tag(3), [id(1)]);
    h.succeeded(tag(3));
    expect(h.suspect(id(1))).toBe(false);
    expect(h.usable(layer)).toHaveLength(3);
  });

  it('never empties a layer: when every node is suspect, all are usable', () => {
    const h = new RouteHealth(1);
    h.sent(tag(1), [id(1), id(2)]);
    h.failed(tag(1));
    const layer = [{ nodeId: id(1) }, { nodeId: id(2) }];
    expect(h.usable(layer)).toHaveLength(2);
    expect(h.suspects().length).toBe(2);
  });

  it('an unknown tag changes nothing', () => {
    const h = new RouteHealth(1);
    h.failed(tag(9));
    h.succeeded(tag(9));
    expect(h.suspects()).toEqual([]);
  });

  it('suspicion lasts holdMs after the last blame; one more lost loop renews it at once', () => {
    const h = new RouteHealth(2, 60_000);
    const layer = [{ nodeId: id(1) }, { nodeId: id(2) }];
    h.tick(0);
    for (const t of [1, 2]) {
      h.sent(tag(t), [id(1)]);
      h.failed(tag(t));
    }
    expect(h.usable(layer)).toEqual([{ nodeId: id(2) }]);
    h.tick(59_999);
    expect(h.suspect(id(1))).toBe(true);
    h.tick(60_000);
    expect(h.suspect(id(1))).toBe(false); // tried again
    h.sent(tag(3), [id(1)]);
    h.failed(tag(3));
    expect(h.suspect(id(1))).toBe(true);
    h.sent(tag(4), [id(1)]);
    h.succeeded(tag(4));
    expect(h.suspects()).toEqual([]);
  });
});
