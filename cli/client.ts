import type { Command } from 'commander';
import { notBuilt } from './not-built.ts';

export function registerClient(program: Command): void {
  const cmd = program.command('client').description('the sender client [NOT BUILT YET: issue #6]');
  notBuilt(cmd, 'run', 'run the client daemon (local SMTP submission)', 6);
  notBuilt(cmd, 'send', 'send one message from a file', 6);
  notBuilt(cmd, 'status', 'show messages in flight', 6);
  notBuilt(cmd, 'tokens', 'import or list delivery tokens', 6);
  notBuilt(program, 'sendmail', 'sendmail-compatible intake (-t -i)', 6);
}
