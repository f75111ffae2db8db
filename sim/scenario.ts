/**
 * A simulation scenario: every field has a default, can come from a YAML file and can be set by
 * a CLI flag. Seconds and per-second rates throughout. The mixing rates map onto the shared
 * MixingParams of proto/mixing (the same type the network document carries).
 */
import { readFileSync } from 'node:fs';
import { parse as parseYaml } from 'yaml';
import { validateMixingParams, type MixingParams } from '../proto/mixing/params.ts';
import { MAX_FRAGMENTS, fragmentCapacity, fragmentCount } from '../proto/fragment/index.ts';
import { TOKEN_LENGTH } from '../proto/tokens/index.ts';
import { DEFAULT_GEOMETRY, packetSizes } from '../proto/sphinx/index.ts';

/** A recipient address of typical length ("alice.example@example.org"), for the fragment header. */
export const RECIPIENT_BYTES = 25;

export type Topology = 'stratified' | 'cascade' | 'free-route';
/** exponential: Loopix continuous-time mix (sender-chosen Exp(μ) delays); threshold: a batch mix. */
export type MixKind = 'exponential' | 'threshold';

export interface Scenario {
  /** number of clients (senders); all of them send traffic */
  clients: number;
  /** L: mix layers (route length in mixing hops) */
  layers: number;
  /** W: mixes per layer */
  layerSize: number;
  /** λ_P: each client's payload stream (packets/s); real packets when no cover is configured */
  rate: number;
  /**
   * Rate of real messages entering each client's outbox, as a Poisson process (postmix mode:
   * each message is cut into fragments by the proto/fragment rule, each fragment waits for a
   * payload tick, is ACKed through a SURB and resent on timeout). null is the idealised Loopix
   * model: every payload tick carries a one-packet real message, no ACKs.
   */
  realRate: number | null;
  /** median message size in bytes (postmix mode) */
  messageBytes: number;
  /** log-normal shape σ of the message size (0: every message is `messageBytes`) */
  messageBytesSigma: number;
  /** Sphinx payload size (bytes); with the SURB and token it sets the fragment capacity */
  payloadSize: number;
  /** gateways (mail intakes and home gateways with mailboxes); clients are homed round-robin */
  gateways: number;
  /** postmix mode: gateways ACK each fragment through its SURB and clients resend on timeout */
  acks: boolean;
  /** the gateway holds each ACK Exp(μ) before sending it (false: at once, as gateways do today) */
  ackDelay: boolean;
  /** λ_G: each gateway's own loop cover rate (postmix mode) */
  gatewayLoopRate: number;
  /** probability that a packet is lost at each hop (a failing node), so retransmission shows */
  loss: number;
  /** a fragment is sent at most this many times, then its message bounces */
  maxAttempts: number;
  /** gateways each client writes to (its real messages pick one uniformly); the SDA names them */
  contacts: number;
  /** fraction of gateways the adversary holds (0..1), chosen with the seed */
  compromisedGateways: number;
  /** attack 1: the target's first contact gateway is the adversary's and withholds its ACKs */
  withholdAcks: boolean;
  /** messages of the target client followed by the message-level attacks */
  messageTargets: number;
  /**
   * What a payload tick carries when no fragment is due: a decoy (`payloadTick`, the protocol:
   * to a random gateway, which answers it through its SURB as it answers a fragment, so the home
   * gateway gets one item per tick whether or not the client sends real mail), drop cover (the
   * Loopix rule, postmix before issue 11 point 2; for comparison) or a loop to the client's own
   * mailbox (for comparison)
   */
  payloadCover: 'decoy' | 'drop' | 'loop';
  /** 1/μ: mean per-hop delay (s) */
  meanDelay: number;
  /** λ_L: client loop cover rate */
  loopRate: number;
  /** λ_D: client drop cover rate (a separate stream) */
  dropRate: number;
  /** λ_M: each mix's loop cover rate */
  mixLoopRate: number;
  /** per-hop processing time (s), constant: a packet enters the pool this long after it arrives */
  processingTime: number;
  /** one-way link latency (s), constant, on every link */
  linkLatency: number;
  /** simulated seconds */
  duration: number;
  /** seconds before any metric counts and any target is chosen */
  warmup: number;
  /** K: tracked target packets */
  targets: number;
  seed: number;
  topology: Topology;
  /** the mixing rule at every mix (threshold is for comparison with older designs) */
  mix: MixKind;
  /** threshold mix: flush when this many packets are in the pool */
  threshold: number;
  /** threshold pool mix: packets kept back (chosen at random) at each flush; 0 = plain threshold mix */
  poolKeep: number;
  /** fraction of mixes the adversary holds (0..1), chosen with the seed */
  compromised: number;
  /** trace ring-buffer records for the backward (sender) analysis; 0 sizes it from the traffic */
  traceCapacity: number;
}

