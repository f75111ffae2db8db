/**
 * Where the testnet's nodes live: all on 127.0.0.1 (the default), or with --netns each in a
 * Linux network namespace of its own, with its own address, as if on separate hosts. The
 * namespaces hang off one bridge by veth pairs; the testnet itself (its MXs, its admin commands,
 * the submission to the clients) stays in the root namespace on the bridge's address. Each
 * namespace's interface can delay and drop what it sends (tc netem; the drop by nftables where
 * the kernel has no netem), so every hop between two nodes crosses a link with latency and
 * loss. Namespaces are made lazily, the first time a node's address is asked for, and removed
 * by destroy() — also on a crash of the testnet process, by its exit hook.
 */
import { execFileSync } from 'node:child_process';
import { randomBytes, randomInt } from 'node:crypto';

export interface NetworkReport {
  readonly mode: 'loopback' | 'netns';
  /** hosts the nodes run on: 1 on loopback, one per node with --netns */
  readonly hosts: number;
  readonly subnet?: string;
  /** every node's address (netns) */
  readonly addresses?: Readonly<Record<string, string>>;
  readonly link_delay_ms?: number;
  readonly link_loss_pct?: number;
  /** what applies the loss: tc netem, or nftables (numgen random) on a kernel without netem */
  readonly loss_by?: 'netem' | 'nftables' | null;
  /** read from the kernel as the namespaces go: packets the nodes' links sent, and those the loss dropped */
  readonly link_packets?: { readonly sent: number; readonly dropped: number } | null;
}

export interface Addressing {
  readonly mode: 'loopback' | 'netns';
  /** the address node `name` listens on and is reached at */
  host(name: string): string;
  /** the testnet's own address (its MXs listen here) */
  readonly local: string;
  /** the command prefix that runs a process of node `name` where it lives ([] on loopback) */
  wrap(name: string): readonly string[];
  report(): NetworkReport;
  destroy(): void;
}

export const LOOPBACK: Addressing = {
  mode: 'loopback',
  host: () => '127.0.0.1',
  local: '127.0.0.1',
  wrap: () => [],
  report: () => ({ mode: 'loopback', hosts: 1 }),
  destroy: () => undefined,
};

export interface NetnsOptions {
  /** added to every packet a node sends, ms (tc netem delay) */
  readonly delayMs: number;
  /** share of the packets a node sends that are dropped, percent */
  readonly lossPct: number;
}

export class NetnsError extends Error {}

function sh(cmd: string, args: readonly string[], input?: string): string {
  try {
    return execFileSync(cmd, [...args], { input, stdio: ['pipe', 'pipe', 'pipe'], encoding: 'utf8', timeout: 20_000 });
  } catch (e) {
    const err = e as { stderr?: string; message: string };
    throw new NetnsError(`${cmd} ${args.join(' ')}: ${(err.stderr || err.message).trim()}`);
  }
}

/** Why --netns cannot run here, or null. */
export function netnsUnavailable(): string | null {
  if (process.platform !== 'linux') return 'network namespaces are Linux only';
  if (process.getuid?.() !== 0) return 'needs root (it creates network namespaces, veth pairs and a bridge)';
  try {
    execFileSync('ip', ['-V'], { stdio: 'ignore' });
  } catch {
    return 'needs `ip` from iproute2 (apt-get install iproute2)';
  }
  return null;
}

/** A /24 in 10.0.0.0/8 that no interface of this machine uses yet. */
function freeSubnet(): string {
  const used = sh('ip', ['-4', '-o', 'addr', 'show']);
  for (let i = 0; i < 64; i++) {
    const net = `10.${randomInt(100, 200)}.${randomInt(0, 256)}`;
    if (!used.includes(` ${net}.`)) return net;
  }
  throw new NetnsError('no free 10.x.y.0/24 subnet found');
}

let netemKnown: boolean | undefined;

/**
 * Creates the bridge; each node's namespace comes when its address is first asked for.
 * Throws NetnsError with the reason when it cannot (not root, no iproute2, a delay asked of a
 * kernel without netem).
 */
