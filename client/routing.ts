/**
 * The routing decision per recipient (pure). Overlay when the recipient's domain has a gateway
 * in the current network document AND the wallet holds an unspent token for that recipient
 * under a key epoch the gateway still lists (or the gateway declares an open policy); else
 * the SMTP fallback through the user's own provider, or a refusal when the user set
 * overlay-only for that recipient or globally. A domain known to have had a gateway (an earlier
 * document listed one, or the wallet holds tokens issued there) whose gateway is now missing is
 * refused too, unless the user chose `onGatewayLoss: 'smtp'`: the fallback would otherwise let
 * whoever keeps the gateway out of the document (or the document away from the client) decide
 * that the mail goes out without the overlay. A sender whose tokens for a recipient have all
 * expired (or are for an epoch that has not started) is refused with that reason, whatever the
 * fallback rules: holding tokens says the user meant this mail for the overlay, and an SMTP
 * relay would not be anonymous. Every decision carries a human reason that the
 * logs, `postmix client status` and SMTP replies show.
 */
import type { DocumentBody, NodeEntry } from '../proto/pki/codec.ts';
import { normalizeRecipient } from '../proto/tokens/index.ts';

export type RouteDecision =
  | {
      readonly path: 'overlay';
      readonly recipient: string;
      readonly domain: string;
      readonly gateway: NodeEntry;
      /** true when the gateway's policy is open (no token needed; one is still used if held) */
      readonly open: boolean;
      /** the gateway's token-issuer public keys from the document (empty: it lists none) */
      readonly issuerKeys: readonly Uint8Array[];
      readonly reason: string;
    }
  | { readonly path: 'smtp'; readonly recipient: string; readonly reason: string }
  /**
   * No usable network document, and the recipient would go by the overlay (overlay-only, or its
   * domain is known to have a gateway): accepted and kept until a document verifies, then routed
   * by it (`routing.no_document = "hold"`, the default).
   */
  | { readonly path: 'hold'; readonly recipient: string; readonly domain: string; readonly reason: string }
  /** As 'hold', but answered with a temporary refusal (451) so the sender retries later (`no_document = "refuse"`). */
  | { readonly path: 'defer'; readonly recipient: string; readonly reason: string }
  | {
      readonly path: 'refuse';
      readonly recipient: string;
      readonly reason: string;
      /** set when refused because this domain's gateway is missing (routing.on_gateway_loss) */
      readonly lostGateway?: string;
      /** a condition that passes (tokens of an epoch not started yet): 450, not 550 */
      readonly temporary?: boolean;
    };

export interface RoutingPolicy {
  /** Refuse rather than fall back, for every recipient. */
  readonly overlayOnly: boolean;
  /** Refuse rather than fall back for these addresses or `@domain` entries. */
  readonly overlayOnlyRecipients: readonly string[];
  /** Always use the SMTP fallback for these addresses or `@domain` entries. */
  readonly forceSmtp?: readonly string[];
  /**
   * A domain that had a gateway and has none in the current document (or there is no document):
   * 'refuse' (default) or 'smtp' (fall back, as for a domain that never had one).
   */
  readonly onGatewayLoss?: 'refuse' | 'smtp';
  /**
   * No usable network document (the authorities out of reach, the client just started) for a
   * recipient that would go by the overlay: 'hold' (default: accept, send once a document
   * verifies) or 'refuse' (a temporary 451, so the submitting MTA retries).
   */
  readonly noDocument?: 'hold' | 'refuse';
}

export interface RoutingInput {
  readonly recipient: string;
  /** The current verified network document, or null when the client has none. */
  readonly document: DocumentBody | null;
  /** Unspent wallet tokens for this recipient issued under one of `issuerKeys` (any issuer when undefined). */
  readonly unspentTokens: (recipient: string, issuerKeys?: readonly Uint8Array[]) => number;
  /** Unspent tokens outside their window (expired, or of an epoch not started); undefined: the wallet does not know windows. */
  readonly heldOutsideWindow?: (
    recipient: string,
    issuerKeys?: readonly Uint8Array[],
  ) => { readonly expired: number; readonly notYet: number; readonly lastExpired: number | null; readonly firstValid: number | null };
  readonly policy: RoutingPolicy;
  /** What the client knows of an earlier gateway for a domain (a phrase for the reason), if anything. */
  readonly gatewayHistory?: (domain: string) => string | undefined;
}

const isoS = (s: number | null) => (s === null ? '?' : new Date(s * 1000).toISOString().replace(/\.\d{3}Z$/, 'Z'));

export function domainOf(address: string): string {
  const at = address.lastIndexOf('@');
  return at < 0 ? '' : address.slice(at + 1).toLowerCase();
}

function listed(list: readonly string[] | undefined, addr: string): boolean {
  if (!list) return false;
  const d = domainOf(addr);
  return list.some((e) => {
    const x = e.trim().toLowerCase();
    return x === addr || (x.startsWith('@') && x.slice(1) === d);
  });
}

