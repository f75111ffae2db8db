/**
 * `postmix <role> init` as an operator runs it (the real command, as processes): what it writes
 * passes `<role> run --check` with its own keys, agrees on the epoch schedule across roles, never
 * overwrites, and refuses to write a node that lists no authority.
 */
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';

const ROOT = join(import.meta.dirname, '..');
const dir = mkdtempSync(join(tmpdir(), 'pmx-init-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

function postmix(...args: string[]) {
  const r = spawnSync(process.execPath, [join(ROOT, 'bin/postmix.js'), ...args], { cwd: dir, encoding: 'utf8', timeout: 60_000 });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
}

describe('postmix <role> init', () => {
  it('writes configs and keys every role checks as valid, on one epoch schedule', () => {
    const d = postmix('directory', 'init', '-c', 'etc/directory.toml', '--data-dir', 'var/dir', '--url', 'http://127.0.0.1:8080', '--epoch-length', '60');
    expect(d.stderr).toBe('');
    const key = /identity public key .*: (\S+)/.exec(d.stdout)![1]!;
    expect(postmix('directory', 'run', '--check', '-c', 'etc/directory.toml')).toMatchObject({ code: 0, stdout: expect.stringContaining('epoch 60s') });

    const auth = `http://127.0.0.1:8080=${key}`;
    expect(
      postmix('mixnode', 'init', '-c', 'etc/mixnode.toml', '--data-dir', 'var/mix', '--authority', auth, '--epoch-length', '60', '--layer', '2').code,
    ).toBe(0);
    const m = postmix('mixnode', 'run', '--check', '-c', 'etc/mixnode.toml');
    expect(m.stderr).toBe('');
    expect(m.stdout).toMatch(/^config ok: node [0-9a-f]{16}…, .*epoch 60s/);
    // the identity key is the node's secret: 0600 in a 0700 directory
    expect(statSync(join(dir, 'var/mix/keys/identity.key')).mode & 0o777).toBe(0o600);
    expect(statSync(join(dir, 'var/mix/keys')).mode & 0o777).toBe(0o700);

    // a gateway can name the authority's identity.pub instead of pasting the key
    const g = postmix(
      'gateway',
      'init',
      '-c',
      'etc/gateway.toml',
      '--data-dir',
      'var/gw',
      '--domain',
      'example.org',
      '--epoch-length',
      '60',
      '--authority',
      'http://127.0.0.1:8080=var/dir/keys/identity.pub',
    );
    expect(g.stderr).toBe('');
    expect(
      postmix('gateway', 'init', '-c', 'etc/gateway.toml', '--data-dir', 'var/gw2', '--domain', 'example.org', '--authority', auth, '--epoch-length', '60')
        .code,
    ).toBe(73);
    expect(
      postmix(
        'gateway',
        'init',
        '-f',
        '-c',
        'etc/gateway.toml',
        '--data-dir',
        'var/gw',
        '--domain',
        'example.org',
        '--authority',
        auth,
        '--epoch-length',
        '60',
        '--mx-protocol',
        'lmtp',
      ).code,
    ).toBe(0);
    const gc = postmix('gateway', 'run', '--check', '-c', 'etc/gateway.toml');
    expect(gc.stderr).toBe('');
    expect(gc.stdout).toContain('domains example.org');
    expect(gc.stdout).toContain('MX lmtp://127.0.0.1:10026');

    expect(postmix('client', 'init', '-c', 'etc/client.toml', '--data-dir', 'var/client', '--authority', auth, '--home-gateway', 'example.org').code).toBe(0);
    const c = postmix('client', 'run', '--check', '-c', 'etc/client.toml');
    expect(c.stderr).toBe('');
    expect(c.stdout).toContain('config ok: SMTP 127.0.0.1:2525');

    // one schedule: each hop's [directory] repeats the authorities' [network] epoch keys
    for (const f of ['etc/directory.toml', 'etc/mixnode.toml', 'etc/gateway.toml']) {
      const text = readFileSync(join(dir, f), 'utf8');
      expect(text).toMatch(/^epoch_length = 60\b/m);
      expect(text).toMatch(/^grace = 60\b/m); // the default grace, clipped to the epoch
    }
  });

  it('refuses to overwrite, and to write a node that names no authority', () => {
    const first = postmix('mixnode', 'init', '-c', 'etc/m.toml', '--data-dir', 'var/m', '--authority', `http://a=${Buffer.alloc(32, 1).toString('base64')}`);
    expect(first.code).toBe(0);
    const again = postmix('mixnode', 'init', '-c', 'etc/m.toml', '--data-dir', 'var/m', '--authority', `http://a=${Buffer.alloc(32, 1).toString('base64')}`);
    expect(again).toMatchObject({ code: 73, stderr: expect.stringContaining('exists; give --force') });
    // an existing key is never replaced silently either
    const keys = postmix('mixnode', 'init', '-c', 'etc/m-new.toml', '--data-dir', 'var/m', '--authority', `http://a=${Buffer.alloc(32, 1).toString('base64')}`);
    expect(keys.code).toBe(77);
    expect(keys.stderr).toContain('identity.key');
    const none = postmix('mixnode', 'init', '-c', 'etc/n.toml', '--data-dir', 'var/n');
    expect(none).toMatchObject({ code: 2, stderr: expect.stringContaining('--authority URL=KEY') });
    expect(postmix('mixnode', 'init', '-c', 'etc/n.toml', '--data-dir', 'var/n', '--authority', 'nonsense').code).not.toBe(0);
  });
});
