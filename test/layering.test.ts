/**
 * The layering the README promises, checked on every source file's imports (static, re-exports
 * and dynamic `import()`, as TypeScript's own pre-processor reads them):
 *
 * - proto/ is pure: what both ends of a link agree on, no I/O. It imports nothing outside
 *   proto/, and none of the modules that do I/O (files, sockets, HTTP, SQLite, libp2p, logs,
 *   metrics, SMTP);
 * - runtime/ (the machinery that runs the protocols) imports proto/ and itself, never a role;
 * - the roles (mixnode/, gateway/, client/, directory/, sim/) never import each other, nor the
 *   command line, the tests or the benchmarks. They meet in proto/ and runtime/.
 *
 * Tests (*.test.ts) are exempt: they read vectors from files and play several roles at once.
 */
import { readFileSync } from 'node:fs';
import { execFileSync } from 'node:child_process';
import { dirname, join, normalize } from 'node:path';
import ts from 'typescript';
import { describe, expect, it } from 'vitest';

const ROOT = new URL('..', import.meta.url).pathname;
const ROLES = ['mixnode', 'gateway', 'client', 'directory', 'sim'] as const;

/** Modules that do I/O; proto/ may import none of them. */
const IO_MODULES = [
  'fs',
  'fs/promises',
  'net',
  'http',
  'https',
  'http2',
  'dgram',
  'tls',
  'child_process',
  'worker_threads',
  'better-sqlite3',
  'libp2p',
  '@libp2p/',
  '@chainsafe/libp2p-',
  '@multiformats/multiaddr',
  'it-length-prefixed',
  'pino',
  'prom-client',
  'smol-toml',
  'nodemailer',
  'smtp-server',
];

function isIoModule(spec: string): boolean {
  const s = spec.startsWith('node:') ? spec.slice(5) : spec;
  return IO_MODULES.some((m) => (m.endsWith('/') || m.endsWith('-') ? s.startsWith(m) : s === m || s.startsWith(`${m}/`)));
}

const top = (path: string): string => path.split('/')[0]!;

/** What is wrong with one file's imports (empty: nothing). `file` is relative to the repo root. */
export function layeringViolations(file: string, text: string): string[] {
  const out: string[] = [];
  const area = top(file);
  for (const { fileName: spec } of ts.preProcessFile(text, true, true).importedFiles) {
    const target = spec.startsWith('.') ? top(normalize(join(dirname(file), spec))) : null;
    if (area === 'proto') {
      if (target !== null && target !== 'proto') out.push(`${file}: proto/ imports ${spec} (outside proto/)`);
      if (target === null && isIoModule(spec)) out.push(`${file}: proto/ imports ${spec} (I/O belongs in runtime/)`);
    } else if (area === 'runtime') {
      if (target !== null && target !== 'proto' && target !== 'runtime') out.push(`${file}: runtime/ imports ${spec} (a role or tool)`);
    } else if ((ROLES as readonly string[]).includes(area)) {
      if (target !== null && target !== area && target !== 'proto' && target !== 'runtime')
        out.push(`${file}: ${area}/ imports ${spec} (another role or tool)`);
    }
  }
  return out;
}

function sourceFiles(): string[] {
  return execFileSync('git', ['ls-files', '--cached', '--others', '--exclude-standard', '*.ts'], { cwd: ROOT, encoding: 'utf8' })
    .split('\n')
    .filter((f) => f !== '' && !f.endsWith('.test.ts'));
}

describe('layering', () => {
  it('the checker finds what it is meant to find', () => {
    expect(layeringViolations('proto/pki/x.ts', "import { readFileSync } from 'node:fs';")).toHaveLength(1);
    expect(layeringViolations('proto/pki/x.ts', "export { x } from '../../runtime/link/link.ts';")).toHaveLength(1);
    expect(layeringViolations('proto/pki/x.ts', "const m = await import('better-sqlite3');")).toHaveLength(1);
    expect(layeringViolations('proto/pki/x.ts', "import type { PeerId } from '@libp2p/interface';")).toHaveLength(1);
    expect(layeringViolations('proto/pki/x.ts', "import { createHash } from 'node:crypto';\nimport { a } from '../sphinx/index.ts';")).toEqual([]);
    expect(layeringViolations('runtime/hop/x.ts', "import { Gateway } from '../../gateway/daemon.ts';")).toHaveLength(1);
    expect(layeringViolations('client/x.ts', "import { Intake } from '../gateway/intake.ts';")).toHaveLength(1);
    expect(layeringViolations('client/x.ts', "import { PacketLink } from '../runtime/link/index.ts';")).toEqual([]);
    expect(layeringViolations('cli/x.ts', "import { Gateway } from '../gateway/daemon.ts';")).toEqual([]);
  });

  it('proto/ does no I/O, runtime/ imports no role, roles never import each other', () => {
    const files = sourceFiles();
    expect(files.filter((f) => f.startsWith('proto/')).length).toBeGreaterThan(20);
    const violations = files.flatMap((f) => layeringViolations(f, readFileSync(join(ROOT, f), 'utf8')));
    expect(violations).toEqual([]);
  });
});