export const DEFAULT_SCENARIO: Scenario = Object.freeze({
  clients: 100,
  layers: 3,
  layerSize: 3,
  rate: 1,
  realRate: null,
  messageBytes: 1000,
  messageBytesSigma: 0,
  payloadSize: 2048,
  gateways: 4,
  acks: true,
  ackDelay: false,
  gatewayLoopRate: 0,
  loss: 0,
  maxAttempts: 5,
  contacts: 2,
  compromisedGateways: 0,
  withholdAcks: false,
  messageTargets: 200,
  payloadCover: 'decoy' as const,
  meanDelay: 0.1,
  loopRate: 0,
  dropRate: 0,
  mixLoopRate: 0,
  processingTime: 0,
  linkLatency: 0,
  duration: 600,
  warmup: 60,
  targets: 1000,
  seed: 1,
  topology: 'stratified' as Topology,
  mix: 'exponential' as MixKind,
  threshold: 10,
  poolKeep: 0,
  compromised: 0,
  traceCapacity: 0,
});

export class ScenarioError extends Error {
  override readonly name = 'ScenarioError';
}

/** The scenario's rates as the shared network-document parameter type. */
export function mixingParamsOf(s: Scenario): MixingParams {
  return validateMixingParams({
    lambdaP: s.rate,
    lambdaL: s.loopRate,
    lambdaD: s.dropRate,
    lambdaM: s.mixLoopRate,
    lambdaG: s.gatewayLoopRate,
    mu: 1 / s.meanDelay,
  });
}

const INT_FIELDS = [
  'clients',
  'layers',
  'layerSize',
  'targets',
  'seed',
  'traceCapacity',
  'threshold',
  'poolKeep',
  'payloadSize',
  'gateways',
  'maxAttempts',
  'contacts',
  'messageTargets',
] as const;
const NUM_FIELDS = [
  'rate',
  'meanDelay',
  'loopRate',
  'dropRate',
  'mixLoopRate',
  'processingTime',
  'linkLatency',
  'duration',
  'warmup',
  'compromised',
  'messageBytes',
  'messageBytesSigma',
  'gatewayLoopRate',
  'loss',
  'compromisedGateways',
] as const;
const BOOL_FIELDS = ['acks', 'ackDelay', 'withholdAcks'] as const;

/** Merges a partial scenario onto the defaults and checks every field. */
export function makeScenario(partial: Partial<Scenario> = {}): Scenario {
  const s: Scenario = { ...DEFAULT_SCENARIO, ...stripUndefined(partial) };
  for (const k of INT_FIELDS) {
    const v = s[k];
    if (!Number.isInteger(v) || v < 0) throw new ScenarioError(`${k} must be an integer >= 0, got ${String(v)}`);
  }
  for (const k of NUM_FIELDS) {
    const v = s[k];
    if (typeof v !== 'number' || !Number.isFinite(v) || v < 0) throw new ScenarioError(`${k} must be a finite number >= 0, got ${String(v)}`);
  }
  if (s.clients < 1) throw new ScenarioError('clients must be >= 1');
  if (s.layers < 1 || s.layers > 64) throw new ScenarioError('layers must be 1..64');
  if (s.layerSize < 1) throw new ScenarioError('layerSize must be >= 1');
  if (!(s.meanDelay > 0)) throw new ScenarioError('meanDelay must be > 0');
  if (s.compromised > 1) throw new ScenarioError('compromised is a fraction in [0, 1]');
  if (s.warmup >= s.duration) throw new ScenarioError('warmup must be shorter than duration');
  if (s.realRate !== null && (typeof s.realRate !== 'number' || !(s.realRate >= 0))) throw new ScenarioError('realRate must be null or a number >= 0');
  for (const k of BOOL_FIELDS) if (typeof s[k] !== 'boolean') throw new ScenarioError(`${k} must be true or false, got ${String(s[k])}`);
  if (s.realRate !== null && s.realRate * meanFragments(s) >= s.rate)
    throw new ScenarioError(
      `realRate × fragments per message (${(s.realRate * meanFragments(s)).toFixed(3)}/s) must be below rate (the payload stream must keep up with the outbox)`,
    );
  if (s.gateways < 1) throw new ScenarioError('gateways must be >= 1');
  if (s.contacts < 1 || s.contacts > s.gateways) throw new ScenarioError('contacts must be 1..gateways');
  if (s.maxAttempts < 1) throw new ScenarioError('maxAttempts must be >= 1');
  if (s.loss >= 1) throw new ScenarioError('loss is a probability in [0, 1)');
  if (s.compromisedGateways > 1) throw new ScenarioError('compromisedGateways is a fraction in [0, 1]');
  if (s.mix === 'threshold' && s.realRate !== null)
    throw new ScenarioError('threshold mixes run the idealised model only (realRate null): an ACK round trip through a batch mix depends on other traffic');
  fragmentCapacityOf(s);
  if (!['stratified', 'cascade', 'free-route'].includes(s.topology))
    throw new ScenarioError(`topology must be stratified, cascade or free-route, got ${String(s.topology)}`);
  if (!['decoy', 'drop', 'loop'].includes(s.payloadCover)) throw new ScenarioError(`payloadCover must be decoy, drop or loop, got ${String(s.payloadCover)}`);
  if (!['exponential', 'threshold'].includes(s.mix)) throw new ScenarioError(`mix must be exponential or threshold, got ${String(s.mix)}`);
  if (s.threshold < 1 || s.poolKeep >= s.threshold) throw new ScenarioError('threshold must be >= 1 and poolKeep < threshold');
  if (s.traceCapacity !== 0 && s.traceCapacity < 1024) throw new ScenarioError('traceCapacity must be 0 (sized from the traffic) or >= 1024');
  if (s.rate + s.loopRate + s.dropRate <= 0) throw new ScenarioError('clients send nothing: set rate, loopRate or dropRate > 0');
  mixingParamsOf(s);
  return s;
}

