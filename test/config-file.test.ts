import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { homedir, tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { ClientConfigSchema } from '../client/config.ts';
import { MixnodeConfigSchema } from '../mixnode/config.ts';
import { applyEnvOverrides, expandHome, loadConfig, nearest } from '../runtime/config-file.ts';
import { multiaddrString } from '../runtime/config-schema.ts';
import { ConfigError } from '../runtime/errors.ts';

const dir = mkdtempSync(join(tmpdir(), 'pmx-cfgfile-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

function file(text: string): string {
  const f = join(dir, `c${Math.random().toString(36).slice(2)}.toml`);
  writeFileSync(f, text);
  return f;
}

function message(f: () => unknown): string {
  try {
    f();
  } catch (e) {
    expect(e).toBeInstanceOf(ConfigError);
    return (e as Error).message;
  }
  throw new Error('expected a ConfigError');
}

const client = (text: string, env: NodeJS.ProcessEnv = {}) => loadConfig(file(`data_dir = "/tmp/x"\n${text}`), ClientConfigSchema, 'POSTMIX_CLIENT', env);

describe('a config that cannot silently fail', () => {
  it('refuses every key the client does not know, naming it and the nearest known one', () => {
    // a misspelt overlay_only would otherwise leave the fallback on: the anonymity the user asked for, gone
    const m = message(() => client('[routing]\noverlay_olny = true\n[smtpp]\nport = 1\n'));
    expect(m).toContain('routing.overlay_olny: unknown key (did you mean routing.overlay_only?)');
    expect(m).toContain('smtpp: unknown key (did you mean smtp?)');
    expect(message(() => client('[metrics]\nbind = "x"\n'))).toContain('metrics.bind: unknown key');
  });

  it('converts environment overrides by the type of the key, and names the variable when it cannot', () => {
    const c = client('', { POSTMIX_CLIENT_SMTP__PASSWORD: '123456', POSTMIX_CLIENT_SMTP__PORT: '2600', POSTMIX_CLIENT_ROUTING__OVERLAY_ONLY: 'true' });
    expect(c.smtp.password).toBe('123456'); // a password of digits stays a string
    expect(c.smtp.port).toBe(2600);
    expect(c.routing.overlay_only).toBe(true);
    expect(client('', { POSTMIX_CLIENT_ROUTING__FORCE_SMTP: '["@a.example","@b.example"]' }).routing.force_smtp).toEqual(['@a.example', '@b.example']);
    expect(message(() => client('', { POSTMIX_CLIENT_SMTP__PORT: 'twenty' }))).toBe('POSTMIX_CLIENT_SMTP__PORT: smtp.port takes a number, got "twenty"');
    expect(message(() => client('', { POSTMIX_CLIENT_ROUTING__OVERLAY_ONLY: 'yes' }))).toBe(
      'POSTMIX_CLIENT_ROUTING__OVERLAY_ONLY: routing.overlay_only takes true or false, got "yes"',
    );
    expect(message(() => client('', { POSTMIX_CLIENT_ROUTING__OVERLAY_OLNY: 'true' }))).toBe(
      'POSTMIX_CLIENT_ROUTING__OVERLAY_OLNY: no key routing.overlay_olny in this configuration; did you mean routing.overlay_only?',
    );
    expect(message(() => client('', { POSTMIX_CLIENT_SMTP__PORT__X: '1' }))).toContain('POSTMIX_CLIENT_SMTP__PORT__X: no key smtp.port.x');
    expect(message(() => client('', { POSTMIX_CLIENT_SMTP__PORT: '70000' }))).toMatch(/smtp\.port: .* \(set by POSTMIX_CLIENT_SMTP__PORT\)/);
  });

  it('expands ~ in paths, in the file and from the environment', () => {
    expect(expandHome('~/x', '/home/a')).toBe('/home/a/x');
    expect(expandHome('~', '/home/a')).toBe('/home/a');
    expect(expandHome('/a/~/b', '/home/a')).toBe('/a/~/b');
    expect(expandHome('~bob/x', '/home/a')).toBe('~bob/x');
    const c = loadConfig(file('data_dir = "~/pm"\n[bounce]\nmaildir = "~/Maildir"\n'), ClientConfigSchema, 'P', { P_NETWORK__DOCUMENT: '~/doc.bin' });
    expect([c.data_dir, c.bounce.maildir, c.network.document]).toEqual([join(homedir(), 'pm'), join(homedir(), 'Maildir'), join(homedir(), 'doc.bin')]);
  });

  it('takes keys in the encoding keygen prints, and says what to give for a hex key', () => {
    const b64 = Buffer.alloc(32, 7).toString('base64');
    expect(client(`[network]\nauthorities = ["${b64}"]\n`).network.authorities).toEqual([b64]);
    expect(message(() => client(`[network]\nauthorities = ["${'ab'.repeat(32)}"]\n`))).toContain(
      'network.authorities.0: is a hex key; give the base64 identity public key that `postmix keygen` prints',
    );
  });

  it('parses multiaddrs with the multiaddr library and wants host + TCP port', () => {
    expect(multiaddrString.safeParse('/ip4/10.0.0.1/tcp/4001').success).toBe(true);
    expect(multiaddrString.safeParse('/dns4/mix.example/tcp/4001').success).toBe(true);
    expect(multiaddrString.safeParse('/ip6/::1/tcp/1').success).toBe(true);
    const bad = (s: string) => multiaddrString.safeParse(s).error?.issues[0]?.message ?? '';
    expect(bad('/ip4/300.1.1.1/tcp/1')).toContain('Invalid IPv4 address');
    expect(bad('/ip4/1.2.3.4/tcp/70000')).toContain('not a multiaddr');
    expect(bad('/ip4/1.2.3.4/udp/1')).toContain('got /ip4/udp');
    expect(bad('127.0.0.1:4001')).toContain('not a multiaddr');
    const m = message(() =>
      loadConfig(
        file(
          '[mixnode]\ndata_dir = "/d"\nlisten = "/ip4/1.2.3.4/tcp/99999"\n[directory]\n[[directory.authorities]]\nurl = "http://a"\npublic_key_file = "a.pub"\n',
        ),
        MixnodeConfigSchema,
        'P',
        {},
      ),
    );
    expect(m).toContain('mixnode.listen: not a multiaddr');
  });

  it('suggests only close names', () => {
    expect(nearest('overlay_olny', ['overlay_only', 'force_smtp'])).toBe('overlay_only');
    expect(nearest('zzzzzz', ['overlay_only', 'force_smtp'])).toBeUndefined();
    expect(applyEnvOverrides({}, 'P', ClientConfigSchema, { Q_X: '1' }).sources.size).toBe(0);
  });
});
