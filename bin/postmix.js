#!/usr/bin/env node
// The one `postmix` command. TypeScript sources are loaded through tsx's ESM loader so a fresh
// clone runs with no build step; the polyfill goes first because libp2p needs it at import time.
import { register } from 'tsx/esm/api';
register();
await import('../runtime/polyfill.ts');
const { main } = await import('../cli/main.ts');
await main(process.argv);
