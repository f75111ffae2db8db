import type { Command } from 'commander';
import { notBuilt } from './not-built.ts';

export function registerTestnet(program: Command): void {
  notBuilt(program, 'testnet', 'start a whole local network on loopback and deliver real mail', 7);
}
