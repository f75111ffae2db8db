/**
 * The simulator against the real network: a short `postmix testnet --capture DIR` (every node a
 * real process on loopback, every frame on every link stamped), `postmix sim analyze DIR`'s
 * metrics from those link timings, and the simulator run with the same network's parameters.
 *
 * The run: 2 clients, 2 layers of 2 mixes, 2 gateways, λ_P = 40/s, λ_L = λ_D = 2/s, no mix or
 * gateway loops (a node's own loops enter its pool unseen, so the link timings cannot count
 * them), mean per-hop delay 100 ms, 3 overlay messages of 200 kB per client, which the
 * simulator runs as postmix messages (fragments and their ACKs) over the captured span. Tolerances (and what one run on the shared 2-core
 * development machine measured):
 *  - the clients' packet rate: within 15 % of λ_P + λ_L + λ_D (44.3 against 44/s);
 *  - per-hop delay (Little's law per mix): at least 0.9/μ: real nodes hold a packet for its
 *    header's delay plus their event loop's lag, which depends on the host's load (0.13–0.27 s
 *    against 0.100 s in runs here), so the simulator is run with the measured delay;
 *  - with that measured delay, the simulator's per-packet entropy within 0.8 bit of the
 *    capture's (6.04 against 6.27 bits on a quiet host; 5.97 against 6.51 and 0.62 apart on a
 *    loaded one, where stalled event loops release packets in bursts that mix more than the
 *    model's independent Exp(μ) delays: the model errs on the side of less anonymity)
 *    and its sender entropy within 0.35 bit (0.98 against 0.97 of 1 bit; 0.29 apart in another run: with two clients the posterior follows their
 *    actual send bursts, which a loaded host makes less even than Poisson).
 */
import { execFile } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { analyzeCapture, scenarioOfCapture } from '../sim/analyze.ts';
import { runSimulation } from '../sim/model.ts';
import type { Scenario } from '../sim/scenario.ts';

const bin = new URL('../bin/postmix.js', import.meta.url).pathname;
const RUN_BUDGET_MS = 420_000;

describe('the simulator agrees with a real network (link capture)', () => {
  const dir = mkdtempSync(join(tmpdir(), 'postmix-agree-'));
  const capture = join(dir, 'capture');
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it(
    'rates, per-hop delay, and per-packet and sender entropy from link timings match the model',
    async () => {
      const args = [
        'testnet',
        '--json',
        '--capture',
        capture,
        '--layers',
        '2',
        '--layer-size',
        '2',
        '--lambda-p',
        '40',
        '--lambda-l',
        '2',
        '--lambda-d',
        '2',
        '--lambda-m',
        '0',
        '--lambda-g',
        '0',
        '--mean-delay',
        '100ms',
        '--messages',
        '3',
        '--size',
        // large messages keep both clients sending real packets for ~12 s: with small ones a
        // quiet host delivers everything in about a second, too short a window to measure
        '200000',
      ];
      const code = await new Promise<number>((resolve) => {
        execFile(process.execPath, [bin, ...args], { timeout: RUN_BUDGET_MS - 20_000, maxBuffer: 64 * 1024 * 1024 }, (err, _out, stderr) => {
          if (err) console.error(stderr.slice(-4000));
          resolve(err ? 1 : 0);
        });
      });
      expect(code).toBe(0);
      const a = analyzeCapture(capture);
      expect(a.nodes).toEqual({ clients: 2, mixes: 4, gateways: 2, layers: 2 });
      expect(a.frames.matched).toBeGreaterThan(2000);
      // frames in flight when a connection drops or the run stops have only one end
      expect(a.frames.unmatched).toBeLessThan(0.05 * a.frames.matched);
      expect(Math.abs(a.rates.client_pps - 44) / 44).toBeLessThan(0.15);
      expect(a.per_hop_delay_s.expected).toBe(0.1);
      // the mixes hold each packet at least its header's delay (what they add on top depends on
      // the host's load: 0.13–0.27 s in runs here, so it is reported, not asserted)
      expect(a.per_hop_delay_s.mean).toBeGreaterThan(0.09);
      expect(a.entropy.n).toBeGreaterThan(100);
      expect(a.latency.messages).toBe(6);
      const sim = runSimulation(scenarioOfCapture(a, 'measured') as Partial<Scenario>);
      console.log(
        JSON.stringify({
          per_hop_delay_s: a.per_hop_delay_s,
          client_pps: a.rates.client_pps,
          entropy: [a.entropy.mean, sim.entropy.mean],
          sender_entropy: [a.sender_entropy.mean, sim.sender_entropy.mean],
        }),
      );
      expect(Math.abs(sim.entropy.mean - a.entropy.mean)).toBeLessThan(0.8);
      // two clients: the posterior follows their actual send bursts, which a loaded host's
      // stalled event loops make less even than Poisson (0.05 and 0.29 bit apart in runs here)
      expect(Math.abs(sim.sender_entropy.mean - a.sender_entropy.mean)).toBeLessThan(0.35);
    },
    RUN_BUDGET_MS,
  );
});
