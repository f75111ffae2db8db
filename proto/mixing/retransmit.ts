/**
 * When a sender resends a fragment whose ACK has not come back: randomised exponential backoff
 * over the route's expected round trip. Pure, so the client (client/sender.ts) and the simulator
 * follow the same rule.
 *
 * The wait after the k-th send of a fragment (k = 1 for the first) is drawn uniformly from
 * [T_k / 2, 3 T_k / 2) with
 *
 *     T_k = min(maxMs, (factor · E[round trip] + marginMs) · 2^(k-1)),
 *
 * where E[round trip] is the Erlang mean of the forward and reply routes' Exp(μ) hop delays
 * ((forwardHops + replyHops) / μ). Why each part:
 * - the base covers the mixing delay with a margin for links and the gateway;
 * - doubling per attempt bounds what a lost or withheld ACK costs the network (a dead route or
 *   a gateway that never answers gets ever fewer packets, not a steady stream);
 * - the jitter (from the caller's CSPRNG) means the recipient's gateway, which sees a withheld
 *   fragment come back, learns from its arrival time little beyond the policy itself: the resend
 *   leaves at a random point of a window as wide as the expected wait, then waits for a slot of
 *   the Poisson payload stream and crosses the mixes on a fresh route with fresh delays.
 * docs/client.md ("Resending") and docs/threat-model.md say what a withholding gateway still
 * learns.
 */
import { expectedRouteDelaySeconds, type Uniform } from './params.ts';

export interface RetransmitPolicy {
  /** Multiplies the expected round trip (Erlang mean of forward + reply routes). */
  readonly factor: number;
  /** Added for link latency and gateway processing, ms. */
  readonly marginMs: number;
  /** Upper bound of the nominal wait T_k, ms. */
  readonly maxMs: number;
}

export const DEFAULT_RETRANSMIT: RetransmitPolicy = Object.freeze({ factor: 3, marginMs: 5_000, maxMs: 3_600_000 });

/** T_1: the nominal wait for the first send's ACK, ms. */
export function ackTimeoutBaseMs(forwardHops: number, replyHops: number, mu: number, p: RetransmitPolicy = DEFAULT_RETRANSMIT): number {
  return Math.ceil(expectedRouteDelaySeconds(forwardHops + replyHops, mu) * 1000 * p.factor + p.marginMs);
}

/** T_k: the nominal wait after the k-th send (k ≥ 1), ms. */
export function nominalRetransmitMs(attempt: number, baseMs: number, p: RetransmitPolicy = DEFAULT_RETRANSMIT): number {
  if (!Number.isInteger(attempt) || attempt < 1) throw new RangeError(`attempt must be an integer >= 1, got ${attempt}`);
  return Math.min(p.maxMs, baseMs * 2 ** Math.min(attempt - 1, 52));
}

/** The wait after the k-th send before the fragment is due again: uniform in [T_k/2, 3T_k/2), ms. */
export function retransmitDelayMs(attempt: number, baseMs: number, uniform: Uniform, p: RetransmitPolicy = DEFAULT_RETRANSMIT): number {
  const t = nominalRetransmitMs(attempt, baseMs, p);
  return Math.ceil(t * (0.5 + uniform()));
}
