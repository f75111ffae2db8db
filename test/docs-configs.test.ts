/**
 * The operator guides show a complete config file for each daemon; an operator copies it. These
 * tests take the first ```toml block of each guide, exactly as printed, and load it with the
 * role's own config loader: a guide whose example no longer loads (a renamed key, a tightened
 * rule) fails here instead of at an operator's first start.
 */
import { copyFileSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { availableParallelism, tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { CLIENT_ENV_PREFIX } from '../cli/client.ts';
import { ClientConfigSchema } from '../client/config.ts';
import { loadDirectoryConfig } from '../directory/config.ts';
import { loadGatewayConfig } from '../gateway/config.ts';
import { loadMixnodeConfig } from '../mixnode/config.ts';
import { KeyStore } from '../runtime/pki/key-store.ts';
import { loadConfig } from '../runtime/daemon.ts';

const root = new URL('..', import.meta.url).pathname;
const dir = mkdtempSync(join(tmpdir(), 'pmx-docs-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));
// the examples name authority public keys by file, relative to the config file, as
// `postmix keygen` writes them
KeyStore.create(join(dir, 'auth1'), { force: false, epochs: [] });
KeyStore.create(join(dir, 'dirauth1'), { force: false, epochs: [] });

function firstToml(doc: string): string {
  const text = readFileSync(join(root, doc), 'utf8');
  const m = /```toml\n([\s\S]*?)```/.exec(text);
  if (!m) throw new Error(`${doc} has no toml example`);
  return m[1]!;
}

function write(doc: string): string {
  const path = join(dir, `${doc.replace(/\W/g, '_')}.toml`);
  writeFileSync(path, firstToml(doc));
  return path;
}

describe('the config examples in the operator guides load as printed', () => {
  it('docs/mixnode.md', () => {
    const c = loadMixnodeConfig(write('docs/mixnode.md'), {});
    expect(c.file.directory.authorities.length).toBeGreaterThan(0);
    expect(c.file.crypto.workers).toBe(Math.max(1, availableParallelism() - 1));
  });

  it('docs/gateway.md', () => {
    copyFileSync(join(dir, 'dirauth1', 'identity.pub'), join(dir, 'dirauth1.pub'));
    const path = write('docs/gateway.md');
    const c = loadGatewayConfig(path, {});
    expect(c.file.gateway.domains.length).toBeGreaterThan(0);
    // [crypto] workers, as on a mix: cores - 1 (at least 1) unless set; the environment overrides it
    expect(c.file.crypto.workers).toBe(Math.max(1, availableParallelism() - 1));
    expect(loadGatewayConfig(path, { POSTMIX_GATEWAY_CRYPTO__WORKERS: '0' }).file.crypto.workers).toBe(0);
    expect(() => loadGatewayConfig(path, { POSTMIX_GATEWAY_CRYPTO__WORKERS: '-2' })).toThrow(/crypto\.workers/);
    writeFileSync(path, firstToml('docs/gateway.md').replace('[crypto]', '[crypto]\nthreads = 2'));
    expect(() => loadGatewayConfig(path, {})).toThrow(/crypto\.threads: unknown key/);
  });

  it('docs/client.md', () => {
    const c = loadConfig(write('docs/client.md'), ClientConfigSchema, CLIENT_ENV_PREFIX, {});
    expect(c.smtp.host).toBe('127.0.0.1');
  });

  it('docs/spec/pki.md (directory authority)', () => {
    const c = loadDirectoryConfig(write('docs/spec/pki.md'), {});
    expect(c.authorities).toHaveLength(3);
  });
});
