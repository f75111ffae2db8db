import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { z } from 'zod';
import { applyEnvOverrides, loadConfig, isLoopback } from './daemon.ts';
import { ConfigError } from './errors.ts';
import { readiness } from './health.ts';
import { buildInfo, newRegistry, startMetricsServer } from './metrics.ts';

const schema = z.object({
  listen: z.string(),
  metrics: z.object({ port: z.number().int().min(0).max(65535), host: z.string().default('127.0.0.1') }),
  debug: z.boolean().default(false),
});

describe('daemon config', () => {
  const dir = mkdtempSync(join(tmpdir(), 'postmix-cfg-'));

  it('loads TOML, applies env overrides with nesting and coercion', () => {
    const f = join(dir, 'a.toml');
    writeFileSync(f, 'listen = "/ip4/127.0.0.1/tcp/0"\n[metrics]\nport = 9100\n');
    const c = loadConfig(f, schema, 'POSTMIX_T', { POSTMIX_T_METRICS__PORT: '9200', POSTMIX_T_DEBUG: 'true', OTHER: 'x' });
    expect(c).toEqual({ listen: '/ip4/127.0.0.1/tcp/0', metrics: { port: 9200, host: '127.0.0.1' }, debug: true });
    const nested = z.object({ a: z.object({ b: z.number(), c: z.array(z.number()).optional() }) });
    expect(applyEnvOverrides({ a: { b: 1 } }, 'P', nested, { P_A__C: '[1,2]' }).config).toEqual({ a: { b: 1, c: [1, 2] } });
  });

  it('names the file and every bad field', () => {
    const f = join(dir, 'b.toml');
    writeFileSync(f, '[metrics]\nport = "x"\n');
    expect(() => loadConfig(f, schema, 'P', {})).toThrow(ConfigError);
    try {
      loadConfig(f, schema, 'P', {});
    } catch (e) {
      expect((e as Error).message).toContain(f);
      expect((e as Error).message).toContain('listen');
      expect((e as Error).message).toContain('metrics.port');
    }
    writeFileSync(f, 'this is = = not toml');
    expect(() => loadConfig(f, schema, 'P', {})).toThrow(/not valid TOML/);
    expect(() => loadConfig(join(dir, 'missing.toml'), schema, 'P', {})).toThrow(/ENOENT/);
  });

  it('serves Prometheus metrics on loopback, with the standard process metrics and postmix_build_info', async () => {
    const r = newRegistry('postmix_test');
    const s = await startMetricsServer(r, '127.0.0.1', 0);
    try {
      const res = await fetch(`http://127.0.0.1:${s.port}/metrics`);
      expect(res.status).toBe(200);
      const text = await res.text();
      expect(text).toMatch(/^process_cpu_seconds_total /m);
      expect(text).toMatch(/^process_resident_memory_bytes /m);
      expect(text).toMatch(/^nodejs_heap_size_used_bytes /m);
      expect(text).not.toContain('postmix_test_process_');
      expect(text).toContain(
        `postmix_build_info{role="test",version="${buildInfo().version}",node_version="${process.version}",commit="${buildInfo().commit}"} 1`,
      );
      expect((await fetch(`http://127.0.0.1:${s.port}/other`)).status).toBe(404);
    } finally {
      await s.close();
    }
  });

  it('answers /healthz always, /readyz by the probe, and /metrics only with the bearer token', async () => {
    let checks: Record<string, true | string> = { document: 'no document yet' };
    const s = await startMetricsServer(newRegistry('postmix_test', false), '127.0.0.1', 0, {
      bearerToken: 'sixteen-chars-token',
      readiness: () => readiness(checks),
    });
    const u = `http://127.0.0.1:${s.port}`;
    try {
      expect((await fetch(`${u}/healthz`)).status).toBe(200);
      const r1 = await fetch(`${u}/readyz`);
      expect(r1.status).toBe(503);
      expect(await r1.json()).toEqual({ ready: false, checks: { document: 'no document yet' } });
      checks = { document: true };
      expect((await fetch(`${u}/readyz`)).status).toBe(200);
      const denied = await fetch(`${u}/metrics`);
      expect(denied.status).toBe(401);
      expect(denied.headers.get('www-authenticate')).toMatch(/^Bearer /);
      expect((await fetch(`${u}/metrics`, { headers: { authorization: 'Bearer sixteen-chars-tokeX' } })).status).toBe(401);
      expect((await fetch(`${u}/metrics`, { headers: { authorization: 'Basic c2l4dGVlbi1jaGFycy10b2tlbg==' } })).status).toBe(401);
      const ok = await fetch(`${u}/metrics`, { headers: { authorization: 'Bearer sixteen-chars-token' } });
      expect(ok.status).toBe(200);
      expect(await ok.text()).toContain('postmix_build_info');
    } finally {
      await s.close();
    }
  });

  it('knows loopback addresses', () => {
    expect(isLoopback('127.0.0.1')).toBe(true);
    expect(isLoopback('127.3.4.5')).toBe(true);
    expect(isLoopback('::1')).toBe(true);
    expect(isLoopback('0.0.0.0')).toBe(false);
  });
});
