import type { Command } from 'commander';
import { notBuilt } from './not-built.ts';

export function registerGateway(program: Command): void {
  const cmd = program.command('gateway').description('the gateway beside a provider MX [NOT BUILT YET: issue #5]');
  notBuilt(cmd, 'run', 'run the gateway daemon', 5);
  notBuilt(cmd, 'queue', 'list, retry or purge the hand-off queue', 5);
  notBuilt(cmd, 'user', 'add or rotate a recipient delivery key', 5);
  notBuilt(cmd, 'tokens', 'issue a delivery-token bundle for a user', 5);
}
