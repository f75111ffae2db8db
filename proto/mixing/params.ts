/**
 * The mixing and cover-traffic parameters of one network (Loopix, Piotrowska et al. 2017), as
 * the network document carries them. Rates are per second; the per-hop delay is Exp(mu), so its
 * mean is 1/mu seconds. The client, the mix node and the simulator all read these types and
 * the rules below, so the simulated network and the real one follow the same rules.
 */
export interface MixingParams {
  /** λ_P: rate of a client's payload stream (real packets replace decoys in it). */
  readonly lambdaP: number;
  /** λ_L: rate of a client's loop cover packets. */
  readonly lambdaL: number;
  /** λ_D: rate of a client's drop cover packets. */
  readonly lambdaD: number;
  /** λ_M: rate of a mix node's own loop cover packets. */
  readonly lambdaM: number;
  /**
   * λ_G: rate of a gateway's own loop cover packets (as Loopix providers send), so that an
   * observer of a gateway's links cannot tell the ACKs it sends from its cover.
   */
  readonly lambdaG: number;
  /** μ: per-hop delay rate; each hop holds a packet Exp(μ) seconds (mean 1/μ). */
  readonly mu: number;
}

/**
 * The network document's defaults, chosen from the simulator's sweep in docs/sim.md ("Results"):
 * a mean hop delay of 200 ms (μ = 5) and λ_D = 1 buy ≈ 1.1 bits of per-packet entropy and
 * make a compromised recipient gateway name a sender a quarter as often as μ = 10, λ_D = 0.5,
 * for ≈ 1.1 s more to a message's last ACK and ≈ 17 % more cover.
 */
export const DEFAULT_MIXING: MixingParams = Object.freeze({
  lambdaP: 2,
  lambdaL: 0.5,
  lambdaD: 1,
  lambdaM: 0.5,
  lambdaG: 0.5,
  mu: 5,
});

/**
 * A source of uniform numbers in [0, 1): `csprngUniform` (proto/util/random.ts) in every daemon,
 * a seeded generator in the simulator and tests. Never the engine's built-in generator
 * (random.ts says why).
 */
export type Uniform = () => number;

/** One draw from Exp(rate), in seconds, by inversion. rate <= 0 means "never" (Infinity). */
export function sampleExponential(rate: number, uniform: Uniform): number {
  if (!(rate > 0)) return Infinity;
  // 1 - u is in (0, 1], so the log is finite
  return -Math.log(1 - uniform()) / rate;
}

/** Per-hop delay the sender writes into a hop's Delay command, in whole milliseconds. */
export function samplePerHopDelayMs(mu: number, uniform: Uniform): number {
  const s = sampleExponential(mu, uniform);
  if (!Number.isFinite(s)) return 0;
  return Math.min(0xffffffff, Math.round(s * 1000));
}

/** The kinds of packet a client's streams emit. */
export type StreamKind = 'payload' | 'loop' | 'drop';

/**
 * The Loopix sending rule for the payload stream: at each tick of the Poisson(λ_P) process a
 * client sends the next real packet if one is queued, and a decoy otherwise, so an observer sees
 * the same rate whether or not the client is talking. A decoy (docs/spec/fragment.md) goes to a
 * random gateway's mail queue carrying a SURB, which that gateway answers as it answers a
 * fragment: every tick, real or not, brings one reply back to the client's mailbox, so its home
 * gateway sees the same items either way (Loopix sends drop cover here, whose missing replies
 * would let the home gateway count the ACKs; Katzenpost's decoys are the model).
 */
export function payloadTick(realQueued: number): 'real' | 'decoy' {
  return realQueued > 0 ? 'real' : 'decoy';
}

/** Expected end-to-end mixing delay of a route with `hops` delaying hops: the Erlang(hops, μ) mean. */
export function expectedRouteDelaySeconds(hops: number, mu: number): number {
  return mu > 0 ? hops / mu : 0;
}

export class MixingParamsError extends Error {
  override readonly name = 'MixingParamsError';
}

export function validateMixingParams(p: MixingParams): MixingParams {
  for (const k of ['lambdaP', 'lambdaL', 'lambdaD', 'lambdaM', 'lambdaG', 'mu'] as const) {
    const v = p[k];
    if (typeof v !== 'number' || !Number.isFinite(v) || v < 0) throw new MixingParamsError(`${k} must be a finite number >= 0, got ${String(v)}`);
  }
  if (p.mu === 0) throw new MixingParamsError('mu must be > 0 (it is the per-hop delay rate)');
  return p;
}
