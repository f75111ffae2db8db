import { Command, CommanderError, InvalidArgumentError } from 'commander';
import { EXIT, exitCodeOf } from '../runtime/errors.ts';
import { tolerateClosedStdio } from '../runtime/closed-pipe.ts';

type Register = (program: Command) => void;

/**
 * Each top-level sub-command and the module that registers it. Modules load lazily: a
 * `postmix mixnode run` process loads the mix node and libp2p, not the simulator's plotting
 * library, so the daemons of a testnet start in a fraction of the time.
 */
const COMMANDS: Record<string, () => Promise<Register>> = {
  testnet: async () => (await import('./testnet.ts')).registerTestnet,
  sphinx: async () => (await import('./sphinx.ts')).registerSphinx,
  keygen: async () => (await import('./keygen.ts')).registerKeygen,
  directory: async () => (await import('./directory.ts')).registerDirectory,
  mixnode: async () => (await import('./mixnode.ts')).registerMixnode,
  gateway: async () => (await import('./gateway.ts')).registerGateway,
  client: async () => (await import('./client.ts')).registerClient,
  sendmail: async () => (await import('./client.ts')).registerClient,
  sim: async () => (await import('./sim.ts')).registerSim,
};

/** Builds the `postmix` command tree: only `only`'s module when given, else every command. */
export async function buildProgram(only?: string): Promise<Command> {
  const program = new Command('postmix')
    .description('postmix: an anonymous delivery overlay for email (Sphinx packets through a mixnet to the recipient gateway)')
    .version('0.1.0')
    .showHelpAfterError('(run with --help for usage)');
  const names = only && COMMANDS[only] ? [only] : Object.keys(COMMANDS);
  const done = new Set<Register>();
  for (const name of names) {
    const register = await COMMANDS[name]!();
    if (done.has(register)) continue; // client.ts registers both `client` and `sendmail`
    done.add(register);
    register(program);
  }
  return program;
}

export async function main(argv: string[]): Promise<void> {
  tolerateClosedStdio(); // `postmix ... | head` must not end in an uncaught EPIPE
  const first = argv.slice(2).find((a) => !a.startsWith('-'));
  const program = await buildProgram(first);
  program.exitOverride();
  try {
    await program.parseAsync(argv);
  } catch (err) {
    if (err instanceof InvalidArgumentError) {
      // thrown by an action after parsing (a bad `sim sweep --vary`, say): commander prints
      // only the errors it raises itself, so this one would otherwise end silently
      process.stderr.write(`postmix: ${err.message}\n(run with --help for usage)\n`);
      process.exitCode = EXIT.usage;
      return;
    }
    if (err instanceof CommanderError) {
      // help and version end here with code 0; usage errors with commander's code (printed)
      process.exitCode = err.exitCode;
      return;
    }
    const msg = err instanceof Error ? err.message : String(err);
    process.stderr.write(`postmix: ${msg}\n`);
    process.exitCode = exitCodeOf(err);
  }
}
