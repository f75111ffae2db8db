/**
 * A closed pipe on an output stream (`postmix client status | head -1`: head exits after the
 * first line) is the reader saying it has read enough, not a failure. Node reports it as an
 * 'error' event (EPIPE) on the stream, which without a listener is an uncaught exception and a
 * stack trace. Every output path of the CLI goes through one of the streams fixed here:
 * process.stdout and process.stderr (commander's help, every command's printing) and the
 * daemons' pino destination (runtime/daemon.ts createLogger). After EPIPE a stream discards
 * what is still written and the command finishes with its own exit status; any other write
 * error is still thrown.
 */
export function isClosedPipe(e: unknown): boolean {
  const code = (e as { code?: unknown } | null)?.code;
  return code === 'EPIPE' || code === 'ERR_STREAM_DESTROYED';
}

const tolerant = new WeakSet<object>();

/** What is needed of an output stream: a node Writable, process.stdout, or pino's SonicBoom. */
interface OutputStream {
  on(event: 'error', listener: (e: unknown) => void): unknown;
  write: (...args: never[]) => unknown;
}

/** Makes `s` discard output once its reader has gone; idempotent. */
export function tolerateClosedPipe(s: OutputStream): void {
  if (tolerant.has(s)) return;
  tolerant.add(s);
  s.on('error', (e: unknown) => {
    if (!isClosedPipe(e)) throw e;
    // the reader is gone: later writes are dropped instead of failing again
    s.write = ((_chunk: unknown, enc?: unknown, cb?: unknown) => {
      const done = typeof enc === 'function' ? enc : cb;
      if (typeof done === 'function') process.nextTick(done as () => void);
      return true;
    }) as OutputStream['write'];
  });
}

/** process.stdout and process.stderr: called once at the CLI's entry (cli/main.ts). */
export function tolerateClosedStdio(): void {
  tolerateClosedPipe(process.stdout);
  tolerateClosedPipe(process.stderr);
}
