import type { Command } from 'commander';
import { notBuilt } from './not-built.ts';

export function registerKeygen(program: Command): void {
  notBuilt(program, 'keygen', "write a node's identity and Sphinx key files", 3);
}