export function createNetns(o: NetnsOptions): Addressing {
  const why = netnsUnavailable();
  if (why) throw new NetnsError(`--netns ${why}`);
  const id = randomBytes(2).toString('hex');
  const net = freeSubnet();
  const bridge = `pmx${id}br`;
  const namespaces = new Map<string, { ns: string; ip: string }>();
  let lossBy: 'netem' | 'nftables' | null = null;
  let destroyed = false;
  let packets: { sent: number; dropped: number } | null = null;

  /** What one namespace's link sent and dropped (its eth0 TX counter; netem's or the nftables rule's drop counter). */
  const countersOf = (ns: string): { sent: number; dropped: number } => {
    const num = (text: string, re: RegExp) => Number(re.exec(text)?.[1] ?? 0);
    const link = sh('ip', ['-n', ns, '-s', '-j', 'link', 'show', 'eth0']);
    const sent = (JSON.parse(link) as { stats64?: { tx?: { packets?: number } } }[])[0]?.stats64?.tx?.packets ?? 0;
    let dropped = 0;
    if (lossBy === 'netem') dropped = num(sh('tc', ['-s', '-n', ns, 'qdisc', 'show', 'dev', 'eth0']), /dropped (\d+)/);
    else if (lossBy === 'nftables') dropped = num(sh('ip', ['netns', 'exec', ns, 'nft', 'list', 'table', 'inet', 'postmix_link']), /counter packets (\d+)/);
    // a packet the output hook dropped never reached eth0's TX counter
    return { sent: lossBy === 'nftables' ? sent + dropped : sent, dropped };
  };

  const destroy = (): void => {
    if (destroyed) return;
    destroyed = true;
    process.removeListener('exit', destroy);
    try {
      const all = [...namespaces.values()].map(({ ns }) => countersOf(ns));
      packets = { sent: all.reduce((a, c) => a + c.sent, 0), dropped: all.reduce((a, c) => a + c.dropped, 0) };
    } catch {
      packets = null; // counters are a report, not a reason to leave namespaces behind
    }
    // deleting a namespace takes its end of the veth pair, and the pair with it
    for (const { ns } of namespaces.values()) {
      try {
        execFileSync('ip', ['netns', 'del', ns], { stdio: 'ignore' });
      } catch {
        /* already gone */
      }
    }
    try {
      execFileSync('ip', ['link', 'del', bridge], { stdio: 'ignore' });
    } catch {
      /* already gone */
    }
  };
  // a testnet that dies on an exception still removes what it made (SIGKILL cannot be helped)
  process.on('exit', destroy);
  try {
    sh('ip', ['link', 'add', bridge, 'type', 'bridge']);
    sh('ip', ['addr', 'add', `${net}.1/24`, 'dev', bridge]);
    sh('ip', ['link', 'set', bridge, 'up']);
  } catch (e) {
    destroy();
    throw e;
  }

  const impair = (ns: string): void => {
    if (o.delayMs <= 0 && o.lossPct <= 0) return;
    if (netemKnown !== false) {
      try {
        const args = ['-n', ns, 'qdisc', 'add', 'dev', 'eth0', 'root', 'netem', 'delay', `${o.delayMs}ms`];
        if (o.lossPct > 0) args.push('loss', `${o.lossPct}%`);
        sh('tc', args);
        netemKnown = true;
        lossBy = o.lossPct > 0 ? 'netem' : null;
        return;
      } catch (e) {
        if (!/unknown|No such file/i.test((e as Error).message)) throw e;
        netemKnown = false;
      }
    }
    if (o.delayMs > 0)
      throw new NetnsError(
        '--link-delay needs tc netem, and this kernel has none (CONFIG_NET_SCH_NETEM; on Debian the sch_netem module of linux-image): ' +
          'run without --link-delay (--link-loss alone works through nftables)',
      );
    // no netem: drop in the namespace's output hook instead (the kernel's own random numbers)
    const perTenThousand = Math.round(o.lossPct * 100);
    sh(
      'ip',
      ['netns', 'exec', ns, 'nft', '-f', '-'],
      `table inet postmix_link {\n  chain out {\n    type filter hook output priority 0; policy accept;\n    ip daddr ${net}.0/24 numgen random mod 10000 < ${perTenThousand} counter drop\n  }\n}\n`,
    );
    lossBy = 'nftables';
  };

  const ensure = (name: string): { ns: string; ip: string } => {
    const have = namespaces.get(name);
    if (have) return have;
    if (destroyed) throw new NetnsError(`namespaces already removed (asked for ${name})`);
    const i = namespaces.size;
    if (i + 2 > 254) throw new NetnsError('more than 252 nodes: the /24 is full');
    const ns = `pmx-${id}-${name}`;
    const veth = `pmx${id}h${i}`;
    const ip = `${net}.${i + 2}`;
    const entry = { ns, ip };
    sh('ip', ['netns', 'add', ns]);
    namespaces.set(name, entry);
    sh('ip', ['link', 'add', veth, 'type', 'veth', 'peer', 'name', 'eth0', 'netns', ns]);
    sh('ip', ['link', 'set', veth, 'master', bridge, 'up']);
    sh('ip', ['-n', ns, 'addr', 'add', `${ip}/24`, 'dev', 'eth0']);
    sh('ip', ['-n', ns, 'link', 'set', 'eth0', 'up']);
    sh('ip', ['-n', ns, 'link', 'set', 'lo', 'up']);
    impair(ns);
    return entry;
  };

  return {
    mode: 'netns',
    host: (name) => ensure(name).ip,
    local: `${net}.1`,
    wrap: (name) => ['ip', 'netns', 'exec', ensure(name).ns],
    report: () => ({
      mode: 'netns',
      hosts: namespaces.size,
      subnet: `${net}.0/24`,
      addresses: Object.fromEntries([...namespaces].map(([n, e]) => [n, e.ip])),
      link_delay_ms: o.delayMs,
      link_loss_pct: o.lossPct,
      loss_by: lossBy,
      link_packets: packets,
    }),
    destroy,
  };
}

/** The namespaces a run of this process made and has not removed (for tests and leak checks): `ip netns list` names starting pmx-. */
export function listPostmixNamespaces(): string[] {
  try {
    return sh('ip', ['netns', 'list'])
      .split('\n')
      .map((l) => l.split(' ')[0]!)
      .filter((n) => n.startsWith('pmx-'));
  } catch {
    return [];
  }
}
