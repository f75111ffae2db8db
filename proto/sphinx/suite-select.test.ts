import { spawnSync } from 'node:child_process';
import { describe, expect, it } from 'vitest';
import { nodeSuite } from './suite-node.ts';
import { fastestSuite, requireSodiumNative, selectSuite } from './suite-select.ts';
import type { SodiumBinding } from './suite-sodium.ts';

describe('suite selection', () => {
  it('picks the libsodium suite where the prebuilt binary loads (linux x64 here, as in CI)', () => {
    expect(selectSuite()).toEqual({ suite: expect.objectContaining({ name: 'sodium' }) });
    expect(fastestSuite.name).toBe('sodium');
  });

  it('falls back to node:crypto, with the reason, when the module does not load', () => {
    const sel = selectSuite(() => {
      throw new Error("Cannot find module 'sodium-native'\nRequire stack: ...");
    });
    expect(sel.suite).toBe(nodeSuite);
    expect(sel.fallbackReason).toBe("sodium-native unusable (Cannot find module 'sodium-native'); Sphinx runs on node:crypto, about 1.5x slower per hop");
  });

  it('falls back when the module loads but lacks a function (an old version) or computes wrong results', () => {
    const real = requireSodiumNative();
    const partial = { crypto_scalarmult: real.crypto_scalarmult, crypto_scalarmult_base: real.crypto_scalarmult_base } as unknown as SodiumBinding;
    expect(selectSuite(() => partial).suite).toBe(nodeSuite);
    const wrongStream: SodiumBinding = { ...real, crypto_stream_chacha20_ietf_xor: (c, m) => c.set(m) };
    expect(selectSuite(() => wrongStream).suite).toBe(nodeSuite);
    // a binding that accepts low-order points (returns zeros instead of failing) is refused too
    const acceptsLowOrder: SodiumBinding = {
      ...real,
      crypto_scalarmult: (q, n, p) => {
        if (p.every((b) => b === 0)) q.fill(0);
        else real.crypto_scalarmult(q, n, p);
      },
    };
    expect(selectSuite(() => acceptsLowOrder).fallbackReason).toMatch(/low-order/);
  });

  it('a process whose sodium-native fails to load runs on node:crypto and warns on stderr', () => {
    // A real process with the module made unloadable, as on a platform without a prebuild:
    // the module-level choice, not just the function, must fall back and say so.
    const hook = `import M from 'node:module'; const load = M._load;
      M._load = function (req, ...rest) { if (req === 'sodium-native') throw new Error('simulated: no prebuild for this platform'); return load.call(this, req, ...rest); };`;
    const index = new URL('./index.ts', import.meta.url).href;
    const r = spawnSync(
      process.execPath,
      [
        '--import',
        'data:text/javascript,' + encodeURIComponent(hook),
        '--import',
        'tsx',
        '--input-type=module',
        '-e',
        `const s = await import('${index}'); console.log(s.fastestSuite.name);`,
      ],
      { encoding: 'utf8', timeout: 30_000 },
    );
    expect(r.status).toBe(0);
    expect(r.stdout.trim()).toBe('node');
    expect(r.stderr).toContain('[POSTMIX_SPHINX_FALLBACK]');
    expect(r.stderr).toContain('simulated: no prebuild for this platform');
  });
});
