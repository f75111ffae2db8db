/**
 * The systemd units operators install (deploy/systemd/): systemd's own checker accepts each
 * without a warning, each has the hardening and restart policy docs/deploy.md promises, and the
 * command each starts is one postmix runs: its ExecStartPre (`run --check`) passes on the config
 * and keys `postmix <role> init` wrote, at the paths the unit names.
 */
import { execFileSync, spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';

const ROOT = join(import.meta.dirname, '..');
const UNITS = join(ROOT, 'deploy/systemd');
const BIN = join(ROOT, 'bin/postmix.js');
const tmp = mkdtempSync(join(tmpdir(), 'pmx-deploy-'));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

const roles = ['mixnode', 'gateway', 'directory'] as const;

function directives(unit: string): Map<string, string[]> {
  const m = new Map<string, string[]>();
  for (const line of unit.split('\n')) {
    const x = /^([A-Za-z]+)=(.*)$/.exec(line.trim());
    if (x) m.set(x[1]!, [...(m.get(x[1]!) ?? []), x[2]!]);
  }
  return m;
}

describe('deploy/systemd', () => {
  it('passes systemd-analyze verify with no warning, for every unit', () => {
    const files = [...readdirSync(UNITS).filter((f) => f.endsWith('.service')), ...readdirSync(join(UNITS, 'user')).map((f) => `user/${f}`)];
    expect(files.sort()).toEqual(['postmix-directory.service', 'postmix-gateway.service', 'postmix-mixnode.service', 'user/postmix-client.service']);
    for (const f of files) {
      // verify wants the ExecStart binary to exist: point it at this checkout's
      const copy = join(tmp, f.replace('user/', ''));
      writeFileSync(copy, readFileSync(join(UNITS, f), 'utf8').replaceAll('/usr/local/bin/postmix', BIN));
      const r = spawnSync('systemd-analyze', ['verify', '--man=no', copy], { encoding: 'utf8', timeout: 30_000 });
      expect(r.error, 'systemd-analyze (package systemd, .ci/apt-packages)').toBeUndefined();
      expect(r.stderr.trim(), f).toBe('');
      expect(r.status, f).toBe(0);
    }
  });

  it('runs each daemon as the dedicated user, hardened, in its state directory, restarting but not on a bad config', () => {
    for (const role of roles) {
      const d = directives(readFileSync(join(UNITS, `postmix-${role}.service`), 'utf8'));
      const one = (k: string) => d.get(k)?.at(-1);
      expect([one('User'), one('Group')]).toEqual(['postmix', 'postmix']);
      expect(one('ProtectSystem')).toBe('strict');
      expect(one('NoNewPrivileges')).toBe('yes');
      expect(one('StateDirectory')).toBe(`postmix/${role}`);
      expect(one('StateDirectoryMode')).toBe('0700');
      expect(one('ConfigurationDirectory')).toBe('postmix');
      expect(one('Restart')).toBe('on-failure');
      expect(one('RestartPreventExitStatus')?.split(/\s+/)).toEqual(['77', '78']);
      expect(one('CapabilityBoundingSet')).toBe('');
      expect(one('ExecStart')).toBe(`/usr/local/bin/postmix ${role} run -c /etc/postmix/${role}.toml`);
      expect(one('ExecStartPre')).toBe(`/usr/local/bin/postmix ${role} run --check -c /etc/postmix/${role}.toml`);
    }
    expect(readFileSync(join(UNITS, 'postmix.sysusers'), 'utf8')).toMatch(/^u postmix - "postmix daemons" \/var\/lib\/postmix \/usr\/sbin\/nologin$/m);
  });

  it("starts commands that pass on what init wrote at the unit's paths", () => {
    const etc = join(tmp, 'etc/postmix');
    const state = join(tmp, 'var/lib/postmix');
    mkdirSync(etc, { recursive: true });
    const run = (args: string[]) => spawnSync(process.execPath, [BIN, ...args], { encoding: 'utf8', timeout: 60_000 });
    const d = run(['directory', 'init', '-c', `${etc}/directory.toml`, '--data-dir', `${state}/directory`, '--url', 'http://127.0.0.1:8080']);
    expect(d.stderr).toBe('');
    const key = /identity public key .*: (\S+)/.exec(d.stdout)![1]!;
    const auth = `http://127.0.0.1:8080=${key}`;
    expect(run(['mixnode', 'init', '-c', `${etc}/mixnode.toml`, '--data-dir', `${state}/mixnode`, '--authority', auth]).stderr).toBe('');
    expect(run(['gateway', 'init', '-c', `${etc}/gateway.toml`, '--data-dir', `${state}/gateway`, '--domain', 'example.org', '--authority', auth]).stderr).toBe(
      '',
    );
    for (const role of roles) {
      const pre = directives(readFileSync(join(UNITS, `postmix-${role}.service`), 'utf8')).get('ExecStartPre')![0]!;
      const argv = pre.replaceAll('/etc/postmix', etc).split(/\s+/).slice(1);
      const r = run(argv);
      expect(r.stderr, role).toBe('');
      expect(r.stdout, role).toMatch(/^config ok: /);
    }
    // the state directory the unit names is where init put the keys
    expect(execFileSync('ls', [`${state}/mixnode/keys`], { encoding: 'utf8' }).split('\n')).toContain('identity.key');
  });
});
