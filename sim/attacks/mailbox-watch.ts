/**
 * Attack 2: the sender's own home gateway watching its client's mailbox. Every item that
 * arrives there looks alike (an ACK through a SURB, or the client's own loop), and the downlink
 * to the client is constant-rate, so the gateway learns only *when* items arrive. ACKs come
 * back only for real fragments, loops at λ_L: the gateway can still count. Two measures:
 *  - when: windows of `window` seconds are labelled by whether any ACK arrived in them (the
 *    client sent real mail about a round trip earlier); the gateway scores each window by its
 *    item count; the area under the ROC curve of that score (0.5 = no better than guessing);
 *  - how much: its estimate of the ACKs (items − λ_L · time, it knows λ_L) against the truth.
 */
export interface MailboxWatchReport {
  window_s: number;
  windows: number;
  windows_with_acks: number;
  auc: number;
  baseline_auc: 0.5;
  items: number;
  acks: number;
  estimated_acks: number;
  /** |estimate − truth| / truth */
  relative_error: number | null;
}

export function watchMailbox(
  items: ReadonlyArray<{ t: number; ack: boolean }>,
  start: number,
  end: number,
  window: number,
  loopRate: number,
): MailboxWatchReport {
  const nw = Math.max(0, Math.floor((end - start) / window));
  const count = new Int32Array(nw);
  const acks = new Int32Array(nw);
  let nAck = 0;
  for (const it of items) {
    const w = Math.floor((it.t - start) / window);
    if (w < 0 || w >= nw) continue;
    count[w]!++;
    if (it.ack) {
      acks[w]!++;
      nAck++;
    }
  }
  const pos: number[] = [];
  const neg: number[] = [];
  for (let w = 0; w < nw; w++) (acks[w]! > 0 ? pos : neg).push(count[w]!);
  const total = items.filter((it) => it.t >= start && it.t < start + nw * window).length;
  const est = total - loopRate * nw * window;
  return {
    window_s: window,
    windows: nw,
    windows_with_acks: pos.length,
    auc: auc(pos, neg),
    baseline_auc: 0.5,
    items: total,
    acks: nAck,
    estimated_acks: est,
    relative_error: nAck > 0 ? Math.abs(est - nAck) / nAck : null,
  };
}

/** Mann–Whitney AUC: P(a positive scores above a negative) + ½ P(tie). NaN without both classes. */
export function auc(pos: readonly number[], neg: readonly number[]): number {
  if (pos.length === 0 || neg.length === 0) return NaN;
  const all = [...pos.map((v) => [v, 1] as const), ...neg.map((v) => [v, 0] as const)].sort((a, b) => a[0] - b[0]);
  let rankSum = 0;
  for (let i = 0; i < all.length;) {
    let j = i;
    while (j < all.length && all[j]![0] === all[i]![0]) j++;
    const r = (i + j + 1) / 2; // average rank (1-based) of the tie group
    for (let k = i; k < j; k++) if (all[k]![1] === 1) rankSum += r;
    i = j;
  }
  return (rankSum - (pos.length * (pos.length + 1)) / 2) / (pos.length * neg.length);
}
