/**
 * The PKI's protobuf schema (docs/spec/pki.md §3), the text proto/pki/codec.ts parses. It is a
 * module so that decoding reads no file; proto/pki.proto is the same text as a file for other
 * implementations (protoc), and proto/pki/schema.test.ts fails when the two differ: change both.
 */
export const PKI_PROTO = `// postmix PKI wire formats: node descriptors, votes and the network document.
// Loaded at run time by proto/pki/codec.ts with protobufjs (protobuf.parse): no generated code.
// docs/spec/pki.md is normative; this file is its machine-readable half.
//
// Canonical encoding (the bytes that are signed): fields in ascending field-number order,
// proto3 default values (0, "", empty bytes, empty repeated, unset message) omitted, repeated
// scalars packed, no unknown fields. Signatures are always over the exact bytes carried in a
// \`body\` field, prefixed by a per-kind context string (see pki.md §4), so a verifier never has
// to re-encode anything; decoders additionally reject bodies that do not re-encode identically.
// All integers are uint32 (epoch numbers, unix seconds until 2106): no 64-bit values.
syntax = "proto3";

package postmix.pki.v1;

enum Role {
  ROLE_UNSPECIFIED = 0;
  ROLE_MIX = 1;
  ROLE_GATEWAY = 2;
}

enum RecipientPolicy {
  RECIPIENT_POLICY_UNSPECIFIED = 0;
  // every delivery must redeem a valid single-use token for the recipient
  RECIPIENT_POLICY_TOKEN_REQUIRED = 1;
  // deliveries without a token are accepted, rate-limited by the gateway
  RECIPIENT_POLICY_OPEN_RATE_LIMITED = 2;
}

message Geometry {
  uint32 max_hops = 1;
  uint32 per_hop_size = 2;
  uint32 payload_size = 3;
}

message MixingParams {
  double lambda_p = 1;
  double lambda_l = 2;
  double lambda_d = 3;
  double lambda_m = 4;
  double mu = 5;
  // λ_G: a gateway's own loop cover rate per second
  double lambda_g = 6;
}

// One epoch's X25519 Sphinx public key, signed by the node's Ed25519 identity key over
// "postmix/pki/v1/sphinx-key\\0" || node_id (32) || u32be(epoch) || public_key (32).
message SphinxKey {
  uint32 epoch = 1;
  bytes public_key = 2;
  bytes signature = 3;
}

// An opaque token-issuer public key, valid for one recipient-key epoch. The token format is
// defined elsewhere; the PKI only carries the bytes.
message TokenIssuerKey {
  uint32 key_epoch = 1;
  bytes public_key = 2;
}

message GatewayInfo {
  repeated string domains = 1;
  repeated TokenIssuerKey issuer_keys = 2;
  string key_directory_url = 3;
  RecipientPolicy policy = 4;
}

message DescriptorBody {
  uint32 version = 1;          // 1
  bytes identity_key = 2;      // Ed25519 public key, 32 bytes
  string peer_id = 3;          // libp2p peer id (base58btc string)
  repeated string addresses = 4; // multiaddrs
  Role role = 5;
  uint32 layer_preference = 6; // 0 = none, else 1..L
  uint32 epoch = 7;            // the epoch this descriptor is for
  repeated SphinxKey sphinx_keys = 8; // keys for \`epoch\`, \`epoch + 1\`, … (1..4, distinct)
  GatewayInfo gateway = 9;     // set iff role = ROLE_GATEWAY
  uint32 published_at = 10;    // unix seconds
}

message SignedDescriptor {
  bytes body = 1;       // canonical DescriptorBody
  bytes signature = 2;  // Ed25519 by identity_key over "postmix/pki/v1/descriptor\\0" || body
}

// A node as the document lists it.
message NodeEntry {
  bytes node_id = 1;      // SHA-256(identity_key)
  bytes identity_key = 2;
  string peer_id = 3;
  repeated string addresses = 4;
  bytes sphinx_key = 5;   // X25519 public key for the document's epoch E
  // the node's keys for E + 1, E + 2, … in order, as far as its descriptor carried them without
  // a gap and at most the document's keys-ahead count (was \`bytes sphinx_key_next\`: the same
  // wire encoding for one key)
  repeated bytes sphinx_keys_ahead = 6;
  uint32 layer = 7;       // 1..L for mixes, 0 for gateways
  GatewayInfo gateway = 8;
}

message Layer {
  repeated NodeEntry nodes = 1; // sorted by node_id
}

message DocumentBody {
  uint32 version = 1;       // 1
  uint32 epoch = 2;
  uint32 valid_after = 3;   // unix seconds: start of epoch E
  uint32 fresh_until = 4;   // unix seconds: end of epoch E; the next document is due by then
  uint32 epoch_length = 5;  // seconds
  uint32 grace = 6;         // seconds the previous epoch's keys stay valid
  Geometry geometry = 7;
  MixingParams mixing = 8;
  repeated Layer layers = 9;
  repeated NodeEntry gateways = 10; // sorted by node_id
  repeated bytes authorities = 11;  // Ed25519 keys of the authority set, sorted
  uint32 threshold = 12;
  bytes previous_digest = 13;       // SHA-256 of the previous epoch's body, if known
  // unix seconds: end of epoch E + k, k = 0..3 the keys-ahead count; routing under this
  // document stops then (packets already built are processed until valid_until + grace)
  uint32 valid_until = 14;
}

message AuthoritySignature {
  bytes authority_key = 1;  // Ed25519 public key
  bytes signature = 2;      // over "postmix/pki/v1/document\\0" || body
}

message SignedDocument {
  bytes body = 1;  // canonical DocumentBody
  repeated AuthoritySignature signatures = 2; // sorted by authority_key, one per authority
}

message VoteBody {
  uint32 version = 1;
  uint32 epoch = 2;
  bytes authority_key = 3;
  repeated bytes descriptors = 4; // SignedDescriptor bytes, sorted by node id
  bytes previous_digest = 5;
}

message SignedVote {
  bytes body = 1;      // canonical VoteBody
  bytes signature = 2; // over "postmix/pki/v1/vote\\0" || body
}
`;
