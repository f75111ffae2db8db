#!/usr/bin/env node
// The one `postmix` command, and the one way every caller starts it: operators, mail clients
// (`sendmail=`), the testnet's child processes and the tests all run this file. bin/entry.js
// says whether the compiled dist/ or the sources run; the polyfill goes first either way,
// because libp2p needs it at import time.
import { chooseEntry } from './entry.js';

const entry = process.env.POSTMIX_ENTRY || chooseEntry(new URL('../', import.meta.url));
if (entry === 'dist') {
  await import('../dist/runtime/polyfill.js');
  const { main } = await import('../dist/cli/main.js');
  await main(process.argv);
} else if (entry === 'source') {
  const { register } = await import('tsx/esm/api');
  register();
  await import('../runtime/polyfill.ts');
  const { main } = await import('../cli/main.ts');
  await main(process.argv);
} else {
  process.stderr.write('postmix: dist/ is missing: reinstall the package, or run `npm run build` in a checkout\n');
  process.exitCode = 70; // EX_SOFTWARE
}
