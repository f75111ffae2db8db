/**
 * CPU time of the calling thread, for figures that must tell one thread's work from another's
 * (the event loop against worker threads and GC helpers, which `process.cpuUsage` adds up).
 */
import { readFileSync } from 'node:fs';

/**
 * Seconds the calling thread has spent on a CPU (user and system), from the first field of
 * Linux's `/proc/thread-self/schedstat` (nanoseconds). NaN where the OS does not say (not Linux,
 * no /proc): callers report the figure as unknown, never as zero.
 */
export function threadCpuSeconds(): number {
  try {
    return Number(readFileSync('/proc/thread-self/schedstat', 'utf8').split(' ')[0]) / 1e9;
  } catch {
    return NaN;
  }
}
