import { chmodSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { z } from 'zod';
import { describe, expect, it } from 'vitest';
import { directorySection, metricsSection, resolveAuthorities, resolveHopConfig } from './config-schema.ts';
import { ConfigError } from './errors.ts';

const K1 = Buffer.alloc(32, 1).toString('base64');
const K2 = Buffer.alloc(32, 2).toString('base64');
const hopFile = z.object({ directory: directorySection, metrics: metricsSection(9999) });
const parse = (directory: object, metrics: object = {}) => hopFile.parse({ directory, metrics });
const r0 = (f: ReturnType<typeof parse>, base = '/etc/pm') =>
  resolveHopConfig(f, { data_dir: 'd' }, 'x.toml', base, { loopbackNames: true, distinctKeys: true });

describe('shared config sections', () => {
  it('resolves a hop config: defaults, trailing slashes, key directory under the data directory', () => {
    const f = parse({ threshold: 1, authorities: [{ url: 'http://a:8080//', public_key: K1 }] });
    expect(f.metrics).toEqual({ enabled: true, host: '127.0.0.1', port: 9999, allow_remote: false });
    expect(r0(f).metricsBearerToken).toBeUndefined();
    const r = resolveHopConfig(f, { data_dir: 'd' }, 'x.toml', '/etc/pm', { loopbackNames: true, distinctKeys: true });
    expect(r.authorities.map((a) => a.url)).toEqual(['http://a:8080']);
    expect([r.dataDir, r.keysDir]).toEqual(['/etc/pm/d', '/etc/pm/d/keys']);
    expect(r.epoch).toEqual({ origin: 1_767_225_600, length: 3600, grace: 600 });
  });

  // the two options exist only to keep each role's past behaviour; these pin both variants
  it("keeps each role's loopback message and duplicate-key rule", () => {
    const exposed = parse({ threshold: 1, authorities: [{ url: 'http://a', public_key: K1 }] }, { host: '0.0.0.0' });
    expect(() => resolveHopConfig(exposed, { data_dir: 'd' }, 'm.toml', '/', { loopbackNames: true, distinctKeys: true })).toThrow(
      'm.toml: metrics.host must be a loopback address (127.0.0.1, ::1, localhost), got 0.0.0.0',
    );
    expect(() => resolveHopConfig(exposed, { data_dir: 'd' }, 'g.toml', '/', { loopbackNames: false, distinctKeys: false })).toThrow(
      'g.toml: metrics.host must be a loopback address, got 0.0.0.0',
    );
    const twice = [
      { url: 'http://a', public_key: K1 },
      { url: 'http://b', public_key: K1 },
    ];
    expect(() => resolveAuthorities(twice, { source: 's', base: '/', key: 'authorities', distinctKeys: true })).toThrow(
      's: two [[authorities]] entries have the same public key',
    );
    expect(resolveAuthorities(twice, { source: 's', base: '/', key: 'directory.authorities', distinctKeys: false })).toHaveLength(2);
  });

  it('serves metrics off loopback only with metrics.allow_remote, and reads the bearer token inline or from its file', () => {
    const one = { threshold: 1, authorities: [{ url: 'http://a', public_key: K1 }] };
    expect(() => r0(parse(one, { host: '0.0.0.0' }))).toThrow('set metrics.allow_remote = true to serve metrics there');
    expect(() => r0(parse(one, { host: '10.0.0.5' }))).toThrow('metrics.host must be a loopback address');
    // disabled metrics listen nowhere, so any host is harmless
    expect(() => r0(parse(one, { host: '0.0.0.0', enabled: false }))).not.toThrow();
    expect(r0(parse(one, { host: '0.0.0.0', allow_remote: true })).metricsBearerToken).toBeUndefined();
    expect(r0(parse(one, { host: '::', allow_remote: true, bearer_token: 'a-token-of-16-chars' })).metricsBearerToken).toBe('a-token-of-16-chars');
    const d = mkdtempSync(join(tmpdir(), 'pm-mtok-'));
    try {
      writeFileSync(join(d, 'metrics.token'), 'from-a-file-0123456789\n', { mode: 0o600 });
      expect(r0(parse(one, { bearer_token_file: 'metrics.token' }), d).metricsBearerToken).toBe('from-a-file-0123456789');
      // a token others can read is refused, as a key file is
      chmodSync(join(d, 'metrics.token'), 0o640);
      expect(() => r0(parse(one, { bearer_token_file: 'metrics.token' }), d)).toThrow(
        `x.toml: metrics.bearer_token_file: ${join(d, 'metrics.token')} is readable by group or others (mode 640); run: chmod 600`,
      );
      expect(() => r0(parse(one, { bearer_token_file: 'missing.token' }), d)).toThrow(
        `x.toml: metrics.bearer_token_file: cannot read ${join(d, 'missing.token')}: ENOENT`,
      );
      writeFileSync(join(d, 'short.token'), 'short\n', { mode: 0o600 });
      expect(() => r0(parse(one, { bearer_token_file: 'short.token' }), d)).toThrow('must hold one token of at least 16 characters');
    } finally {
      rmSync(d, { recursive: true, force: true });
    }
    // schema errors: both ways of giving the token, a short one, an unknown key
    expect(() => parse(one, { bearer_token: 'a-token-of-16-chars', bearer_token_file: 'f' })).toThrow('give at most one of bearer_token or bearer_token_file');
    expect(() => parse(one, { bearer_token: 'short' })).toThrow('must be at least 16 characters');
    expect(() => parse(one, { allow_remotes: true })).toThrow(/allow_remotes/);
  });

  it('names the section and field in resolve errors', () => {
    const f = parse({ threshold: 3, grace: 7200, authorities: [{ url: 'http://a', public_key: K2 }] });
    expect(() => resolveHopConfig(f, { data_dir: 'd' }, 'c.toml', '/', { loopbackNames: true, distinctKeys: true })).toThrow(
      /^c\.toml: \[directory\] grace must be/,
    );
    const g = parse({ threshold: 3, authorities: [{ url: 'http://a', public_key: K2 }] });
    expect(() => resolveHopConfig(g, { data_dir: 'd' }, 'c.toml', '/', { loopbackNames: true, distinctKeys: true })).toThrow(ConfigError);
    expect(() => resolveHopConfig(g, { data_dir: 'd' }, 'c.toml', '/', { loopbackNames: true, distinctKeys: true })).toThrow(
      'c.toml: directory.threshold 3 exceeds the 1 listed authorities',
    );
    const missing = parse({ threshold: 1, authorities: [{ url: 'http://a', public_key_file: 'nope.pub' }] });
    expect(() => resolveHopConfig(missing, { data_dir: 'd' }, 'c.toml', '/tmp', { loopbackNames: true, distinctKeys: true })).toThrow(
      /^c\.toml: directory\.authorities\[0\]: /,
    );
  });
});
