import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Command } from 'commander';
import {
  DEFAULT_GEOMETRY,
  createPacket,
  createSurb,
  fastestSuite,
  nobleSuite,
  nodeSuite,
  openSurbReply,
  packetFromSurb,
  packetSizes,
  prepareHopKey,
  processPacket,
  validateGeometry,
  type Geometry,
  type RouteHop,
  type SphinxSuite,
} from '../proto/sphinx/index.ts';
import { allVectors } from '../proto/sphinx/vectors.ts';

const hex = (b: Uint8Array, n = 8) => Buffer.from(b.subarray(0, n)).toString('hex') + (b.length > n ? '…' : '');

function pickSuite(name: string): SphinxSuite {
  if (name === 'node') return nodeSuite;
  if (name === 'noble') return nobleSuite;
  if (name === 'sodium') {
    if (fastestSuite.name !== 'sodium') throw new Error('--suite sodium: sodium-native does not load on this machine');
    return fastestSuite;
  }
  throw new Error(`--suite must be "sodium", "node" or "noble", got "${name}"`);
}

function intOpt(v: string, name: string): number {
  const n = Number(v);
  if (!Number.isInteger(n)) throw new Error(`${name} must be an integer, got "${v}"`);
  return n;
}

/** Builds a packet for a route of `hops` fresh nodes and walks it, printing what each hop learns. */
export function sphinxDemo(opts: { hops: number; payload: number; suite: SphinxSuite; out: (s: string) => void }): boolean {
  const geom: Geometry = validateGeometry({ ...DEFAULT_GEOMETRY, payloadSize: opts.payload, maxHops: Math.max(DEFAULT_GEOMETRY.maxHops, opts.hops) });
  const { suite, out } = opts;
  const sizes = packetSizes(geom);
  const nodes = Array.from({ length: opts.hops }, (_, i) => {
    const sk = suite.random(32);
    const name = i === opts.hops - 1 ? 'gateway' : `mix ${i + 1}`;
    return { name, id: suite.random(32), sk, pk: suite.publicKey(sk) };
  });
  const route: RouteHop[] = nodes.map((n, i) => ({ nodeId: n.id, publicKey: n.pk, delayMs: 20 + 10 * i }));
  const message = new TextEncoder().encode('Subject: hello\r\n\r\nAn already-encrypted message body.\r\n');
  const queueId = new Uint8Array(32);
  queueId.set(new TextEncoder().encode('mail'));
  out(`postmix sphinx demo (suite: ${suite.name})`);
  out(`geometry: maxHops=${geom.maxHops} perHop=${geom.perHopSize} B payload=${geom.payloadSize} B`);
  out(`every packet on the wire: ${sizes.packet} bytes (header ${sizes.header} + payload ${sizes.payload})`);
  out(`route: ${nodes.map((n) => `${n.name} [${hex(n.id, 4)}]`).join(' -> ')}`);
  let { packet } = createPacket(suite, geom, { route, terminal: { kind: 'deliver', queueId }, payload: message });
  let ok = true;
  for (let i = 0; i < nodes.length; i++) {
    const n = nodes[i]!;
    const r = processPacket(geom, prepareHopKey(suite, n.sk), packet);
    if (!r.ok) {
      out(`  hop ${i + 1} ${n.name}: DROPPED (${r.reason})`);
      ok = false;
      break;
    }
    const learns = `replay tag ${hex(r.replayTag)}, hold ${r.delayMs} ms`;
    if (r.kind === 'forward') {
      const nextName = nodes.find((m) => Buffer.from(m.id).equals(r.next))?.name ?? 'unknown';
      out(`  hop ${i + 1} ${n.name}: learns only the next hop ${nextName} [${hex(r.next, 4)}]; ${learns}; out: ${r.packet.length} bytes`);
      packet = r.packet;
    } else if (r.kind === 'deliver') {
      const text = new TextDecoder().decode(r.payload.subarray(0, message.length));
      const intact = Buffer.from(r.payload.subarray(0, message.length)).equals(message);
      out(`  hop ${i + 1} ${n.name}: final hop, deliver to queue "mail"; ${learns}; payload intact: ${intact}`);
      out(`    ${JSON.stringify(text)}`);
      ok &&= intact;
    } else {
      out(`  hop ${i + 1} ${n.name}: drop cover`);
    }
  }
  // the reply direction: the gateway answers with a SURB the sender made
  const replyRoute = route.slice(0, Math.min(4, route.length));
  const surbId = suite.random(16);
  const { surb, keys } = createSurb(suite, geom, { route: replyRoute, queueId, surbId });
  const reply = packetFromSurb(suite, geom, surb, new TextEncoder().encode('ACK fragment 0'));
  if (!reply.ok) return false;
  let p = reply.packet;
  for (let i = 0; i < replyRoute.length; i++) {
    const r = processPacket(geom, prepareHopKey(suite, nodes[i]!.sk), p);
    if (!r.ok) {
      out(`  SURB reply dropped at hop ${i + 1}: ${r.reason}`);
      return false;
    }
    if (r.kind === 'forward') p = r.packet;
    else if (r.kind === 'deliver') {
      const opened = openSurbReply(suite, geom, keys, r.payload);
      const text = opened.ok ? new TextDecoder().decode(opened.payload.subarray(0, 14)) : `(${opened.reason})`;
      out(`SURB reply over ${replyRoute.length} hops: the last hop sees only ciphertext; the creator opens ${JSON.stringify(text)}`);
      ok &&= opened.ok;
    }
  }
  out(ok ? 'result: OK' : 'result: FAILED');
  return ok;
}

export function registerSphinx(program: Command): void {
  const cmd = program.command('sphinx').description('Sphinx packet tools (docs/spec/sphinx.md)');
  cmd
    .command('demo')
    .description('build a Sphinx packet for a route and walk it hop by hop, printing what each hop learns')
    .option('--hops <n>', 'route length (1..16)', '5')
    .option('--payload <bytes>', 'payload size of the geometry (64..32768)', String(DEFAULT_GEOMETRY.payloadSize))
    .option('--suite <name>', 'crypto backend: sodium (libsodium, what the roles run), node (node:crypto) or noble (pure JS)', 'node')
    .action((o: { hops: string; payload: string; suite: string }) => {
      const ok = sphinxDemo({
        hops: intOpt(o.hops, '--hops'),
        payload: intOpt(o.payload, '--payload'),
        suite: pickSuite(o.suite),
        out: (s) => process.stdout.write(s + '\n'),
      });
      if (!ok) process.exitCode = 1;
    });
  cmd
    .command('vectors')
    .description('write the Sphinx test vectors (JSON) computed by a suite')
    .option('--out <dir>', 'directory to write sphinx.json into', 'docs/spec/vectors')
    .option('--suite <name>', 'crypto backend: sodium, node or noble (all write the same bytes)', 'node')
    .action((o: { out: string; suite: string }) => {
      mkdirSync(o.out, { recursive: true });
      const file = join(o.out, 'sphinx.json');
      writeFileSync(file, JSON.stringify(allVectors(pickSuite(o.suite)), null, 1) + '\n');
      process.stdout.write(`wrote ${file}\n`);
    });
}
