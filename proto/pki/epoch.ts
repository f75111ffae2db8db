/**
 * Epoch arithmetic (docs/spec/pki.md §5). Epoch e covers the half-open interval
 * [origin + e * length, origin + (e + 1) * length) in unix seconds. Epoch numbers are uint32.
 * Within epoch e the authorities produce the document for epoch e + 1 on a fixed schedule
 * (fractions of the epoch), and the Sphinx keys of epoch e stay valid for `grace` seconds after
 * e ends so packets in flight at the boundary are still processed.
 */
export interface EpochConfig {
  /** Unix seconds of the start of epoch 0. */
  readonly origin: number;
  /** Seconds per epoch (default 3600; tests use a few seconds). */
  readonly length: number;
  /** Seconds the previous epoch's Sphinx keys stay valid after its end. */
  readonly grace: number;
}

/** 2026-01-01T00:00:00Z. */
export const DEFAULT_EPOCH_ORIGIN = 1_767_225_600;
export const DEFAULT_EPOCH: EpochConfig = Object.freeze({ origin: DEFAULT_EPOCH_ORIGIN, length: 3600, grace: 600 });
export const MAX_EPOCH = 0xffffffff;

/**
 * How many epochs past its own a network document may list Sphinx keys for, and so stay usable
 * (proto/pki/validity.ts): a node's descriptor for E carries its keys for E … E + MAX_KEYS_AHEAD,
 * and routing goes on through an authority outage until the last of them.
 */
export const MAX_KEYS_AHEAD = 3;
/** The authorities' default `keys_ahead`: every key a descriptor can carry. */
export const DEFAULT_KEYS_AHEAD = MAX_KEYS_AHEAD;

/** The epochs whose Sphinx keys a node's descriptor for epoch e carries: e … e + MAX_KEYS_AHEAD. */
export function keyEpochsOfDescriptor(e: number): number[] {
  return Array.from({ length: MAX_KEYS_AHEAD + 1 }, (_, j) => e + j);
}

/** Fractions of epoch e at which the authorities work on the document for e + 1. */
export const SCHEDULE = Object.freeze({
  /** Descriptors for e + 1 must arrive before this point of epoch e. */
  vote: 0.5,
  /** Authorities fetch each other's votes and sign their document. */
  tally: 0.625,
  /** Authorities fetch each other's signatures; the document is published once it has threshold. */
  collect: 0.75,
});

export function validateEpochConfig(c: EpochConfig): EpochConfig {
  if (!Number.isInteger(c.origin) || c.origin < 0 || c.origin > 0xffffffff) throw new RangeError(`epoch origin must be unix seconds (uint32), got ${c.origin}`);
  if (!Number.isInteger(c.length) || c.length < 1 || c.length > 7 * 86400)
    throw new RangeError(`epoch length must be an integer 1..604800 seconds, got ${c.length}`);
  if (!Number.isInteger(c.grace) || c.grace < 0 || c.grace > c.length) throw new RangeError(`grace must be an integer 0..length seconds, got ${c.grace}`);
  return c;
}

/** Unix seconds now (as a float) from a millisecond clock. */
export function nowSeconds(nowMs: number = Date.now()): number {
  return nowMs / 1000;
}

/** The epoch containing unix time t (seconds). Times before the origin are epoch 0. */
export function epochAt(c: EpochConfig, t: number): number {
  if (t < c.origin) return 0;
  return Math.min(MAX_EPOCH, Math.floor((t - c.origin) / c.length));
}

export function epochStart(c: EpochConfig, e: number): number {
  return c.origin + e * c.length;
}

export function epochEnd(c: EpochConfig, e: number): number {
  return c.origin + (e + 1) * c.length;
}

/** Seconds from t until epoch e + 1 starts. */
export function secondsUntilNextEpoch(c: EpochConfig, t: number): number {
  return epochEnd(c, epochAt(c, t)) - t;
}

/** The unix time of a schedule point within epoch e. */
export function schedulePoint(c: EpochConfig, e: number, fraction: number): number {
  return epochStart(c, e) + fraction * c.length;
}

/**
 * The epochs whose Sphinx keys a node must accept at time t: the current one, and the previous
 * one during the grace window after the boundary.
 */
export function acceptedKeyEpochs(c: EpochConfig, t: number): number[] {
  const e = epochAt(c, t);
  if (e > 0 && t < epochStart(c, e) + c.grace) return [e, e - 1];
  return [e];
}

/** True if a key or document of epoch e may still be used at time t (its epoch or its grace). */
export function isEpochUsable(c: EpochConfig, e: number, t: number): boolean {
  return t >= epochStart(c, e) && t < epochEnd(c, e) + c.grace;
}