/**
 * Data bytes per fragment under the scenario's payload size: the proto/fragment rule with the
 * SURB of the default geometry at that payload size, a delivery token and a typical recipient.
 */
export function fragmentCapacityOf(s: Pick<Scenario, 'payloadSize'>): number {
  const surb = packetSizes({ ...DEFAULT_GEOMETRY, payloadSize: s.payloadSize }).surb;
  const cap = fragmentCapacity(s.payloadSize, RECIPIENT_BYTES, TOKEN_LENGTH, surb);
  if (cap < 1) throw new ScenarioError(`payloadSize ${s.payloadSize} leaves no room for fragment data`);
  return cap;
}

/** Expected fragments per message under the size distribution (by quadrature over the log-normal). */
export function meanFragments(s: Pick<Scenario, 'payloadSize' | 'messageBytes' | 'messageBytesSigma'>): number {
  const cap = fragmentCapacityOf(s);
  if (s.messageBytesSigma === 0) return fragmentCountFor(s.messageBytes, cap);
  let acc = 0;
  const n = 400;
  for (let i = 0; i < n; i++) {
    const z = normalQuantile((i + 0.5) / n);
    acc += fragmentCountFor(s.messageBytes * Math.exp(s.messageBytesSigma * z), cap);
  }
  return acc / n;
}

/** Fragments for a message of `bytes` bytes: the proto/fragment rule, at most MAX_FRAGMENTS. */
export function fragmentCountFor(bytes: number, capacity: number): number {
  return Math.min(MAX_FRAGMENTS, fragmentCount(Math.round(bytes), capacity));
}

/** Acklam's rational approximation of the standard normal quantile (|error| < 1.2e-9). */
export function normalQuantile(p: number): number {
  const a = [-39.69683028665376, 220.9460984245205, -275.928510446969, 138.357751867269, -30.66479806614716, 2.506628277459239];
  const b = [-54.47609879822406, 161.5858368580409, -155.6989798598866, 66.80131188771972, -13.28068155288572];
  const c = [-0.007784894002430293, -0.3223964580411365, -2.400758277161838, -2.549732539343734, 4.374664141464968, 2.938163982698783];
  const d = [0.007784695709041462, 0.3224671290700398, 2.445134137142996, 3.754408661907416];
  const lo = 0.02425;
  if (p < lo) {
    const q = Math.sqrt(-2 * Math.log(p));
    return (((((c[0]! * q + c[1]!) * q + c[2]!) * q + c[3]!) * q + c[4]!) * q + c[5]!) / ((((d[0]! * q + d[1]!) * q + d[2]!) * q + d[3]!) * q + 1);
  }
  if (p > 1 - lo) return -normalQuantile(1 - p);
  const q = p - 0.5;
  const r = q * q;
  return (
    ((((((a[0]! * r + a[1]!) * r + a[2]!) * r + a[3]!) * r + a[4]!) * r + a[5]!) * q) / (((((b[0]! * r + b[1]!) * r + b[2]!) * r + b[3]!) * r + b[4]!) * r + 1)
  );
}

function stripUndefined<T extends object>(o: T): Partial<T> {
  const out: Partial<T> = {};
  for (const [k, v] of Object.entries(o)) if (v !== undefined) (out as Record<string, unknown>)[k] = v;
  return out;
}

/** Scenario YAML keys: the camelCase field names, or kebab-case like the flags. */
export function loadScenarioFile(path: string): Partial<Scenario> {
  const doc = parseYaml(readFileSync(path, 'utf8')) as unknown;
  if (doc === null || typeof doc !== 'object' || Array.isArray(doc)) throw new ScenarioError(`${path}: not a YAML mapping`);
  const out: Record<string, unknown> = {};
  const known = new Set(Object.keys(DEFAULT_SCENARIO));
  for (const [k, v] of Object.entries(doc as Record<string, unknown>)) {
    const key = k.replace(/[-_]([a-z])/g, (_, c: string) => c.toUpperCase());
    if (!known.has(key)) throw new ScenarioError(`${path}: unknown scenario field "${k}"`);
    out[key] = v;
  }
  return out as Partial<Scenario>;
}
