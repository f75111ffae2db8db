import type { Command } from 'commander';
import { notBuilt } from './not-built.ts';

export function registerSphinx(program: Command): void {
  const cmd = program.command('sphinx').description('Sphinx packet tools');
  notBuilt(cmd, 'demo', 'build a 5-hop packet and walk it hop by hop', 2);
}
