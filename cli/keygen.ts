import { join } from 'node:path';
import { Command, Option } from 'commander';
import { DEFAULT_EPOCH, epochAt, sphinxKeyFile, type EpochConfig } from '../proto/pki/index.ts';
import { KeyFileExistsError, KeyStore } from '../runtime/pki/key-store.ts';
import { exitCodeOf } from '../runtime/errors.ts';
import { hex } from '../proto/util/bytes.ts';

function intOpt(name: string, min: number, max: number) {
  return (v: string): number => {
    const n = Number(v);
    if (!Number.isInteger(n) || n < min || n > max) throw new Error(`${name} must be an integer ${min}..${max}, got "${v}"`);
    return n;
  };
}

/** Parses "current,next", "12,13" or "none" into epoch numbers. */
export function parseEpochList(spec: string, c: EpochConfig, nowSec: number): number[] {
  if (spec === 'none' || spec === '') return [];
  const cur = epochAt(c, nowSec);
  const out = spec.split(',').map((s) => {
    const t = s.trim();
    if (t === 'current') return cur;
    if (t === 'next') return cur + 1;
    const n = Number(t);
    if (!Number.isInteger(n) || n < 0 || n > 0xffffffff) throw new Error(`--epochs: "${t}" is not current, next or an epoch number`);
    return n;
  });
  return [...new Set(out)].sort((a, b) => a - b);
}

export function registerKeygen(program: Command): void {
  program
    .command('keygen')
    .description(
      "write a node's key files: identity.key (Ed25519 seed, mode 0600), identity.pub, and one " +
        'sphinx-<epoch>.key (X25519, mode 0600) per requested epoch. Node id = SHA-256 of the identity public key. ' +
        'Refuses to overwrite any existing file unless --force is given.',
    )
    .requiredOption('-d, --dir <dir>', 'directory to write the key files into (created 0700 if missing)')
    .addOption(
      new Option(
        '-e, --epochs <list>',
        'Sphinx key epochs: comma-separated epoch numbers, "current", "next", or "none" (authorities need no Sphinx keys)',
      ).default('current,next'),
    )
    .addOption(
      new Option('--epoch-length <seconds>', 'network epoch length, to compute "current"/"next"')
        .default(DEFAULT_EPOCH.length)
        .argParser(intOpt('--epoch-length', 1, 604800)),
    )
    .addOption(
      new Option('--epoch-origin <unix-seconds>', 'unix time of the start of epoch 0, to compute "current"/"next"')
        .default(DEFAULT_EPOCH.origin)
        .argParser(intOpt('--epoch-origin', 0, 0xffffffff)),
    )
    .option('-f, --force', 'overwrite existing key files (the old keys are lost)', false)
    .option('--json', 'print the result as one JSON object', false)
    .action((opts: { dir: string; epochs: string; epochLength: number; epochOrigin: number; force: boolean; json: boolean }) => {
      const c: EpochConfig = { origin: opts.epochOrigin, length: opts.epochLength, grace: 0 };
      const epochs = parseEpochList(opts.epochs, c, Date.now() / 1000);
      try {
        const { identity, written } = KeyStore.create(opts.dir, { force: opts.force, epochs });
        const result = {
          dir: opts.dir,
          nodeId: hex(identity.nodeId),
          identityPublicKey: Buffer.from(identity.publicKey).toString('base64'),
          sphinxEpochs: epochs,
          files: written,
        };
        if (opts.json) process.stdout.write(JSON.stringify(result) + '\n');
        else {
          process.stdout.write(`node id:             ${result.nodeId}\n`);
          process.stdout.write(`identity public key: ${result.identityPublicKey}\n`);
          process.stdout.write(`wrote ${join(opts.dir, 'identity.key')} (0600), identity.pub`);
          process.stdout.write(epochs.length ? `, ${epochs.map(sphinxKeyFile).join(', ')} (0600)\n` : '\n');
        }
      } catch (e) {
        if (!(e instanceof KeyFileExistsError)) throw e;
        process.stderr.write(`postmix keygen: ${e.message}\n`);
        process.exitCode = exitCodeOf(e);
      }
    });
}
