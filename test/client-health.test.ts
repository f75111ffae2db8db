/**
 * The client daemon's /healthz and /readyz (runtime/health.ts) on its metrics listener: ready
 * means the SMTP submission listener is up and, when an overlay is configured, a verified
 * network document routes the current epoch. Also metrics.allow_remote for the client's config.
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pino } from 'pino';
import { afterAll, describe, expect, it } from 'vitest';
import { ClientConfigSchema } from '../client/config.ts';
import { checkListen, runClient } from '../client/daemon.ts';
import { loadConfig } from '../runtime/config-file.ts';
import { clientConfigToml, signedDocument } from './support/signed-document.ts';

const tmp = mkdtempSync(join(tmpdir(), 'pm-chealth-'));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));
const log = pino({ level: 'silent' });

function config(name: string, extra: string, withDocument: boolean) {
  const doc = signedDocument({ domain: 'overlay.test', issuerKey: new Uint8Array(32).fill(7), url: 'http://127.0.0.1:1/keys' });
  const documentPath = join(tmp, `${name}-document.bin`);
  let text = clientConfigToml({ dataDir: join(tmp, name), documentPath, doc, address: 'bob@overlay.test' });
  // without the cached document (and no authority URLs to fetch one from) the overlay has none
  if (!withDocument) rmSync(documentPath);
  text += `[metrics]\nenabled = true\nport = 0\n${extra}`;
  const file = join(tmp, `${name}.toml`);
  writeFileSync(file, text);
  return loadConfig(file, ClientConfigSchema, 'POSTMIX_CLIENT_', {});
}

async function get(port: number | null, path: string): Promise<{ status: number; body: unknown }> {
  const res = await fetch(`http://127.0.0.1:${port}${path}`);
  return { status: res.status, body: res.headers.get('content-type')?.includes('json') ? await res.json() : await res.text() };
}

describe('client daemon health', () => {
  it('is alive but not ready without a network document, ready with a verified one', async () => {
    const none = await runClient(config('none', '', false), { log });
    try {
      expect((await get(none.metricsPort, '/healthz')).status).toBe(200);
      expect(await get(none.metricsPort, '/readyz')).toEqual({
        status: 503,
        body: { ready: false, checks: { smtp: true, document: 'no verified network document yet' } },
      });
    } finally {
      await none.stop();
    }
    const held = await runClient(config('held', '', true), { log });
    try {
      expect(await get(held.metricsPort, '/readyz')).toEqual({ status: 200, body: { ready: true, checks: { smtp: true, document: true } } });
      const m = await get(held.metricsPort, '/metrics');
      expect(m.body).toMatch(/^postmix_build_info\{role="client"/m);
      expect(m.body).toMatch(/^process_resident_memory_bytes /m);
    } finally {
      await held.stop();
    }
  });

  it('keeps metrics on loopback unless metrics.allow_remote, and needs the bearer token when one is set', async () => {
    expect(() => checkListen(config('remote', 'host = "0.0.0.0"\n', false))).toThrow('set metrics.allow_remote = true');
    expect(checkListen(config('allowed', 'host = "0.0.0.0"\nallow_remote = true\n', false)).metricsBearerToken).toBeUndefined();
    const c = await runClient(config('token', 'bearer_token = "client-token-0123456789"\n', true), { log });
    try {
      expect((await get(c.metricsPort, '/metrics')).status).toBe(401);
      const ok = await fetch(`http://127.0.0.1:${c.metricsPort}/metrics`, { headers: { authorization: 'Bearer client-token-0123456789' } });
      expect(ok.status).toBe(200);
      // health needs no token: a probe must not hold the metrics secret
      expect((await get(c.metricsPort, '/readyz')).status).toBe(200);
    } finally {
      await c.stop();
    }
  });
});
