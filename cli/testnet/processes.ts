/**
 * Runs each testnet node as its own OS process — the same `postmix … run` command an operator
 * uses — with stdout/stderr in a log file under the run directory, so `--kill-mix` kills a real
 * process and `--keep DIR` leaves everything to inspect.
 */
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { createWriteStream, existsSync, readFileSync, statSync, type WriteStream } from 'node:fs';
import { join } from 'node:path';
import { POSTMIX_BIN } from '../bin-path.ts';

/** Runs one `postmix` admin command to its end, as an operator would type it; resolves with its stdout. */
export function runCli(args: readonly string[]): Promise<string> {
  return new Promise((res, rej) => {
    execFile(process.execPath, [POSTMIX_BIN, ...args], { encoding: 'utf8', timeout: 120_000 }, (err, stdout, stderr) => {
      if (err) rej(new Error(`postmix ${args.join(' ')} failed: ${stderr || stdout || err.message}`));
      else res(stdout);
    });
  });
}

export interface NodeProcess {
  readonly name: string;
  readonly args: readonly string[];
  readonly logFile: string;
  child: ChildProcess;
  exited: Promise<number | null>;
  /** Exit code or signal once it ended. */
  status?: string;
  /** Where this run's output starts in the (appended) log file: a restarted node's readiness is read from there. */
  readonly logOffset: number;
}

export class Supervisor {
  private readonly procs = new Map<string, NodeProcess>();
  private stopping = false;
  /** The command prefix that runs node `name` where it lives (`ip netns exec <ns>` with --netns; none on loopback). */
  launcher: (name: string) => readonly string[] = () => [];

  constructor(
    private readonly logDir: string,
    private readonly env: NodeJS.ProcessEnv = process.env,
  ) {}

  /** Starts `postmix <args>` as a child named `name`. */
  start(name: string, args: readonly string[]): NodeProcess {
    const logFile = join(this.logDir, `${name}.log`);
    const logOffset = existsSync(logFile) ? statSync(logFile).size : 0;
    const out: WriteStream = createWriteStream(logFile, { flags: 'a' });
    const [cmd, ...prefix] = [...this.launcher(name), process.execPath];
    const child = spawn(cmd!, [...prefix, POSTMIX_BIN, ...args], {
      env: { ...this.env, POSTMIX_NODE_NAME: name },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    child.stdout?.pipe(out, { end: false });
    child.stderr?.pipe(out, { end: false });
    const p: NodeProcess = {
      name,
      args,
      logFile,
      logOffset,
      child,
      exited: new Promise((res) => {
        child.once('exit', (code, signal) => {
          p.status = signal ? `killed by ${signal}` : `exit ${code}`;
          setTimeout(() => out.end(), 50);
          res(code);
        });
      }),
    };
    this.procs.set(name, p);
    return p;
  }

  get(name: string): NodeProcess | undefined {
    return this.procs.get(name);
  }

  list(): NodeProcess[] {
    return [...this.procs.values()];
  }

  /** Resolves when `re` appears in the node's log; rejects if it exits first or after `timeoutMs`. */
  async waitForLog(name: string, re: RegExp, timeoutMs: number): Promise<string> {
    const p = this.procs.get(name);
    if (!p) throw new Error(`no process ${name}`);
    const end = Date.now() + timeoutMs;
    for (;;) {
      let text = '';
      try {
        text = readFileSync(p.logFile).subarray(p.logOffset).toString('utf8');
      } catch {
        /* not written yet */
      }
      const m = re.exec(text);
      if (m) return m[0];
      if (p.status) throw new Error(`${name} ${p.status} before it was ready; see ${p.logFile}:\n${tail(text, 15)}`);
      if (Date.now() > end) throw new Error(`${name} not ready after ${timeoutMs} ms; see ${p.logFile}:\n${tail(text, 15)}`);
      await new Promise((r) => setTimeout(r, 100));
    }
  }

  /** SIGKILL: the process gets no chance to clean up (a crash). */
  kill(name: string): Promise<number | null> {
    const p = this.procs.get(name);
    if (!p) throw new Error(`no process ${name}`);
    p.child.kill('SIGKILL');
    return p.exited;
  }

  /**
   * SIGKILL then start again with the same command (a crash and an operator's restart); resolves
   * when the new process logs `ready`.
   */
  async restart(name: string, ready: RegExp, downMs: number, timeoutMs = 60_000): Promise<void> {
    const p = this.procs.get(name);
    if (!p) throw new Error(`no process ${name}`);
    await this.kill(name);
    await new Promise((r) => setTimeout(r, downMs));
    if (this.stopping) return;
    this.start(name, p.args);
    await this.waitForLog(name, ready, timeoutMs);
  }

  /** SIGTERM every process still running, then SIGKILL whatever is left after `graceMs`. */
  async stopAll(graceMs = 8000): Promise<void> {
    if (this.stopping) return;
    this.stopping = true;
    const running = this.list().filter((p) => !p.status);
    for (const p of running) p.child.kill('SIGTERM');
    const timer = setTimeout(() => {
      for (const p of running) if (!p.status) p.child.kill('SIGKILL');
    }, graceMs);
    await Promise.all(running.map((p) => p.exited));
    clearTimeout(timer);
  }
}

function tail(text: string, lines: number): string {
  return text.split('\n').slice(-lines).join('\n');
}
