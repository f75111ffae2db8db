/**
 * The errors a daemon or command can end with, typed, and the one mapping from an error to the
 * exit code an operator acts on (`exitCodeOf`), used by every command of the CLI. Errors are
 * classified where they happen (a failed listen becomes a PortInUseError at the listen call, a
 * bad key file a KeyFileError where it is opened), never by matching their messages.
 */
import { isPkiError } from '../proto/pki/errors.ts';
import { KeyFileExistsError } from './pki/key-store.ts';

/** Exit codes (sysexits.h), documented in each operator guide and in the README ("Running nodes for real"). */
export const EXIT = {
  ok: 0,
  failure: 1,
  usage: 2,
  unavailable: 69, // EX_UNAVAILABLE: port in use, peer unreachable
  keys: 77, // EX_NOPERM: key files missing, unreadable or with unsafe permissions
  config: 78, // EX_CONFIG
} as const;

/** A configuration an operator must fix (exit 78): the message names the file and each bad field. */
export class ConfigError extends Error {
  override readonly name = 'ConfigError';
}

/** A key file problem an operator must fix (exit 77): missing, unreadable, unsafe permissions, not ours. */
export class KeyFileError extends Error {
  override readonly name = 'KeyFileError';
}

/** A listener could not bind (exit 69): the port is taken or not ours to use. */
export class PortInUseError extends Error {
  override readonly name = 'PortInUseError';
}

/**
 * `e` as a PortInUseError when it is the bind failure of a listen call (EADDRINUSE, EACCES,
 * possibly inside an AggregateError or a `cause`), else `e` itself. `what` says what listened.
 */
export function listenError(e: unknown, what: string): unknown {
  const code = (x: unknown, depth = 0): string | undefined => {
    if (depth > 4 || typeof x !== 'object' || x === null) return undefined;
    const err = x as { code?: unknown; errors?: unknown[]; cause?: unknown };
    if (err.code === 'EADDRINUSE' || err.code === 'EACCES') return err.code;
    for (const inner of Array.isArray(err.errors) ? err.errors : []) {
      const c = code(inner, depth + 1);
      if (c) return c;
    }
    return code(err.cause, depth + 1);
  };
  const c = code(e);
  if (!c) return e;
  return new PortInUseError(`${what}: ${c === 'EACCES' ? 'permission denied' : 'address in use'} (${(e as Error).message})`);
}

/** The exit code for an error a command ends with. */
export function exitCodeOf(err: unknown): number {
  if (err instanceof ConfigError) return EXIT.config;
  // a key file that does not parse throws PkiError (bad-key, malformed, ...)
  if (err instanceof KeyFileError || err instanceof KeyFileExistsError || isPkiError(err)) return EXIT.keys;
  if (err instanceof PortInUseError) return EXIT.unavailable;
  return EXIT.failure;
}
