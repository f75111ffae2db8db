import type { Command } from 'commander';
import { notBuilt } from './not-built.ts';

export function registerSim(program: Command): void {
  const cmd = program.command('sim').description('sim role [NOT BUILT YET: issue #8]');
  notBuilt(cmd, 'run', 'run the sim', 8);
}
