import type { Command } from 'commander';
import { notBuilt } from './not-built.ts';

export function registerMixnode(program: Command): void {
  const cmd = program.command('mixnode').description('mixnode role [NOT BUILT YET: issue #4]');
  notBuilt(cmd, 'run', 'run the mixnode', 4);
}
