import type { Command } from 'commander';

/** Exit code for "this sub-command exists in the design but is not built yet". */
export const EXIT_NOT_BUILT = 3;

/**
 * Registers a sub-command that the design names but this build does not have yet. It says so
 * plainly and exits non-zero: an operator must never mistake a placeholder for a running node.
 */
export function notBuilt(parent: Command, name: string, summary: string, issue: number): Command {
  return parent
    .command(name)
    .description(`${summary} [NOT BUILT YET: issue #${issue}]`)
    .allowUnknownOption(true)
    .allowExcessArguments(true)
    .action(() => {
      process.stderr.write(
        `postmix ${parent.name() === 'postmix' ? '' : parent.name() + ' '}${name}: not built yet ` +
          `(tracked in issue #${issue}). Nothing was started.\n`,
      );
      process.exitCode = EXIT_NOT_BUILT;
    });
}
