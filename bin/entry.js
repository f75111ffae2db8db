// Which code `postmix` runs: the compiled JavaScript in dist/ or the TypeScript sources.
//
// dist/ (`npm run build`, run by `prepare` on `npm install` and by `npm pack`) starts fast, which
// matters for `postmix sendmail`, started once per message by mutt or cron. In a checkout, where
// the sources sit beside dist/, the sources (through tsx) are used whenever one of them is newer
// than the last build, so an edit or a rebase is never masked by stale output. An installed
// package holds only dist/. Plain JavaScript, so choosing costs no compiler.
import { existsSync, readdirSync, statSync } from 'node:fs';

/** The folders the build compiles (tsconfig.build.json "include"). */
export const SOURCE_DIRS = ['proto', 'runtime', 'mixnode', 'gateway', 'client', 'directory', 'sim', 'cli'];

function hasSourceNewerThan(dir, since) {
  for (const e of readdirSync(dir, { withFileTypes: true })) {
    const p = new URL(e.isDirectory() ? `${e.name}/` : e.name, dir);
    if (e.isDirectory()) {
      if (hasSourceNewerThan(p, since)) return true;
    } else if (e.name.endsWith('.ts') && !e.name.endsWith('.test.ts') && statSync(p).mtimeMs > since) return true;
  }
  return false;
}

/**
 * `root` is the package's root directory as a file URL ending in '/'. Returns 'dist' when
 * dist/BUILD (written last by the build) exists and no source file is newer, 'source' otherwise.
 */
export function chooseEntry(root) {
  const stamp = new URL('dist/BUILD', root);
  const checkout = existsSync(new URL('cli/main.ts', root));
  if (!existsSync(stamp)) return checkout ? 'source' : 'missing';
  if (!checkout) return 'dist';
  const built = statSync(stamp).mtimeMs;
  const stale = SOURCE_DIRS.some((d) => {
    const dir = new URL(`${d}/`, root);
    return existsSync(dir) && hasSourceNewerThan(dir, built);
  });
  return stale ? 'source' : 'dist';
}
