/**
 * The path of bin/postmix.js, for the testnet's child processes. They start the same command an
 * operator runs, which then picks dist/ or the sources (bin/entry.js). Found by walking up to
 * the package root, because this module runs from cli/ in a checkout and from dist/cli/ when
 * compiled.
 */
import { existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

function findBin(): string {
  let dir = dirname(fileURLToPath(import.meta.url));
  for (;;) {
    const candidate = join(dir, 'bin', 'postmix.js');
    if (existsSync(candidate) && existsSync(join(dir, 'package.json'))) return candidate;
    const up = dirname(dir);
    if (up === dir) throw new Error(`bin/postmix.js not found above ${fileURLToPath(import.meta.url)}`);
    dir = up;
  }
}

export const POSTMIX_BIN = findBin();
