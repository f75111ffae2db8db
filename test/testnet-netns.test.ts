/**
 * `postmix testnet --netns` (CI runs as root): every node in a Linux network namespace of its
 * own, with its own address on a bridge, every node's link dropping 1 % of what it sends (tc
 * netem, or nftables on a kernel without netem) and, where the kernel has netem, delaying it
 * 20 ms. Everything must still arrive byte-identical, exactly once; the kernel's own counters
 * must show that packets were dropped; and the namespaces and the bridge must be gone afterwards,
 * also when the run fails part-way.
 */
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { listPostmixNamespaces } from '../cli/testnet/netns.ts';
import type { TestnetReport } from '../cli/testnet/report.ts';
import { postmixProcess } from './support/processes.ts';

if (process.getuid?.() !== 0) throw new Error('test/testnet-netns.test.ts needs root (CI runs as root): it creates network namespaces');

/** Does this kernel have sch_netem? Tried in a namespace of our own, removed at once. */
function kernelHasNetem(): boolean {
  const ns = `pmxprobe${process.pid}`;
  execFileSync('ip', ['netns', 'add', ns]);
  try {
    execFileSync('tc', ['-n', ns, 'qdisc', 'add', 'dev', 'lo', 'root', 'netem', 'delay', '1ms'], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  } finally {
    execFileSync('ip', ['netns', 'del', ns]);
  }
}

const bridges = (): string[] =>
  execFileSync('ip', ['-o', 'link', 'show', 'type', 'bridge'], { encoding: 'utf8' })
    .split('\n')
    .map((l) => l.split(': ')[1]?.split('@')[0] ?? '')
    .filter((n) => /^pmx[0-9a-f]{4}br$/.test(n));

const SHAPE = ['--layers', '2', '--layer-size', '1', '--epoch-length', '10', '--messages', '1', '--size', '5000'];
const NETEM = kernelHasNetem();

describe('postmix testnet --netns (root)', () => {
  const keep = mkdtempSync(join(tmpdir(), 'postmix-netns-'));
  afterAll(() => rmSync(keep, { recursive: true, force: true }));

  it('delivers every message byte-identical, exactly once, with every node on its own host and lossy links, and removes the namespaces', async () => {
    const before = { ns: listPostmixNamespaces(), br: bridges() };
    const links = ['--link-loss', '1', ...(NETEM ? ['--link-delay', '20'] : [])];
    const r = await postmixProcess(['testnet', '--netns', ...links, ...SHAPE, '--json', '--keep', keep], { timeoutMs: 400_000 });
    if (r.code !== 0) console.error(r.stderr.slice(-6000));
    expect(r.code).toBe(0);
    const report = JSON.parse(r.stdout.trim().split('\n').at(-1)!) as TestnetReport;
    expect(report.ok).toBe(true);

    // one host per node: 3 authorities, 2 mixes, 2 gateways, 2 clients, each its own address
    const net = report.network;
    expect(net.mode).toBe('netns');
    expect(net.hosts).toBe(9);
    const addrs = Object.values(net.addresses!);
    expect(new Set(addrs).size).toBe(9);
    const prefix = net.subnet!.replace(/\.0\/24$/, '.');
    for (const a of addrs) expect(a.startsWith(prefix) && !a.startsWith('127.')).toBe(true);
    // and the nodes listened there (nodes.json: the libp2p addresses the run gave them)
    const nodes = JSON.parse(readFileSync(join(keep, 'nodes.json'), 'utf8')) as { name: string; listen: string }[];
    for (const n of nodes) expect(n.listen).toBe(`/ip4/${net.addresses![n.name]}/tcp/${n.listen.split('/').at(-1)}`);

    // the links really dropped packets (the kernel's counters), and delayed them where netem exists
    expect(net.link_loss_pct).toBe(1);
    expect(net.loss_by).toBe(NETEM ? 'netem' : 'nftables');
    expect(net.link_packets!.sent).toBeGreaterThan(1000);
    expect(net.link_packets!.dropped).toBeGreaterThan(0);
    expect(net.link_delay_ms).toBe(NETEM ? 20 : 0);

    // every message where it should be, once, intact: the report, and the Maildir files themselves
    const sent = report.messages.filter((m) => m.expected !== 'refused');
    expect(sent.map((m) => m.path).sort()).toEqual(['overlay', 'overlay', 'smtp-fallback', 'smtp-fallback']);
    for (const m of sent) expect([m.ok, m.intact, m.copies]).toEqual([true, true, 1]);
    for (const m of sent) {
      const [user, domain] = m.to.split('@') as [string, string];
      const dir = join(keep, 'mail', domain, user, 'new');
      const want = readFileSync(join(keep, 'sent', `${m.id}.eml`));
      expect(readdirSync(dir).filter((f) => readFileSync(join(dir, f)).equals(want))).toHaveLength(1);
    }

    // nothing left behind
    expect(listPostmixNamespaces()).toEqual(before.ns);
    expect(bridges()).toEqual(before.br);
  }, 420_000);

  it('removes its namespaces and bridge when the run fails part-way (a node that cannot start)', async () => {
    const before = { ns: listPostmixNamespaces(), br: bridges() };
    // the authorities refuse the log level in their configs (exit 78) once their namespaces exist
    const r = await postmixProcess(['testnet', '--netns', '--link-loss', '1', ...SHAPE, '--log-level', 'loud'], { timeoutMs: 120_000 });
    expect(r.code).not.toBe(0);
    expect(r.stderr + r.stdout).toMatch(/auth[123] exit 78 before it was ready/);
    expect(listPostmixNamespaces()).toEqual(before.ns);
    expect(bridges()).toEqual(before.br);
  }, 150_000);

  // where the kernel has netem, the first test runs with --link-delay 20 and checks it in the report
  if (!NETEM)
    it('refuses --link-delay on this kernel without netem, naming what is missing, and leaves nothing behind', async () => {
      const before = { ns: listPostmixNamespaces(), br: bridges() };
      const r = await postmixProcess(['testnet', '--netns', '--link-delay', '20', ...SHAPE], { timeoutMs: 120_000 });
      expect(r.code).not.toBe(0);
      expect(r.stderr).toMatch(/--link-delay needs tc netem, and this kernel has none \(CONFIG_NET_SCH_NETEM/);
      expect(listPostmixNamespaces()).toEqual(before.ns);
      expect(bridges()).toEqual(before.br);
    }, 150_000);
});
