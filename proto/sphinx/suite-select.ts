import { createRequire } from 'node:module';
import { nodeSuite } from './suite-node.ts';
import { makeSodiumSuite, type SodiumBinding } from './suite-sodium.ts';
import type { SphinxSuite } from './suite.ts';
import { fromHex, hex } from '../util/bytes.ts';

/**
 * Which suite the roles run on: the fastest one that loads here (libsodium through
 * sodium-native's prebuilt binary), else node:crypto, the suite of before, with a warning.
 * Never silently something slower than node:crypto: the pure-JS noble suite is the portable
 * reference for tests and the CLI, not a fallback.
 */
export interface SuiteSelection {
  readonly suite: SphinxSuite;
  /** Set when the native suite could not be used: why, for the operator's log. */
  readonly fallbackReason?: string;
}

const requireCjs = createRequire(import.meta.url);

/** Loads sodium-native (a CommonJS module with a prebuilt N-API binary per platform). */
export function requireSodiumNative(): SodiumBinding {
  return requireCjs('sodium-native') as SodiumBinding;
}

/**
 * A known-answer check of a freshly loaded suite (RFC 7748 §6.1, RFC 8439 §A.1 #1), so a
 * binding that loads but lacks a function or computes garbage (a wrong prebuild, an old
 * version) is refused at start, not found out packet by packet.
 */
function selfTest(suite: SphinxSuite): void {
  const a = fromHex('77076d0a7318a57d3c16c17251b26645df4c2f87ebc0992ab177fba51db92c2a');
  const bPub = fromHex('de9edb7d7b7dc1b4d35b61c2ece435373f8343c85b78674dadfc7e146f882b4f');
  if (hex(suite.publicKey(a)) !== '8520f0098930a754748b7ddcb43ef75a0dbf3a0d26381af4eba4a98eaa9b4e6a') throw new Error('X25519 base-point check failed');
  const s = suite.dh(suite.prepareScalar(a), suite.preparePoint(bPub));
  if (!s || hex(s) !== '4a5d9d5ba4ce2de1728e3bf480350f25e07e21c947d19e3376f09b3c1e161742') throw new Error('X25519 check failed');
  if (suite.dh(suite.prepareScalar(a), suite.preparePoint(new Uint8Array(32))) !== null) throw new Error('X25519 accepted a low-order point');
  const ks = new Uint8Array(64);
  suite.stream(new Uint8Array(32), ks);
  const x = new Uint8Array(64);
  suite.xorStream(new Uint8Array(32), x);
  const want = '76b8e0ada0f13d90405d6ae55386bd28bdd219b8a08ded1aa836efcc8b770dc7da41597c5157488d7724e03fb8d84a376a43b8f41518a11cc387b669b2ee6586';
  if (hex(ks) !== want || hex(x) !== want) throw new Error('ChaCha20 check failed');
}

/** Picks the suite; `load` is injectable so tests can simulate a binary that does not load. */
export function selectSuite(load: () => SodiumBinding = requireSodiumNative): SuiteSelection {
  try {
    const suite = makeSodiumSuite(load());
    selfTest(suite);
    return { suite };
  } catch (e) {
    const why = e instanceof Error ? e.message.split('\n')[0] : String(e);
    return { suite: nodeSuite, fallbackReason: `sodium-native unusable (${why}); Sphinx runs on node:crypto, about 1.5x slower per hop` };
  }
}

let selected: SuiteSelection | undefined;

/**
 * The process-wide choice, made once. A fallback is reported through process.emitWarning
 * (stderr, visible even before a daemon has its logger); daemons also log it in their start line.
 */
export function fastestSuiteSelection(): SuiteSelection {
  if (!selected) {
    selected = selectSuite();
    if (selected.fallbackReason) process.emitWarning(selected.fallbackReason, { code: 'POSTMIX_SPHINX_FALLBACK' });
  }
  return selected;
}

/** The suite hops, gateways and clients use in production. */
export const fastestSuite: SphinxSuite = fastestSuiteSelection().suite;
