/**
 * Production code never draws from the engine's generator (V8's xorshift128+, whose state an
 * observer of a few dozen outputs recovers: test/adversary-randomness.test.ts): every random
 * choice an adversary can see comes from proto/util/random.ts. Seeded or built-in generators
 * are allowed only in `sim/`, `bench/`, `test/` and `*.test.ts`.
 */
import { readdirSync, readFileSync } from 'node:fs';
import { join, relative } from 'node:path';
import { describe, expect, it } from 'vitest';

const ROOT = new URL('..', import.meta.url).pathname;
const EXEMPT_DIRS = new Set(['node_modules', '.git', 'sim', 'bench', 'test', 'docs']);
const CODE = /\.(ts|js|mjs|cjs)$/;

/** `Math.random`, `Math['random']`, `{ random } = Math` (with any spacing). */
const USES = [/\bMath\s*\??\.\s*random\b/, /\bMath\s*\[\s*['"`]random['"`]\s*\]/, /\{[^}]*\brandom\b[^}]*\}\s*=\s*(globalThis\s*\.\s*)?Math\b/];

function productionFiles(dir: string, top: boolean, out: string[] = []): string[] {
  for (const e of readdirSync(dir, { withFileTypes: true })) {
    if (e.isDirectory()) {
      if (e.name === 'node_modules' || (top && EXEMPT_DIRS.has(e.name))) continue;
      productionFiles(join(dir, e.name), false, out);
    } else if (CODE.test(e.name) && !/\.test\.(ts|js)$/.test(e.name)) out.push(join(dir, e.name));
  }
  return out;
}

describe('randomness in production code', () => {
  it('no production file calls Math.random (only sim/, bench/ and tests may)', () => {
    const files = productionFiles(ROOT, true);
    // the walk must see the roles, or the check is empty
    for (const d of ['client/', 'mixnode/', 'gateway/', 'directory/', 'proto/', 'cli/']) expect(files.some((f) => relative(ROOT, f).startsWith(d))).toBe(true);
    const offenders: string[] = [];
    for (const f of files) {
      readFileSync(f, 'utf8')
        .split('\n')
        .forEach((line, i) => {
          if (USES.some((re) => re.test(line))) offenders.push(`${relative(ROOT, f)}:${i + 1}: ${line.trim()}`);
        });
    }
    expect(offenders).toEqual([]);
  });

  it('the check sees every way of spelling it', () => {
    for (const s of ['x = Math.random()', 'Math . random', "Math['random']()", 'const { random } = Math;', 'const { floor, random: r } = globalThis.Math'])
      expect(USES.some((re) => re.test(s))).toBe(true);
    for (const s of ['csprngUniform()', 'mathRandom', 'randomBytes(16)']) expect(USES.some((re) => re.test(s))).toBe(false);
  });
});
