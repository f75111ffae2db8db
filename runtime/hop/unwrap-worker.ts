/**
 * The body of one Sphinx worker thread (runtime/hop/unwrap-pool.ts starts it): it picks the
 * suite the event loop runs on, by name, says it is ready, then runs every job it is given and
 * answers with the job's id once its results are in the job's shared result buffer:
 * - 'unwrap': peels a batch of frames (proto/hop/unwrap-batch.ts);
 * - 'tokens': a gateway's POPRF token checks (verifyToken), one result byte each;
 * - 'replies': a gateway's ACK packets built from their SURBs (packetFromSurb).
 * It holds no state but prepared keys; the replay store, the spent set and the delay queue stay
 * on the event loop (a job's results are pure functions of its inputs).
 */
import { parentPort, workerData, type MessagePort } from 'node:worker_threads';
import { unwrapBatch } from '../../proto/hop/unwrap-batch.ts';
import { fastestSuiteSelection, nobleSuite, nodeSuite, prepareHopKey, type Geometry, type HopPrivateKey, type SphinxSuite } from '../../proto/sphinx/index.ts';
import { bytesEqual } from '../../proto/util/bytes.ts';
import { decodeToken, useFastestTokenChecks, verifyToken, type IssuerKeys } from '../../proto/tokens/index.ts';
import { buildReplySlot, type ReplyJob, type TokenJob } from '../../proto/hop/reply-batch.ts';

/** What the event loop sends for one batch of frames to peel. */
export interface UnwrapMessage {
  readonly kind: 'unwrap';
  readonly id: number;
  readonly geometry: Geometry;
  readonly count: number;
  readonly frames: SharedArrayBuffer;
  readonly results: SharedArrayBuffer;
  readonly keyIndex: Uint8Array;
  readonly keys: readonly { readonly epoch: number; readonly secret: Uint8Array }[];
}

/** One job for a worker (its id names it in the answer). */
export type BatchMessage = UnwrapMessage | (TokenJob & { readonly id: number }) | (ReplyJob & { readonly id: number });

export interface UnwrapWorkerData {
  /** The suite the event loop runs on (`SphinxSuite.name`): the worker runs on the same one, or refuses to start. */
  readonly suite: string;
  /** Where each finished batch's id goes (the event loop also reads it synchronously). */
  readonly done: MessagePort;
  /** Tests only: while above 0, a batch taken decrements it and crashes the worker (runtime/hop/unwrap-pool.test.ts). */
  readonly testCrashes?: SharedArrayBuffer;
}

/** The suite called `name`, as the event loop chose it (proto/sphinx/suite-select.ts). */
function suiteNamed(name: string): SphinxSuite {
  if (name === nodeSuite.name) return nodeSuite;
  if (name === nobleSuite.name) return nobleSuite;
  const s = fastestSuiteSelection().suite;
  if (s.name !== name)
    throw new Error(`the event loop runs Sphinx on ${name}, this worker thread could only load ${s.name} (${fastestSuiteSelection().fallbackReason ?? ''})`);
  return s;
}

export function runUnwrapWorker(): void {
  const port = parentPort!;
  const data = workerData as UnwrapWorkerData & { url: string };
  const suite = suiteNamed(data.suite);
  const crashes = data.testCrashes ? new Int32Array(data.testCrashes) : undefined;
  // prepared keys by epoch (a handful: the current epoch's, the previous one's in its grace)
  const prepared = new Map<number, { secret: Uint8Array; key: HopPrivateKey }>();
  const keyOf = (epoch: number, secret: Uint8Array): HopPrivateKey => {
    const hit = prepared.get(epoch);
    if (hit && bytesEqual(hit.secret, secret)) return hit.key;
    if (prepared.size >= 8) prepared.clear();
    const key = prepareHopKey(suite, secret);
    prepared.set(epoch, { secret: secret.slice(), key });
    return key;
  };
  // token checks on the backend the gateway's event loop uses (libsodium), loaded on the first
  // token job: a mix node's workers never pay for it
  let tokenBackend: Promise<unknown> | undefined;
  const checkTokens = (m: TokenJob & { id: number }) => {
    const out = new Uint8Array(m.results);
    const issuer: IssuerKeys = m.issuer;
    for (let i = 0; i < m.count; i++) {
      const it = m.items[i]!;
      const tok = decodeToken(it.token);
      out[i] = tok !== null && verifyToken(issuer, it.recipient, tok) ? 1 : 0;
    }
    data.done.postMessage(m.id);
  };
  port.on('message', (m: BatchMessage) => {
    if (crashes) {
      const left = Atomics.load(crashes, 0);
      if (left > 0 && Atomics.compareExchange(crashes, 0, left, left - 1) === left) throw new Error('test crash of a Sphinx worker');
    }
    if (m.kind === 'tokens') {
      // an error here is a crash like any other: the pool runs the job again elsewhere, once
      void (tokenBackend ??= useFastestTokenChecks()).then(() => checkTokens(m));
      return;
    }
    if (m.kind === 'replies') {
      const inputs = new Uint8Array(m.inputs);
      const out = new Uint8Array(m.results);
      for (let i = 0; i < m.count; i++) buildReplySlot(suite, m.geometry, inputs, out, i);
      data.done.postMessage(m.id);
      return;
    }
    unwrapBatch(
      { geometry: m.geometry, count: m.count, frames: new Uint8Array(m.frames), keyIndex: m.keyIndex, results: new Uint8Array(m.results) },
      m.keys.map((k) => keyOf(k.epoch, k.secret)),
    );
    data.done.postMessage(m.id);
  });
  port.postMessage({ ready: true, suite: suite.name });
}
