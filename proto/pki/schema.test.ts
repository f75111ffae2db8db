import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { PKI_PROTO } from './schema.ts';

describe('PKI schema', () => {
  it('the schema the codecs parse is proto/pki.proto, byte for byte', () => {
    // proto/pki.proto is what other implementations compile; schema.ts is what this one parses
    expect(PKI_PROTO).toBe(readFileSync(new URL('../pki.proto', import.meta.url), 'utf8'));
  });
});
