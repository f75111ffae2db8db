/**
 * `postmix <role> init`: a new node's commented config file and its keys, as `nym-node init` or
 * Katzenpost's genconfig make them. What it writes loads with the role's own loader and passes
 * `<role> run --check` (test/init.test.ts); the comments say what each key does and which ones
 * must agree across the network. It never overwrites a file unless --force is given.
 */
import { existsSync, mkdirSync, writeFileSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import { Command, InvalidArgumentError, Option } from 'commander';
import { DEFAULT_EPOCH } from '../proto/pki/index.ts';
import { KeyStore } from '../runtime/pki/key-store.ts';
import { expandHome } from '../runtime/config-file.ts';
import { multiaddrString } from '../runtime/config-schema.ts';
import { EXIT, exitCodeOf } from '../runtime/errors.ts';
import { hex } from '../proto/util/bytes.ts';

export type Role = 'mixnode' | 'gateway' | 'directory' | 'client';

/** `URL=KEY`: the authority's base URL and its identity public key (base64, or a path to identity.pub). */
export interface AuthoritySpec {
  readonly url: string;
  readonly key: { readonly public_key: string } | { readonly public_key_file: string };
}

export function parseAuthority(spec: string, prev: AuthoritySpec[] = []): AuthoritySpec[] {
  // a URL holds no '=' and a base64 key ends in one: split at the first
  const m = /^(https?:\/\/[^\s=]+)=(.+)$/.exec(spec);
  if (!m) throw new InvalidArgumentError(`--authority: expected URL=KEY (KEY: base64 identity public key or a path to identity.pub), got ${spec}`);
  const [, url, key] = m as unknown as [string, string, string];
  const b64 = /^[A-Za-z0-9+/]{43}=$/.test(key);
  return [...prev, { url, key: b64 ? { public_key: key } : { public_key_file: resolve(expandHome(key)) } }];
}

function multiaddrOpt(flag: string) {
  return (v: string, prev?: string[]): string[] => {
    const r = multiaddrString.safeParse(v);
    if (!r.success) throw new InvalidArgumentError(`${flag}: ${r.error.issues[0]?.message ?? 'bad multiaddr'}`);
    return [...(prev ?? []), v];
  };
}

function intOpt(flag: string, min: number, max: number) {
  return (v: string): number => {
    const n = Number(v);
    if (!Number.isInteger(n) || n < min || n > max) throw new InvalidArgumentError(`${flag} must be an integer ${min}..${max}, got "${v}"`);
    return n;
  };
}

const q = (s: string) => JSON.stringify(s);

function authorityTables(table: string, auths: readonly AuthoritySpec[]): string {
  return auths
    .map(
      (a) =>
        `[[${table}]]\nurl = ${q(a.url)}\n` +
        ('public_key' in a.key ? `public_key = ${q(a.key.public_key)}\n` : `public_key_file = ${q(a.key.public_key_file)}   # that authority's identity.pub\n`),
    )
    .join('');
}

interface EpochOpts {
  epochLength: number;
  epochOrigin: number;
  grace: number;
}

/** The default grace, but never past the epoch length (the loaders refuse that). */
function graceOf(o: { epochLength: number; grace?: number }): number {
  return o.grace ?? Math.min(DEFAULT_EPOCH.grace, o.epochLength);
}

function directoryTable(o: EpochOpts & { authority: AuthoritySpec[]; threshold?: number }): string {
  const threshold = o.threshold ?? Math.min(2, o.authority.length);
  return `[directory]
# How this node reaches the directory authorities and checks what they publish.
threshold = ${threshold}                 # valid authority signatures a network document needs
# The epoch schedule: must be the authorities' [network] epoch_length / epoch_origin / grace,
# or this node makes keys for epochs the network is not in (and uploads are refused).
epoch_length = ${o.epochLength}
epoch_origin = ${o.epochOrigin}
grace = ${o.grace}
timeout_ms = 10000               # per request to an authority
retry_ms = 5000                  # least time between two attempts at one fetch or upload
${authorityTables('directory.authorities', o.authority)}`;
}

function metricsTable(port: number, what: string): string {
  return `[metrics]
# Prometheus text format at http://host:port/metrics (${what}); the same listener
# answers GET /healthz (alive) and GET /readyz (200 once it holds this epoch's document).
enabled = true
host = "127.0.0.1"               # loopback, unless allow_remote = true (e.g. "0.0.0.0")
port = ${port}
allow_remote = false             # true: serve on a non-loopback host for a remote Prometheus
# bearer_token_file = "/etc/postmix/metrics.token"  # then /metrics needs Authorization: Bearer <token>
`;
}

export interface HopInit extends EpochOpts {
  dataDir: string;
  listen: string[];
  announce?: string[];
  authority: AuthoritySpec[];
  threshold?: number;
}

export function mixnodeTemplate(o: HopInit & { layer: number }): string {
  return `# postmix mix node (written by \`postmix mixnode init\`; docs/mixnode.md lists every key).
# Check it with: postmix mixnode run --check -c <this file>
# Every key can also be set from the environment: POSTMIX_MIXNODE_<SECTION>__<KEY>=value.

[mixnode]
data_dir = ${q(o.dataDir)}   # keys/, the replay store, the cached network document
listen = ${q(o.listen[0]!)}         # the TCP multiaddr the packet link binds
${o.announce?.length ? `announce = [${o.announce.map(q).join(', ')}]` : '# announce = ["/dns4/mix.example.net/tcp/4001"]   # what the descriptor publishes (default: listen)'}
layer_preference = ${o.layer}             # 0: none, or 1..L (a hint; the authorities decide)
log_level = "info"
shutdown_grace_ms = 5000         # bound on the drain after SIGTERM

[limits]
max_queued_bytes = 268435456     # delay-queue bound (256 MiB); past it packets are dropped and counted
max_connections = 1024

[replay]
store = "log"                    # replay tags: "log" (memory + append log) or "sqlite"

[loops]
enabled = true                   # the mix's own loop cover (λ_M from the network document)

${metricsTable(9101, 'packets, drops, queue, loops')}
${directoryTable(o)}`;
}

export function gatewayTemplate(o: HopInit & { domain: string[]; mxHost: string; mxPort: number; mxProtocol: string }): string {
  return `# postmix gateway (written by \`postmix gateway init\`; docs/gateway.md lists every key,
# docs/postfix.md wires it into Postfix). Check it with: postmix gateway run --check -c <this file>
# Every key can also be set from the environment: POSTMIX_GATEWAY_<SECTION>__<KEY>=value.

[gateway]
data_dir = ${q(o.dataDir)}   # gateway.sqlite (users, tokens, queue), issuer.seed, keys/, document cache
listen = ${q(o.listen[0]!)}
${o.announce?.length ? `announce = [${o.announce.map(q).join(', ')}]` : '# announce = ["/dns4/gw.example.org/tcp/4101"]   # what the descriptor publishes (default: listen)'}
domains = [${o.domain.map(q).join(', ')}]   # the mail domains this gateway is the last hop for
log_level = "info"

[intake]
max_message_bytes = 10485760     # keep at most the MX's message_size_limit
ack_unknown_recipient = false    # false: an unknown user is answered as a known one without a token

[mx]
# Where reassembled messages go: the MX's SMTP listener reserved for the gateway, or the mail
# store's LMTP socket (docs/postfix.md says which and why).
host = ${q(o.mxHost)}
port = ${o.mxPort}
protocol = ${q(o.mxProtocol)}              # smtp | lmtp
starttls = "opportunistic"       # opportunistic | require | never
tls_verify = true                # a self-signed MX certificate then fails every hand-off: \`run --check\` says so (docs/gateway.md)
helo_name = "postmix-gateway"

[mailbox]
max_items = 1000                 # ACKs and loops held per client mailbox
ttl_s = 86400

[issuance]
enabled = true                   # the token issuance endpoint (put it behind the provider's HTTPS)
host = "127.0.0.1"
port = 4180
public_url = ""                  # published in the descriptor; "" for none

[replay]
store = "sqlite"

${metricsTable(9102, 'intake, tokens, queue, hand-offs')}
${directoryTable(o)}`;
}

export function directoryTemplate(
  o: EpochOpts & { identityDir: string; dataDir: string; listenHost: string; listenPort: number; authority: AuthoritySpec[]; threshold?: number },
): string {
  const threshold = o.threshold ?? Math.min(2, o.authority.length);
  return `# postmix directory authority (written by \`postmix directory init\`; docs/spec/pki.md §8 lists
# every key). Check it with: postmix directory run --check -c <this file>
# Every key can also be set from the environment: POSTMIX_DIRECTORY_<SECTION>__<KEY>=value.

[authority]
identity_key = ${q(`${o.identityDir}/identity.key`)}
database = ${q(`${o.dataDir}/directory.sqlite`)}
listen_host = ${q(o.listenHost)}
listen_port = ${o.listenPort}
log_level = "info"

[network]
# Identical on every authority of the network: they sign one document together.
threshold = ${threshold}
layers = 3
epoch_length = ${o.epochLength}             # nodes' and clients' [directory] must match these three
epoch_origin = ${o.epochOrigin}
grace = ${o.grace}

# Every authority of the network, this one included.
${authorityTables('authorities', o.authority)}`;
}

export function clientTemplate(o: { dataDir: string; authority: AuthoritySpec[]; threshold?: number; homeGateway: string; smtpPort: number }): string {
  const threshold = o.threshold ?? Math.min(2, Math.max(1, o.authority.length));
  const keys = o.authority.filter((a) => 'public_key' in a.key).map((a) => (a.key as { public_key: string }).public_key);
  return `# postmix client (written by \`postmix client init\`; docs/client.md lists every key, and
# docs/mail-clients.md sets up msmtp, mutt and Thunderbird). Check it with:
# postmix client run --check -c <this file>
# Every key can also be set from the environment: POSTMIX_CLIENT_<SECTION>__<KEY>=value.

data_dir = ${q(o.dataDir)}   # outbox.sqlite: messages, fragments, SURB keys, the token wallet

[smtp]
# Where your mail client submits (loopback only unless allow_remote).
host = "127.0.0.1"
port = ${o.smtpPort}
# allow_remote = true            # mail clients on other hosts (host = "0.0.0.0"): needs user and
#                                # password; STARTTLS is then offered, and AUTH only after it
# tls_cert = "/etc/ssl/certs/submission.pem"    # with allow_remote: your certificate (chain) and
# tls_key = "/etc/ssl/private/submission.key"   # key; unset: a self-signed pair made in data_dir

[smarthost]
# Your provider's submission server, for recipients whose domain has no gateway. Empty: no
# fallback (those recipients are refused).
host = ""
port = 587
require_tls = true
# user = "you@provider.example"
# password = "..."

[routing]
overlay_only = false             # true: refuse rather than fall back to SMTP, for everyone
overlay_only_recipients = []     # addresses or "@domain"s that must never go by SMTP

[network]
document = ${q(`${o.dataDir}/document.bin`)}   # the cached signed network document
authority_urls = [${o.authority.map((a) => q(a.url)).join(', ')}]
authorities = [${keys.map(q).join(', ')}]   # the authorities' identity public keys (base64)
threshold = ${threshold}
home_gateway = ${q(o.homeGateway)}   # your mailbox's gateway: a domain it serves; "" = the first
`;
}

function writeConfig(path: string, text: string, force: boolean): void {
  if (existsSync(path) && !force) throw new InitError(`${path} exists; give --force to overwrite it`);
  mkdirSync(dirname(path), { recursive: true });
  writeFileSync(path, text, { mode: 0o640 });
}

class InitError extends Error {}

function done(role: Role, config: string, keys: string | null, nodeId: string | null): void {
  process.stdout.write(`wrote ${config}${keys ? ` and keys in ${keys}${nodeId ? ` (node id ${nodeId})` : ''}` : ''}\n`);
  process.stdout.write(`check it: postmix ${role} run --check -c ${config}\n`);
}

function fail(role: Role, e: unknown): void {
  process.stderr.write(`postmix ${role} init: ${(e as Error).message}\n`);
  process.exitCode = e instanceof InitError ? 73 /* EX_CANTCREAT */ : e instanceof InvalidArgumentError ? EXIT.usage : exitCodeOf(e);
}

function epochOptions(c: Command): Command {
  return c
    .addOption(
      new Option('--epoch-length <s>', "the network's epoch length, seconds").default(DEFAULT_EPOCH.length).argParser(intOpt('--epoch-length', 1, 604_800)),
    )
    .addOption(
      new Option('--epoch-origin <unix>', 'start of epoch 0, unix seconds').default(DEFAULT_EPOCH.origin).argParser(intOpt('--epoch-origin', 0, 0xffffffff)),
    )
    .addOption(
      new Option('--grace <s>', `seconds a document stays valid past its epoch (default: ${DEFAULT_EPOCH.grace}, at most the epoch length)`).argParser(
        intOpt('--grace', 0, 604_800),
      ),
    );
}

const authorityHelp = 'a directory authority: URL=KEY, KEY its base64 identity public key or a path to its identity.pub (repeat for each)';

/** Adds `init` to a role's command. */
export function addInit(parent: Command, role: Role): void {
  const c = parent
    .command('init')
    .description(`write a commented ${role} config file${role === 'client' ? '' : ' and the keys'} for a new ${role === 'client' ? 'client' : 'node'}`);
  c.option('-f, --force', 'overwrite existing files (existing keys are lost)', false);
  c.option('--threshold <n>', 'authority signatures a document needs (default: 2, or 1 with one authority)', intOpt('--threshold', 1, 64));
  if (role === 'mixnode' || role === 'gateway') {
    const isMix = role === 'mixnode';
    c.requiredOption('-c, --config <file>', 'the config file to write', `/etc/postmix/${role}.toml`)
      .option('--data-dir <dir>', 'state directory (keys/ inside)', `/var/lib/postmix/${role}`)
      .option('--listen <multiaddr>', 'TCP multiaddr to bind', multiaddrOpt('--listen'))
      .option('--announce <multiaddr>', 'address to publish (repeat; default: listen)', multiaddrOpt('--announce'))
      .option('--authority <URL=KEY>', `${authorityHelp} (required)`, parseAuthority, []);
    if (isMix) c.option('--layer <n>', 'preferred layer, 0 for none', intOpt('--layer', 0, 16), 0);
    else
      c.requiredOption('--domain <domain>', 'a mail domain this gateway serves (repeat)', (v: string, p: string[] = []) => [...p, v.toLowerCase()])
        .option('--mx-host <host>', "the MX's listener for the gateway", '127.0.0.1')
        .option('--mx-port <port>', 'its port', intOpt('--mx-port', 1, 65535), 10026)
        .option('--mx-protocol <p>', 'smtp or lmtp', 'smtp');
    epochOptions(c).action(
      (o: HopInit & { config: string; force: boolean; layer: number; domain: string[]; mxHost: string; mxPort: number; mxProtocol: string }) => {
        try {
          if (o.authority.length === 0) throw new InvalidArgumentError("give the network's authorities: --authority URL=KEY (repeat)");
          const dataDir = resolve(expandHome(o.dataDir));
          const listen = o.listen ?? [isMix ? '/ip4/127.0.0.1/tcp/4001' : '/ip4/127.0.0.1/tcp/4101'];
          if (!isMix && !['smtp', 'lmtp'].includes(o.mxProtocol)) throw new InvalidArgumentError(`--mx-protocol must be smtp or lmtp, got ${o.mxProtocol}`);
          const grace = graceOf(o);
          const text = isMix ? mixnodeTemplate({ ...o, grace, dataDir, listen }) : gatewayTemplate({ ...o, grace, dataDir, listen });
          const config = resolve(expandHome(o.config));
          if (existsSync(config) && !o.force) throw new InitError(`${config} exists; give --force to overwrite it`);
          const keys = `${dataDir}/keys`;
          // the node makes its per-epoch Sphinx keys itself; init makes the identity
          const { identity } = KeyStore.create(keys, { force: o.force, epochs: [] });
          writeConfig(config, text, true);
          done(role, config, keys, hex(identity.nodeId));
        } catch (e) {
          fail(role, e);
        }
      },
    );
  } else if (role === 'directory') {
    c.requiredOption('-c, --config <file>', 'the config file to write', '/etc/postmix/directory.toml')
      .option('--data-dir <dir>', 'state directory (keys/ and directory.sqlite)', '/var/lib/postmix/directory')
      .option('--listen-host <host>', 'HTTP listen address', '127.0.0.1')
      .option('--listen-port <port>', 'HTTP port', intOpt('--listen-port', 0, 65535), 8080)
      .requiredOption('--url <url>', "this authority's own base URL, as the others reach it")
      .option('--authority <URL=KEY>', 'another authority of the network (repeat)', parseAuthority, []);
    epochOptions(c).action(
      (
        o: EpochOpts & {
          config: string;
          force: boolean;
          dataDir: string;
          listenHost: string;
          listenPort: number;
          url: string;
          authority: AuthoritySpec[];
          threshold?: number;
        },
      ) => {
        try {
          const dataDir = resolve(expandHome(o.dataDir));
          const config = resolve(expandHome(o.config));
          if (existsSync(config) && !o.force) throw new InitError(`${config} exists; give --force to overwrite it`);
          const keys = `${dataDir}/keys`;
          const { identity } = KeyStore.create(keys, { force: o.force, epochs: [] });
          const self: AuthoritySpec = { url: o.url.replace(/\/+$/, ''), key: { public_key_file: `${keys}/identity.pub` } };
          const text = directoryTemplate({ ...o, grace: graceOf(o), identityDir: keys, dataDir, authority: [self, ...o.authority] });
          writeConfig(config, text, true);
          done(role, config, keys, null);
          process.stdout.write(
            `identity public key (give it to the other authorities and to every node): ${Buffer.from(identity.publicKey).toString('base64')}\n`,
          );
        } catch (e) {
          fail(role, e);
        }
      },
    );
  } else {
    c.option('-c, --config <file>', 'the config file to write', '~/.config/postmix/client.toml')
      .option('--data-dir <dir>', 'state directory (the outbox)', '~/.local/share/postmix')
      .option('--smtp-port <port>', 'local submission port', intOpt('--smtp-port', 1, 65535), 2525)
      .option('--home-gateway <domain>', 'your mailbox gateway: a domain it serves', '')
      .option('--authority <URL=KEY>', `${authorityHelp}; KEY must be base64 here`, parseAuthority, [])
      .action(
        (o: { config: string; force: boolean; dataDir: string; smtpPort: number; homeGateway: string; authority: AuthoritySpec[]; threshold?: number }) => {
          try {
            const file = o.authority.find((a) => !('public_key' in a.key));
            if (file) throw new InvalidArgumentError(`--authority ${file.url}: give the base64 key itself (the client config takes keys inline)`);
            const config = resolve(expandHome(o.config));
            const dataDir = resolve(expandHome(o.dataDir));
            writeConfig(config, clientTemplate({ ...o, dataDir }), o.force);
            // made now, private: the user unit may write only there (ProtectSystem=strict)
            mkdirSync(dataDir, { recursive: true, mode: 0o700 });
            done(role, config, null, null);
          } catch (e) {
            fail(role, e);
          }
        },
      );
  }
}
