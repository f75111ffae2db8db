import { Command, CommanderError } from 'commander';
import { registerSphinx } from './sphinx.ts';
import { registerDirectory } from './directory.ts';
import { registerMixnode } from './mixnode.ts';
import { registerGateway } from './gateway.ts';
import { registerClient } from './client.ts';
import { registerSim } from './sim.ts';
import { registerTestnet } from './testnet.ts';
import { registerKeygen } from './keygen.ts';

/** Builds the `postmix` command tree. Each role contributes its own sub-commands. */
export function buildProgram(): Command {
  const program = new Command('postmix')
    .description(
      'postmix: an anonymous delivery overlay for email (Sphinx packets through a mixnet to the recipient gateway)',
    )
    .version('0.1.0')
    .showHelpAfterError('(run with --help for usage)');
  registerTestnet(program);
  registerSphinx(program);
  registerKeygen(program);
  registerDirectory(program);
  registerMixnode(program);
  registerGateway(program);
  registerClient(program);
  registerSim(program);
  return program;
}

export async function main(argv: string[]): Promise<void> {
  const program = buildProgram();
  program.exitOverride();
  try {
    await program.parseAsync(argv);
  } catch (err) {
    if (err instanceof CommanderError) {
      // help and version end here with code 0; usage errors with commander's code
      process.exitCode = err.exitCode;
      return;
    }
    const msg = err instanceof Error ? err.message : String(err);
    process.stderr.write(`postmix: ${msg}\n`);
    process.exitCode = 1;
  }
}
