/**
 * What `npm pack` ships and how `postmix` finds its code:
 * - bin/entry.js picks dist/ when it is at least as new as every source, the sources otherwise
 *   (a checkout), and dist/ alone in an installed package;
 * - the package lists the compiled code and the docs, and no TypeScript, test, bench or test-kit
 *   file;
 * - the package's files, laid out as npm installs them (no sources, no tsx), run `postmix`;
 * - the README's test command refuses, with a message naming them, to run without the Debian
 *   packages the tests need when it cannot install them (not root).
 */
import { execFileSync, spawnSync } from 'node:child_process';
import { chmodSync, copyFileSync, existsSync, mkdirSync, mkdtempSync, readdirSync, rmSync, symlinkSync, utimesSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { chooseEntry } from '../bin/entry.js';

const ROOT = join(import.meta.dirname, '..');
const tmp = mkdtempSync(join(tmpdir(), 'pmx-pkg-'));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

function touch(path: string, when: number): void {
  mkdirSync(dirname(path), { recursive: true });
  writeFileSync(path, '');
  utimesSync(path, when / 1000, when / 1000);
}

describe('bin/entry.js', () => {
  const url = (d: string) => new URL(`file://${d}/`);
  const t0 = Date.now() - 60_000;

  it('runs dist/ in a checkout only while no source is newer than the build', () => {
    const d = join(tmp, 'checkout');
    touch(join(d, 'cli/main.ts'), t0);
    touch(join(d, 'client/deep/x.ts'), t0);
    expect(chooseEntry(url(d))).toBe('source'); // never built
    touch(join(d, 'dist/BUILD'), t0 + 1000);
    expect(chooseEntry(url(d))).toBe('dist');
    touch(join(d, 'client/deep/x.test.ts'), t0 + 5000); // tests are not compiled
    expect(chooseEntry(url(d))).toBe('dist');
    touch(join(d, 'client/deep/x.ts'), t0 + 5000);
    expect(chooseEntry(url(d))).toBe('source');
  });

  it('runs dist/ in an installed package, and says so when it is missing', () => {
    const d = join(tmp, 'installed');
    mkdirSync(d, { recursive: true });
    expect(chooseEntry(url(d))).toBe('missing');
    touch(join(d, 'dist/BUILD'), t0);
    expect(chooseEntry(url(d))).toBe('dist');
  });
});

describe('npm pack', () => {
  const built = existsSync(join(ROOT, 'dist/BUILD'));
  const packed = (): string[] => {
    // --ignore-scripts: list what dist/ holds now rather than build it again here
    const out = execFileSync('npm', ['pack', '--dry-run', '--json', '--ignore-scripts'], { cwd: ROOT, encoding: 'utf8', timeout: 60_000 });
    return (JSON.parse(out) as Array<{ files: Array<{ path: string }> }>)[0]!.files.map((f) => f.path);
  };

  it('ships the compiled code, the docs and the unit files, and nothing only developers use', () => {
    expect(built, 'dist/ is not built: run `npm run build` (npm test does)').toBe(true);
    const files = packed();
    for (const f of ['bin/postmix.js', 'bin/entry.js', 'dist/cli/main.js', 'dist/runtime/polyfill.js', 'dist/client/daemon.js', 'docs/client.md', 'README.md'])
      expect(files).toContain(f);
    const devOnly = files.filter((f) => /\.ts$|\.test\.|(^|\/)(test|bench)\/|testing\.js$|testkit\.js$|crash-fixture|tsbuildinfo|bin\/bench/.test(f));
    expect(devOnly).toEqual([]);
    const pkg = JSON.parse(execFileSync('npm', ['pkg', 'get', 'dependencies'], { cwd: ROOT, encoding: 'utf8' })) as Record<string, string>;
    for (const dev of ['tsx', 'typescript', 'vitest', 'fast-check', 'prettier']) expect(pkg).not.toHaveProperty(dev);
  });

  it('runs from the packed files alone, with no sources and no tsx beside them', () => {
    expect(built, 'dist/ is not built: run `npm run build` (npm test does)').toBe(true);
    const d = join(tmp, 'package');
    for (const f of packed()) {
      mkdirSync(dirname(join(d, f)), { recursive: true });
      copyFileSync(join(ROOT, f), join(d, f));
    }
    // the dependencies as npm would install them, less tsx (a dev dependency): an installed
    // package must never reach for it
    mkdirSync(join(d, 'node_modules'));
    for (const m of readdirSync(join(ROOT, 'node_modules')))
      if (m !== 'tsx' && !m.startsWith('.')) symlinkSync(join(ROOT, 'node_modules', m), join(d, 'node_modules', m));
    expect(existsSync(join(d, 'cli/main.ts'))).toBe(false);
    const v = spawnSync(process.execPath, [join(d, 'bin/postmix.js'), '--version'], {
      encoding: 'utf8',
      timeout: 30_000,
      env: { ...process.env, POSTMIX_ENTRY: '' },
    });
    expect(v.stderr).toBe('');
    expect(v.stdout.trim()).toBe(JSON.parse(execFileSync('npm', ['pkg', 'get', 'version'], { cwd: ROOT, encoding: 'utf8' })) as string);
    writeFileSync(join(d, 'c.toml'), `data_dir = "${join(d, 'data')}"\n`);
    const s = spawnSync(process.execPath, [join(d, 'bin/postmix.js'), 'client', 'status', '-c', join(d, 'c.toml')], { encoding: 'utf8', timeout: 30_000 });
    expect(s.stderr).toBe('');
    expect(s.stdout).toContain('outbox empty');
  });
});

describe('the README test command (.ci/test)', () => {
  it('names the missing Debian packages and stops when it cannot install them', () => {
    if (process.getuid?.() !== 0) throw new Error('this check runs the script as an unprivileged user, which needs root to arrange');
    const d = join(tmp, 'ci');
    mkdirSync(join(d, '.ci'), { recursive: true });
    copyFileSync(join(ROOT, '.ci/test'), join(d, '.ci/test'));
    writeFileSync(join(d, '.ci/apt-packages'), 'coreutils\npostmix-no-such-package\n');
    chmodSync(tmp, 0o755);
    chmodSync(d, 0o755);
    const r = spawnSync('setpriv', ['--reuid=65534', '--regid=65534', '--clear-groups', 'bash', join(d, '.ci/test')], { encoding: 'utf8', timeout: 30_000 });
    expect(r.status).toBe(1);
    expect(r.stderr).toContain('not installed: postmix-no-such-package');
    expect(r.stderr).not.toContain('coreutils');
    expect(r.stdout).not.toContain('vitest');
  });
});
