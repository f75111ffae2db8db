import { describe, expect, it } from 'vitest';
import { PkiError } from '../proto/pki/errors.ts';
import { ConfigError, EXIT, exitCodeOf, KeyFileError, listenError, PortInUseError } from './errors.ts';
import { KeyFileExistsError } from './pki/key-store.ts';

describe('exit codes', () => {
  it('come from the type of the error, never its message', () => {
    expect(exitCodeOf(new ConfigError('x'))).toBe(EXIT.config);
    expect(exitCodeOf(new KeyFileError('x'))).toBe(EXIT.keys);
    expect(exitCodeOf(new KeyFileExistsError('/k'))).toBe(EXIT.keys);
    expect(exitCodeOf(new PkiError('bad-key', 'x'))).toBe(EXIT.keys);
    expect(exitCodeOf(new PortInUseError('x'))).toBe(EXIT.unavailable);
    // a message that merely mentions a port, a key or a config is a plain failure
    expect(exitCodeOf(new Error('EADDRINUSE: address already in use; bad config; identity key missing'))).toBe(EXIT.failure);
    expect(exitCodeOf('not even an Error')).toBe(EXIT.failure);
  });

  it('a failed listen becomes a PortInUseError where it happens, by errno, nested or not', () => {
    const inUse = Object.assign(new Error('listen EADDRINUSE'), { code: 'EADDRINUSE' });
    expect(listenError(inUse, 'smtp 127.0.0.1:25')).toBeInstanceOf(PortInUseError);
    expect(String(listenError(inUse, 'smtp 127.0.0.1:25'))).toMatch(/smtp 127\.0\.0\.1:25: address in use/);
    expect(listenError(new AggregateError([inUse], 'all failed'), 'x')).toBeInstanceOf(PortInUseError);
    expect(listenError(new Error('wrapped', { cause: Object.assign(new Error('eacces'), { code: 'EACCES' }) }), 'x')).toBeInstanceOf(PortInUseError);
    const other = Object.assign(new Error('boom'), { code: 'ENOENT' });
    expect(listenError(other, 'x')).toBe(other);
  });
});