export function overlayOnlyFor(policy: RoutingPolicy, recipient: string): boolean {
  return policy.overlayOnly || listed(policy.overlayOnlyRecipients, normalizeRecipient(recipient));
}

export function decideRoute(input: RoutingInput): RouteDecision {
  const recipient = normalizeRecipient(input.recipient);
  const domain = domainOf(recipient);
  const strict = overlayOnlyFor(input.policy, recipient);
  const fallback = (why: string): RouteDecision =>
    strict
      ? { path: 'refuse', recipient, reason: `${why}, and overlay-only is set ${input.policy.overlayOnly ? 'globally' : 'for this recipient'}` }
      : { path: 'smtp', recipient, reason: `${why}: relaying through the SMTP smarthost (not anonymous)` };

  // the domain had a gateway and it is gone: refuse, unless the user allows the fallback
  const lost = (why: string): RouteDecision => {
    const had = strict ? undefined : input.gatewayHistory?.(domain);
    if (!had) return fallback(why);
    if (input.policy.onGatewayLoss === 'smtp')
      return {
        path: 'smtp',
        recipient,
        reason: `${domain} had a postmix gateway (${had}) but ${why}: relaying through the SMTP smarthost (not anonymous; routing.on_gateway_loss = "smtp")`,
      };
    return {
      path: 'refuse',
      recipient,
      lostGateway: domain,
      reason: `${domain} had a postmix gateway (${had}) but ${why}: refused rather than relayed without the overlay through the SMTP smarthost (routing.on_gateway_loss = "smtp" would allow that)`,
    };
  };

  if (!domain || !recipient.includes('@')) return { path: 'refuse', recipient, reason: 'not a valid address (no domain)' };
  if (!strict && listed(input.policy.forceSmtp, recipient))
    return { path: 'smtp', recipient, reason: 'configured to always use the SMTP smarthost for this recipient' };
  if (!input.document) {
    // the overlay is only missing for now: hold what would go by it rather than fall back
    const had = input.gatewayHistory?.(domain);
    if (strict || (had && input.policy.onGatewayLoss !== 'smtp')) {
      const why = `no valid network document is available yet (${strict ? 'overlay-only' : `${domain} has a postmix gateway: ${had}`})`;
      return input.policy.noDocument === 'refuse'
        ? { path: 'defer', recipient, reason: `${why}: try again later (routing.no_document = "refuse")` }
        : { path: 'hold', recipient, domain, reason: `${why}: held, and sent through the overlay once a document verifies` };
    }
    return lost('no network document is available');
  }
  const gateway = input.document.gateways.find((g) => g.gateway?.domains.includes(domain));
  if (!gateway || !gateway.gateway) return lost(`no postmix gateway serves ${domain} in network epoch ${input.document.epoch}`);
  // one POPRF issuer key per gateway (docs/spec/tokens.md); recipient key epochs are inside the tokens
  const issuerKeys = gateway.gateway.issuerKeys.map((k) => k.publicKey);
  const open = gateway.gateway.policy === 'open-rate-limited';
  const n = input.unspentTokens(recipient, issuerKeys.length > 0 ? issuerKeys : undefined);
  if (n > 0)
    return {
      path: 'overlay',
      recipient,
      domain,
      gateway,
      open,
      issuerKeys,
      reason: `gateway for ${domain} in epoch ${input.document.epoch}; ${n} token(s) held`,
    };
  if (open)
    return {
      path: 'overlay',
      recipient,
      domain,
      gateway,
      open,
      issuerKeys,
      reason: `gateway for ${domain} in epoch ${input.document.epoch}; open policy (no token needed)`,
    };
  const outside = input.heldOutsideWindow?.(recipient, issuerKeys.length > 0 ? issuerKeys : undefined);
  if (outside && outside.notYet > 0)
    return {
      path: 'refuse',
      temporary: true,
      recipient,
      reason:
        `the ${outside.notYet} delivery token(s) held for ${recipient} are for its next key epoch, valid from ${isoS(outside.firstValid)}; ` +
        `try again then, or ask ${recipient} for a bundle of the current epoch`,
    };
  if (outside && outside.expired > 0)
    return {
      path: 'refuse',
      recipient,
      reason:
        `the ${outside.expired} delivery token(s) held for ${recipient} expired at ${isoS(outside.lastExpired)} (the recipient's key epoch ended); ` +
        `ask ${recipient} for a new bundle and import it (postmix client tokens import), or, to send it by SMTP instead (not anonymous), ` +
        `drop them (postmix client tokens forget ${recipient})`,
    };
  const all = input.unspentTokens(recipient);
  return fallback(
    all > 0
      ? `${domain} has a gateway but the ${all} token(s) held for ${recipient} were issued under another issuer key than the one it publishes`
      : `${domain} has a gateway but the wallet holds no token for ${recipient}`,
  );
}
