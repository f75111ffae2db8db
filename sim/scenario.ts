/**
 * A simulation scenario: every field has a default, can come from a YAML file and can be set by
 * a CLI flag. Seconds and per-second rates throughout. The mixing rates map onto the shared
 * MixingParams of proto/mixing (the same type the network document carries).
 */
import { readFileSync } from 'node:fs';
import { parse as parseYaml } from 'yaml';
import { validateMixingParams, type MixingParams } from '../proto/mixing/params.ts';

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
   * Rate of real messages (one packet each) entering each client's queue, as a Poisson process;
   * null means every payload tick carries a real packet (no drop cover inside the stream).
   */
  realRate: number | null;
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
  /** trace ring-buffer records for the backward (sender) analysis */
  traceCapacity: number;
}

export const DEFAULT_SCENARIO: Scenario = Object.freeze({
  clients: 100,
  layers: 3,
  layerSize: 3,
  rate: 1,
  realRate: null,
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
  traceCapacity: 1 << 20,
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
    // gateway loop cover is not modelled by the simulator yet
    lambdaG: 0,
    mu: 1 / s.meanDelay,
  });
}

const INT_FIELDS = ['clients', 'layers', 'layerSize', 'targets', 'seed', 'traceCapacity', 'threshold', 'poolKeep'] as const;
const NUM_FIELDS = ['rate', 'meanDelay', 'loopRate', 'dropRate', 'mixLoopRate', 'processingTime', 'linkLatency', 'duration', 'warmup', 'compromised'] as const;

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
  if (s.realRate !== null && s.realRate >= s.rate && s.rate > 0)
    throw new ScenarioError('realRate must be below rate (the payload stream must keep up with the queue)');
  if (!['stratified', 'cascade', 'free-route'].includes(s.topology))
    throw new ScenarioError(`topology must be stratified, cascade or free-route, got ${String(s.topology)}`);
  if (!['exponential', 'threshold'].includes(s.mix)) throw new ScenarioError(`mix must be exponential or threshold, got ${String(s.mix)}`);
  if (s.threshold < 1 || s.poolKeep >= s.threshold) throw new ScenarioError('threshold must be >= 1 and poolKeep < threshold');
  if (s.traceCapacity < 1024) throw new ScenarioError('traceCapacity must be >= 1024');
  if (s.rate + s.loopRate + s.dropRate <= 0) throw new ScenarioError('clients send nothing: set rate, loopRate or dropRate > 0');
  mixingParamsOf(s);
  return s;
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
