/**
 * Sweeps past one machine: the runs of a sweep (grid points × replicates) go to a BullMQ queue
 * on Redis, and `postmix sim worker` processes on any number of machines take them. A run is
 * a pure function of its scenario (seeded), so a queued sweep gives the same rows as a local
 * one. Each job carries its scenario and its place in the sweep; a worker runs it on a worker
 * thread (the process's event loop stays free to keep the job's lock) and returns the result
 * without its per-sample arrays. A worker that dies mid-run leaves a stalled job, which BullMQ
 * hands to another worker.
 */
import { hostname } from 'node:os';
import { randomUUID } from 'node:crypto';
import { Queue, QueueEvents, Worker, type Job } from 'bullmq';
import type { RunResult } from './model.ts';
import type { Scenario } from './scenario.ts';
import { runSweep } from './sweep.ts';

export const QUEUE_NAME = 'postmix-sim';

interface RunJob {
  sweep: string;
  index: number;
  scenario: Partial<Scenario>;
}

interface RunJobResult {
  result: RunResult;
  /** host:pid of the worker that ran it */
  worker: string;
}

/** BullMQ connection options from a redis:// URL. */
export function connectionOf(url: string): { host: string; port: number; db?: number; password?: string; maxRetriesPerRequest: null } {
  let u: URL;
  try {
    u = new URL(url);
  } catch {
    throw new Error(`--queue: not a URL: ${url} (expected redis://HOST:PORT)`);
  }
  if (u.protocol !== 'redis:') throw new Error(`--queue: expected a redis:// URL, got ${url}`);
  const db = u.pathname.length > 1 ? Number(u.pathname.slice(1)) : undefined;
  return {
    host: u.hostname || '127.0.0.1',
    port: u.port ? Number(u.port) : 6379,
    ...(db !== undefined && Number.isInteger(db) ? { db } : {}),
    ...(u.password ? { password: decodeURIComponent(u.password) } : {}),
    // BullMQ's workers block on Redis; it needs ioredis to retry forever
    maxRetriesPerRequest: null,
  };
}

export interface QueueRunOptions {
  onDone?: (done: number, total: number, r: RunResult, worker: string) => void;
}

/** Puts every scenario on the queue and returns the results in the same order. */
export async function runOnQueue(url: string, scenarios: ReadonlyArray<Partial<Scenario>>, opts: QueueRunOptions = {}): Promise<RunResult[]> {
  const connection = connectionOf(url);
  const queue = new Queue<RunJob, RunJobResult>(QUEUE_NAME, { connection });
  const events = new QueueEvents(QUEUE_NAME, { connection });
  try {
    await events.waitUntilReady();
    const sweep = randomUUID();
    const jobs = await queue.addBulk(
      scenarios.map((scenario, index) => ({
        name: 'run',
        data: { sweep, index, scenario },
        opts: { jobId: `${sweep}-${index}`, removeOnComplete: true, removeOnFail: 100, attempts: 2 },
      })),
    );
    const results: RunResult[] = new Array(scenarios.length);
    let done = 0;
    await Promise.all(
      jobs.map(async (job: Job<RunJob, RunJobResult>, i: number) => {
        const out = (await job.waitUntilFinished(events)) as RunJobResult;
        results[i] = out.result;
        opts.onDone?.(++done, scenarios.length, out.result, out.worker);
      }),
    );
    return results;
  } finally {
    await events.close();
    await queue.close();
  }
}

export interface WorkerOptions {
  concurrency: number;
  /** stop after this many runs (0: until SIGTERM/SIGINT) */
  maxJobs: number;
  log: (line: string) => void;
}

/** Takes runs from the queue until stopped; resolves when the worker has closed. */
export async function runQueueWorker(url: string, opts: WorkerOptions): Promise<number> {
  const connection = connectionOf(url);
  const me = `${hostname()}:${process.pid}`;
  let completed = 0;
  let closing: Promise<void> | null = null;
  const worker = new Worker<RunJob, RunJobResult>(
    QUEUE_NAME,
    async (job) => {
      const [result] = await runSweep([job.data.scenario], { workers: 1 });
      return { result: result!, worker: me };
    },
    { connection, concurrency: Math.max(1, opts.concurrency) },
  );
  const stop = () => {
    closing ??= worker.close();
    return closing;
  };
  worker.on('completed', (job) => {
    completed++;
    opts.log(`sim worker ${me}: run ${job.data.index} of sweep ${job.data.sweep.slice(0, 8)} done (${completed})`);
    if (opts.maxJobs > 0 && completed >= opts.maxJobs) void stop();
  });
  worker.on('failed', (job, err) => opts.log(`sim worker ${me}: run ${job?.data.index ?? '?'} failed: ${err.message}`));
  worker.on('error', (err) => opts.log(`sim worker ${me}: ${err.message}`));
  const onSignal = () => {
    opts.log(`sim worker ${me}: stopping (finishing the runs in hand)`);
    void stop();
  };
  process.once('SIGTERM', onSignal);
  process.once('SIGINT', onSignal);
  await worker.waitUntilReady();
  opts.log(`sim worker ${me}: waiting for runs on ${url} (queue ${QUEUE_NAME})`);
  await new Promise<void>((resolve) => worker.once('closed', () => resolve()));
  process.off('SIGTERM', onSignal);
  process.off('SIGINT', onSignal);
  return completed;
}
