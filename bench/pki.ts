/**
 * PKI costs: descriptor build/verify, document build (layer assignment + encoding) and the
 * verification every client does on each new document, for a network of `nodes` descriptors.
 */
import { DEFAULT_GEOMETRY } from '../proto/sphinx/geometry.ts';
import { DEFAULT_MIXING } from '../proto/mixing/params.ts';
import {
  buildDocumentBody,
  combineSignatures,
  encodeCheckedDocumentBody,
  generateIdentity,
  signDocumentBody,
  verifyDescriptor,
  verifyDocument,
  type DocumentParams,
} from '../proto/pki/index.ts';
import { testNode } from '../test/support/pki.ts';
import { fmt, machineInfo, opsPerSecond, type BenchOptions, type BenchReport } from './harness.ts';

export async function run(opts: BenchOptions): Promise<BenchReport> {
  const seconds = opts.quick ? 0.3 : 1.5;
  const nodes = opts.quick ? 60 : 300;
  const epoch = 1000;
  const auth = [generateIdentity(), generateIdentity(), generateIdentity()];
  const params: DocumentParams = {
    epochConfig: { origin: 0, length: 3600, grace: 600 },
    geometry: DEFAULT_GEOMETRY,
    mixing: DEFAULT_MIXING,
    numLayers: 3,
    authorities: auth.map((a) => a.publicKey),
    threshold: 2,
  };
  const fakes = Array.from({ length: nodes }, (_, i) => testNode(epoch, i, i % 10 === 9 ? 'gateway' : 'mix'));
  const descs = fakes.map((f) => verifyDescriptor(f.descriptor));
  const results: Record<string, unknown> = { nodes };

  let i = 0;
  const dv = opsPerSecond(() => {
    verifyDescriptor(fakes[i++ % fakes.length]!.descriptor);
    return 1;
  }, seconds);
  results.descriptorVerifyPerSec = dv.opsPerSec;
  opts.log(`descriptor verify (3 Ed25519 checks): ${fmt(dv.opsPerSec)} /s`);

  let body: Uint8Array = new Uint8Array(0);
  const build = opsPerSecond(() => {
    body = encodeCheckedDocumentBody(buildDocumentBody(params, epoch, descs));
    return 1;
  }, seconds);
  results.documentBuildPerSec = build.opsPerSec;
  results.documentBytes = body.length;
  opts.log(`document build+encode (${nodes} nodes, ${fmt(body.length)} B): ${fmt(build.opsPerSec, 1)} /s`);

  const signed = combineSignatures(
    body,
    auth.map((a) => signDocumentBody(a, body)),
  );
  const vopts = { authorities: params.authorities, threshold: 2 };
  const ver = opsPerSecond(() => {
    verifyDocument(signed, vopts);
    return 1;
  }, seconds);
  results.documentVerifyPerSec = ver.opsPerSec;
  opts.log(`document verify (${nodes} nodes, 3 signatures): ${fmt(ver.opsPerSec, 1)} /s`);
  return { suite: 'pki', machine: machineInfo(), results };
}
