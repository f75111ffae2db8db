import { z } from 'zod';
import { describe, expect, it } from 'vitest';
import { directorySection, metricsSection, resolveAuthorities, resolveHopConfig } from './config-schema.ts';
import { ConfigError } from './errors.ts';

const K1 = Buffer.alloc(32, 1).toString('base64');
const K2 = Buffer.alloc(32, 2).toString('base64');
const hopFile = z.object({ directory: directorySection, metrics: metricsSection(9999) });
const parse = (directory: object, metrics: object = {}) => hopFile.parse({ directory, metrics });

describe('shared config sections', () => {
  it('resolves a hop config: defaults, trailing slashes, key directory under the data directory', () => {
    const f = parse({ threshold: 1, authorities: [{ url: 'http://a:8080//', public_key: K1 }] });
    expect(f.metrics).toEqual({ enabled: true, host: '127.0.0.1', port: 9999 });
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
