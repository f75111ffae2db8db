/**
 * A recipient's key epochs on a schedule (pure; docs/spec/tokens.md, "Key epochs and
 * rotation"). Each epoch is a row (number, starts, ends | null, grace); the store keeps them and
 * this module says which rows to add or change at a time `now` (unix seconds):
 *
 * - an epoch always covers `now` (after a long outage, the one the schedule puts there: the
 *   numbers follow from the schedule, so a client that pinned it can check them);
 * - when the current epoch has an end, its successor exists too, starting at that end: its
 *   window is fixed from then on, so tokens can be requested for it ahead and every client
 *   is told the same thing. A policy change therefore takes effect from the epoch after that;
 * - a token verifies in its epoch's window (from CLOCK_SKEW_S before its start) and, after a
 *   scheduled end, for `graceS` more (mail in flight), so around a boundary both epochs verify;
 * - revocation (`user rotate`, or the user's own POST /v1/rotate) ends every epoch now, without
 *   grace, and starts a fresh one whose number no earlier token carries.
 */

export interface EpochRow {
  readonly keyEpoch: number;
  readonly starts: number;
  /** null: no end is scheduled (rotation "never") */
  readonly ends: number | null;
  readonly graceS: number;
  readonly revoked: boolean;
}

export interface RotationPolicy {
  /** Length of a key epoch, seconds; 0: epochs do not end by time. */
  readonly rotationS: number;
  /** How long a token still verifies after its epoch ended by schedule. */
  readonly graceS: number;
}

export interface EpochChanges {
  /** rows to insert */
  readonly add: readonly EpochRow[];
  /** existing rows (by key epoch) whose end is now scheduled (a policy moved from "never" to a rotation) */
  readonly end: readonly { readonly keyEpoch: number; readonly ends: number }[];
}

const live = (rows: readonly EpochRow[]) => rows.filter((r) => !r.revoked).sort((a, b) => a.keyEpoch - b.keyEpoch);

/** The epoch whose window holds `now` (tokens are issued for it), if any. */
export function currentEpoch(rows: readonly EpochRow[], now: number): EpochRow | undefined {
  return live(rows).find((r) => r.starts <= now && (r.ends === null || now < r.ends));
}

/** The epoch after the current one, once it is scheduled. */
export function nextEpoch(rows: readonly EpochRow[], now: number): EpochRow | undefined {
  const cur = currentEpoch(rows, now);
  return cur && cur.ends !== null ? live(rows).find((r) => r.keyEpoch > cur.keyEpoch && r.starts === cur.ends) : undefined;
}

/**
 * How early a token of an epoch is taken before the epoch starts: clocks differ (a sender's
 * client moves to the next epoch's tokens at the boundary by its own clock; the admin command
 * and the daemon stamp a new user's first epoch each by theirs). Those tokens were issued to
 * this recipient for this epoch anyway.
 */
export const CLOCK_SKEW_S = 300;

/** Does a token of this epoch verify at `now`? (In its window, or within grace after a scheduled end.) */
export function acceptsAt(row: EpochRow | undefined, now: number): boolean {
  return row !== undefined && !row.revoked && row.starts - CLOCK_SKEW_S <= now && (row.ends === null || now < row.ends + row.graceS);
}

/** Has this epoch stopped verifying for good at `now`? (Then its spent tokens can be forgotten.) */
export function isDead(row: EpochRow, now: number): boolean {
  return row.revoked || (row.ends !== null && now >= row.ends + row.graceS);
}

/**
 * What to add so that an epoch covers `now` and its successor is scheduled. `highest` is the
 * highest key epoch number the recipient ever had (revoked ones included), so a new number is
 * never one an earlier token carries.
 */
export function planEpochs(rows: readonly EpochRow[], highest: number, now: number, policy: RotationPolicy): EpochChanges {
  const add: EpochRow[] = [];
  const end: { keyEpoch: number; ends: number }[] = [];
  const P = policy.rotationS;
  const fresh = (keyEpoch: number, starts: number): EpochRow => ({ keyEpoch, starts, ends: P > 0 ? starts + P : null, graceS: policy.graceS, revoked: false });
  const ls = live(rows);
  let last = ls.at(-1);
  let cur = currentEpoch(ls, now);
  if (!cur) {
    if (!last || last.ends === null) {
      // nothing live (a new user, or everything revoked)
      cur = fresh(Math.max(highest, last?.keyEpoch ?? 0) + 1, now);
    } else {
      // the schedule ran past its last row (the gateway was down): the epoch it puts at `now`
      const k = P > 0 ? Math.floor((now - last.ends) / P) : 0;
      cur = fresh(last.keyEpoch + 1 + k, last.ends + k * P);
    }
    add.push(cur);
    last = cur;
  } else if (cur.ends === null && P > 0) {
    // the policy went from "never" to a rotation: the current epoch now ends one period from now
    cur = { ...cur, ends: now + P };
    end.push({ keyEpoch: cur.keyEpoch, ends: cur.ends! });
  }
  if (cur.ends !== null && !ls.some((r) => r.keyEpoch > cur.keyEpoch && r.starts === cur.ends)) {
    add.push(fresh(Math.max(highest, last!.keyEpoch, cur.keyEpoch) + 1, cur.ends));
  }
  return { add, end };
}

/** Revocation now: every live epoch is revoked and a fresh one starts at `now`. */
export function revokeAll(rows: readonly EpochRow[], highest: number, now: number, policy: RotationPolicy): { revoke: readonly number[]; add: EpochRow } {
  const top = Math.max(highest, ...rows.map((r) => r.keyEpoch));
  return {
    revoke: live(rows).map((r) => r.keyEpoch),
    add: { keyEpoch: top + 1, starts: now, ends: policy.rotationS > 0 ? now + policy.rotationS : null, graceS: policy.graceS, revoked: false },
  };
}

/** The default rotation ([tokens] in the gateway config): a key epoch of 90 days, tokens taken 7 days past its end. */
export const DEFAULT_ROTATION: RotationPolicy = Object.freeze({ rotationS: 90 * 86_400, graceS: 7 * 86_400 });
