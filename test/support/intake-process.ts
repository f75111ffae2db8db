/**
 * Test fixture (test/gateway-postfix.test.ts): a process that takes fragment payloads (hex, one
 * per line in argv[3]) into the gateway store at argv[2], prints each ACK status as soon as its
 * transaction committed, then prints "acked" and waits — to be SIGKILLed before any hand-off.
 */
import { readFileSync } from 'node:fs';
import { deriveIssuerKeys } from '../../proto/tokens/index.ts';
import { Intake } from '../../gateway/intake.ts';
import { GatewayStore } from '../../gateway/store.ts';

const [dbPath, payloadFile, seedHex, domain] = process.argv.slice(2);
const store = new GatewayStore(dbPath!);
const intake = new Intake(store, {
  domains: [domain!],
  issuer: deriveIssuerKeys(new Uint8Array(Buffer.from(seedHex!, 'hex'))),
  maxMessageBytes: 1 << 20,
  reassemblyTtlMs: 3_600_000,
});
for (const line of readFileSync(payloadFile!, 'utf8').split('\n').filter(Boolean)) {
  const r = intake.handlePayload(new Uint8Array(Buffer.from(line, 'hex')));
  process.stdout.write(`${r.kind === 'ack' ? r.status : r.reason}\n`);
}
process.stdout.write('acked\n');
setInterval(() => {}, 1000);
