/**
 * `postmix mixnode run` as operators run it: the real `node bin/postmix.js` process against
 * in-process authorities (real clock), serving metrics, uploading its descriptor, and stopping
 * cleanly on SIGTERM; and the exit codes for bad config (78), key problems (77), port in use (69).
 */
import { spawn } from 'node:child_process';
import { chmodSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { buildProgram } from '../cli/main.ts';
import { DEFAULT_MIXING } from '../proto/mixing/params.ts';
import { DEFAULT_EPOCH } from '../proto/pki/index.ts';
import { DEFAULT_GEOMETRY } from '../proto/sphinx/index.ts';
import { freePort, testNodeKeys, startTestDirectory, type Clock, type TestDirectory } from './support/loopback.ts';

const tmp = mkdtempSync(join(tmpdir(), 'pm-mixp-'));
const realClock: Clock = {
  get t() {
    return Date.now() / 1000;
  },
  set t(_v: number) {
    // the real clock does not move on request
  },
};
let dir: TestDirectory;

beforeAll(async () => {
  dir = await startTestDirectory({ dir: join(tmp, 'dir'), epoch: DEFAULT_EPOCH, mixing: DEFAULT_MIXING, geometry: DEFAULT_GEOMETRY, clock: realClock });
});

afterAll(async () => {
  await dir?.close();
  rmSync(tmp, { recursive: true, force: true });
});

function toml(o: {
  dataDir: string;
  listenPort: number;
  metricsPort: number;
  extra?: string;
  metrics?: string;
  directory?: string;
  layer?: number;
  authorities?: TestDirectory;
}): string {
  const d = o.authorities ?? dir;
  const auths = d.urls
    .map((url, i) => `[[directory.authorities]]\nurl = "${url}"\npublic_key = "${Buffer.from(d.identities[i]!.publicKey).toString('base64')}"\n`)
    .join('\n');
  return `[mixnode]
data_dir = "${o.dataDir}"
listen = "/ip4/127.0.0.1/tcp/${o.listenPort}"
layer_preference = ${o.layer ?? 2}
shutdown_grace_ms = 2000
${o.extra ?? ''}
[metrics]
port = ${o.metricsPort}
${o.metrics ?? ''}

[directory]
threshold = 2
retry_ms = 200
${o.directory ?? ''}

${auths}`;
}

/** `node bin/postmix.js mixnode run` as a child process, its output collected. */
function spawnMixnode(cfg: string) {
  const child = spawn(process.execPath, ['bin/postmix.js', 'mixnode', 'run', '--config', cfg], { cwd: process.cwd(), stdio: ['ignore', 'pipe', 'pipe'] });
  const out = { stdout: '', stderr: '' };
  child.stdout.on('data', (d: Buffer) => (out.stdout += d.toString()));
  child.stderr.on('data', (d: Buffer) => (out.stderr += d.toString()));
  const exited = new Promise<number | null>((r) => child.on('exit', (code) => r(code)));
  return { child, out, exited };
}

async function runCli(args: string[]): Promise<{ code: number; stderr: string }> {
  const prev = process.exitCode;
  process.exitCode = 0;
  let stderr = '';
  const err = process.stderr.write;
  const out = process.stdout.write;
  process.stderr.write = ((s: string) => ((stderr += s), true)) as typeof process.stderr.write;
  process.stdout.write = (() => true) as typeof process.stdout.write;
  try {
    await (await buildProgram()).exitOverride().parseAsync(['node', 'postmix', ...args]);
  } finally {
    process.stderr.write = err;
    process.stdout.write = out;
  }
  const code = Number(process.exitCode ?? 0);
  process.exitCode = prev;
  return { code, stderr };
}

describe('postmix mixnode run', () => {
  it('runs as a process: listens, serves metrics, uploads its descriptor, stops cleanly on SIGTERM', async () => {
    const dataDir = join(tmp, 'proc');
    testNodeKeys(dataDir);
    const metricsPort = await freePort();
    const cfg = join(tmp, 'proc.toml');
    writeFileSync(cfg, toml({ dataDir, listenPort: await freePort(), metricsPort }));
    const { child, out, exited } = spawnMixnode(cfg);
    try {
      const end = Date.now() + 30_000;
      while (!out.stdout.includes('descriptor uploaded')) {
        if (Date.now() > end || child.exitCode !== null) throw new Error(`node did not upload its descriptor\n${out.stdout}\n${out.stderr}`);
        await new Promise((r) => setTimeout(r, 50));
      }
      expect(out.stdout).toContain('mix node listening');
      const m = await (await fetch(`http://127.0.0.1:${metricsPort}/metrics`)).text();
      expect(m).toMatch(/postmix_mixnode_descriptor_uploads_total\{result="accepted"\} [1-9]/);
      expect(m).toMatch(/postmix_mixnode_packets_received_total 0/);
      // prom-client's process metrics under their standard names, and which build runs
      expect(m).toMatch(/^process_resident_memory_bytes \d+/m);
      expect(m).toMatch(/^process_cpu_seconds_total /m);
      expect(m).toMatch(/^nodejs_eventloop_lag_seconds /m);
      expect(m).toMatch(new RegExp(`^postmix_build_info\\{role="mixnode",version="[^"]+",node_version="${process.version}",commit="[^"]+"\\} 1$`, 'm'));
    } finally {
      child.kill('SIGTERM');
    }
    expect(await exited).toBe(0);
    expect(out.stdout).toContain('mix node stopped');
  });

  it('serves /healthz at once and /readyz 503 until it holds a document for the current epoch, then 200; metrics need the bearer token', async () => {
    // short epochs on the real clock, one layer: the node's own descriptor makes a routable document
    const epoch = { origin: Math.floor(Date.now() / 1000) - 60, length: 6, grace: 2 };
    const one = await startTestDirectory({
      dir: join(tmp, 'dir-ready'),
      epoch,
      mixing: DEFAULT_MIXING,
      geometry: DEFAULT_GEOMETRY,
      clock: realClock,
      numLayers: 1,
    });
    const dataDir = join(tmp, 'ready');
    testNodeKeys(dataDir);
    const metricsPort = await freePort();
    const token = 'health-test-token-0123456789';
    writeFileSync(join(tmp, 'metrics.token'), `${token}\n`, { mode: 0o600 });
    const cfg = join(tmp, 'ready.toml');
    writeFileSync(
      cfg,
      toml({
        dataDir,
        listenPort: await freePort(),
        metricsPort,
        layer: 1,
        authorities: one,
        extra: 'tick_ms = 200',
        metrics: `bearer_token_file = "${join(tmp, 'metrics.token')}"`,
        directory: `epoch_length = ${epoch.length}\nepoch_origin = ${epoch.origin}\ngrace = ${epoch.grace}`,
      }),
    );
    const { child, out, exited } = spawnMixnode(cfg);
    const base = `http://127.0.0.1:${metricsPort}`;
    try {
      const end = Date.now() + 30_000;
      const uploaded = () => out.stdout.split('\n').find((l) => l.includes('descriptor uploaded'));
      while (!uploaded()) {
        if (Date.now() > end || child.exitCode !== null) throw new Error(`node did not upload its descriptor\n${out.stdout}\n${out.stderr}`);
        await new Promise((r) => setTimeout(r, 50));
      }
      const E = (JSON.parse(uploaded()!) as { epoch: number }).epoch;
      expect((await fetch(`${base}/healthz`)).status).toBe(200);
      // no authority has signed a document yet: alive, not ready, and /readyz says which check fails
      const notReady = await fetch(`${base}/readyz`);
      expect(notReady.status).toBe(503);
      const body = (await notReady.json()) as { ready: boolean; checks: Record<string, unknown> };
      expect(body.ready).toBe(false);
      expect(body.checks.listening).toBe(true);
      expect(body.checks.document).toMatch(/no verified network document for epoch \d+/);

      expect((await fetch(`${base}/metrics`)).status).toBe(401);
      expect((await fetch(`${base}/metrics`, { headers: { authorization: 'Bearer wrong-token-0123456789' } })).status).toBe(401);
      const ok = await fetch(`${base}/metrics`, { headers: { authorization: `Bearer ${token}` } });
      expect(ok.status).toBe(200);
      expect(await ok.text()).toMatch(/^postmix_build_info\{role="mixnode"/m);

      // the authorities sign the document for E; once epoch E begins the node holds it and is ready
      expect(await one.round(E)).toBeGreaterThanOrEqual(2);
      const readyBy = Date.now() + 30_000;
      let ready: Response;
      for (;;) {
        ready = await fetch(`${base}/readyz`);
        if (ready.status === 200 || Date.now() > readyBy) break;
        await new Promise((r) => setTimeout(r, 200));
      }
      expect(ready.status).toBe(200);
      expect(await ready.json()).toEqual({ ready: true, checks: { listening: true, document: true } });
    } finally {
      child.kill('SIGTERM');
      await exited;
      await one.close();
    }
    expect(child.exitCode).toBe(0);
  });

  it('exits 78 on a bad config, naming each bad field', async () => {
    const bad = join(tmp, 'bad.toml');
    writeFileSync(bad, '[mixnode]\nlisten = "tcp://nope"\n[metrics]\nhost = "0.0.0.0"\n');
    const r = await runCli(['mixnode', 'run', '--config', bad]);
    expect(r.code).toBe(78);
    expect(r.stderr).toContain('mixnode.data_dir');
    expect(r.stderr).toContain('mixnode.listen');
    expect(r.stderr).toContain('directory');
    const missing = await runCli(['mixnode', 'run', '--config', join(tmp, 'nope.toml')]);
    expect(missing.code).toBe(78);
    expect(missing.stderr).toContain('cannot read config file');
    const exposed = join(tmp, 'exposed.toml');
    writeFileSync(exposed, toml({ dataDir: join(tmp, 'x'), listenPort: 0, metricsPort: 0 }).replace('[metrics]', '[metrics]\nhost = "0.0.0.0"'));
    const e = await runCli(['mixnode', 'run', '--config', exposed]);
    expect(e.code).toBe(78);
    expect(e.stderr).toContain('loopback');
    expect(e.stderr).toContain('metrics.allow_remote = true');
  });

  it('exits 77 when the identity key is missing or readable by others', async () => {
    const d = join(tmp, 'nokeys');
    const cfg = join(tmp, 'nokeys.toml');
    writeFileSync(cfg, toml({ dataDir: d, listenPort: 0, metricsPort: 0, extra: 'log_level = "silent"' }));
    const r = await runCli(['mixnode', 'run', '--config', cfg]);
    expect(r.code).toBe(77);
    expect(r.stderr).toContain('postmix keygen');
    testNodeKeys(d);
    chmodSync(join(d, 'keys', 'identity.key'), 0o644);
    const p = await runCli(['mixnode', 'run', '--config', cfg, '--check']);
    expect(p.code).toBe(77);
    expect(p.stderr).toContain('chmod 600');
    chmodSync(join(d, 'keys', 'identity.key'), 0o600);
    expect((await runCli(['mixnode', 'run', '--config', cfg, '--check'])).code).toBe(0);
  });

  it('exits 69 when the listen port is in use', async () => {
    const d = join(tmp, 'busy');
    testNodeKeys(d);
    const blocker: Server = createServer();
    const port = await new Promise<number>((r) => blocker.listen(0, '127.0.0.1', () => r((blocker.address() as { port: number }).port)));
    try {
      const cfg = join(tmp, 'busy.toml');
      writeFileSync(cfg, toml({ dataDir: d, listenPort: port, metricsPort: 0, extra: 'log_level = "silent"' }));
      const r = await runCli(['mixnode', 'run', '--config', cfg]);
      expect(r.code).toBe(69);
      expect(r.stderr).toMatch(/cannot listen/);
    } finally {
      blocker.close();
    }
  });
});
