import type { Command } from 'commander';
import { notBuilt } from './not-built.ts';

export function registerDirectory(program: Command): void {
  const cmd = program.command('directory').description('directory role [NOT BUILT YET: issue #3]');
  notBuilt(cmd, 'run', 'run the directory', 3);
}
