import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { nobleSuite } from './suite-noble.ts';
import { nodeSuite } from './suite-node.ts';
import { requireSodiumNative } from './suite-select.ts';
import { makeSodiumSuite } from './suite-sodium.ts';
import { allVectors, type AllVectors } from './vectors.ts';

const file = new URL('../../docs/spec/vectors/sphinx.json', import.meta.url);
const stored = JSON.parse(readFileSync(file, 'utf8')) as AllVectors;

// every suite the code ships reproduces the spec's vectors bit for bit
describe.each([makeSodiumSuite(requireSodiumNative()), nodeSuite, nobleSuite])('spec vectors: $name suite', (suite) => {
  const computed = allVectors(suite);

  it('LIONESS vector', () => {
    expect(computed.lioness).toEqual(stored.lioness);
  });

  it.each(stored.forward.map((v, i) => [v.name, i] as const))('forward packet %s: every intermediate and output', (_name, i) => {
    const want = stored.forward[i]!;
    const got = computed.forward[i]!;
    expect(got.hops.length).toBe(want.hops.length);
    for (let h = 0; h < want.hops.length; h++) expect(got.hops[h]).toEqual(want.hops[h]);
    expect(got).toEqual(want);
    expect(want.hops.at(-1)!.result).toBe('deliver');
    expect(want.deliveredPayload.startsWith(want.payload)).toBe(true);
  });

  it('SURB vector', () => {
    expect(computed.surb).toEqual(stored.surb);
    expect(stored.surb.opened).toBe(stored.surb.replyPayload);
  });

  it('sizes', () => {
    expect(computed.sizes).toEqual(stored.sizes);
    expect(stored.sizes.packet).toBe(2434);
  });
});
