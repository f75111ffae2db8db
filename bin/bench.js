#!/usr/bin/env node
// `npm run bench -- [suite ...] [--json]`: runs the benchmark suites under bench/.
import { register } from 'tsx/esm/api';
register();
await import('../runtime/polyfill.ts');
const { runBench } = await import('../bench/index.ts');
await runBench(process.argv.slice(2));
