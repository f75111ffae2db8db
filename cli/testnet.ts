import { Command, InvalidArgumentError, Option } from 'commander';
import { resolve } from 'node:path';
import { durationOption } from './units.ts';

function num(name: string, min: number, max: number) {
  return (v: string): number => {
    const n = Number(v);
    if (!Number.isFinite(n) || n < min || n > max) throw new InvalidArgumentError(`${name} must be a number in ${min}..${max}`);
    return n;
  };
}

function int(name: string, min: number, max: number) {
  return (v: string): number => {
    const n = Number(v);
    if (!Number.isInteger(n) || n < min || n > max) throw new InvalidArgumentError(`${name} must be an integer in ${min}..${max}`);
    return n;
  };
}

/** '--kill-mix' → 'killMix' (commander's option key) */
const camel = (flag: string): string => flag.replace(/^--/, '').replace(/-([a-z])/g, (_, c: string) => c.toUpperCase());

export function registerTestnet(program: Command): void {
  program
    .command('testnet')
    .description(
      'start a whole postmix network on loopback (3 directory authorities, layers of mix nodes, 2 gateways with MXs, ' +
        'a domain without a gateway behind an SMTP relay, 2 clients with tokens), deliver real mail, and report',
    )
    .option('--messages <n>', 'overlay messages each client sends to the other (plus one each to the no-gateway domain)', int('--messages', 0, 1000), 2)
    .option('--size <bytes>', 'size of each message', int('--size', 200, 10_000_000), 6000)
    .option(
      '--unauthorized <n>',
      'also send N messages to bob from mallory, whose tokens are forged: the gateway must refuse them',
      int('--unauthorized', 0, 100),
      0,
    )
    .option('--kill-mix <k>', 'SIGKILL K mix processes once packets are in the mixnet; every message must still arrive', int('--kill-mix', 0, 100), 0)
    .option(
      '--restart-gateway <duration>',
      "SIGKILL beta.test's gateway while fragments are in flight and restart it after DURATION (e.g. 2s, 500ms); every message must arrive exactly once",
      durationOption('--restart-gateway', 0.001, 600),
    )
    .option(
      '--mx-outage <duration>',
      "take alpha.test's MX down before sending, for at least DURATION (e.g. 8s) and until its gateway has failed a hand-off; every message must arrive after it returns",
      durationOption('--mx-outage', 1, 3600),
      0,
    )
    .option(
      '--restart-client <duration>',
      "SIGKILL alice's client while its fragments are in flight (never mid-submission) and restart it after DURATION (e.g. 1500ms); nothing it accepted may be lost or duplicated",
      durationOption('--restart-client', 0.001, 600),
    )
    .option(
      '--authority-outage <duration>',
      'take every directory authority down (SIGKILL) at an epoch boundary for at least DURATION (more than two epochs, e.g. 25s with --epoch-length 10s) ' +
        'and until a message sent after the held document would once have expired has arrived; the overlay messages are sent spread over the outage; ' +
        'then every node and client must follow the epoch of the next document',
      durationOption('--authority-outage', 1, 24 * 3600),
      0,
    )
    .option(
      '--soak <duration>',
      "steady mail for DURATION (e.g. 2m, 30m; a bare number is seconds): the --messages spread evenly over it; reports each daemon's resident memory at both ends " +
        "and each mix's and gateway's key files and replay sets, and fails unless epoch expiry keeps them bounded",
      durationOption('--soak', 30, 7 * 24 * 3600),
      0,
    )
    .option(
      '--capture [dir]',
      'capture every frame on every link (POSTMIX_LINK_CAPTURE in each node: lengths and a timestamp per frame) and fail unless all have one length; with DIR, keep the capture there for `postmix sim analyze DIR`',
      false,
    )
    .option(
      '--replay <n>',
      're-inject N captured frames into a mix from the node that sent them; each must be dropped as a replay (implies --capture)',
      int('--replay', 0, 64),
      0,
    )
    .addOption(
      new Option('--mta <kind>', 'the MXs and the fallback relay: embedded SMTP servers writing Maildirs, or real Postfix')
        .choices(['embedded', 'postfix'])
        .default('embedded'),
    )
    .option(
      '--netns',
      'run every node in a Linux network namespace of its own, with its own address on a bridge (veth pairs), as on separate hosts; needs root and iproute2; removed at exit',
      false,
    )
    .option(
      '--link-delay <ms>',
      "with --netns: every node's link delays what it sends by MS milliseconds (tc netem; a hop between two nodes gets it once)",
      (v: string) => num('--link-delay', 0, 10_000)(v.replace(/ms$/, '')),
      0,
    )
    .option(
      '--link-loss <pct>',
      "with --netns: every node's link drops PCT % of the packets it sends (tc netem, or nftables where the kernel has no netem)",
      (v: string) => num('--link-loss', 0, 50)(v.replace(/%$/, '')),
      0,
    )
    .option('--layers <n>', 'mix layers', int('--layers', 1, 8), 3)
    .option('--layer-size <n>', 'mixes per layer', int('--layer-size', 1, 10), 3)
    .option('--epoch-length <duration>', 'epoch length (short, so the run crosses epochs), e.g. 20s', durationOption('--epoch-length', 5, 3600), 20)
    .option('--mean-delay <duration>', 'mean per-hop mixing delay 1/μ, e.g. 50ms or 0.05s', durationOption('--mean-delay', 0.001, 10), 0.05)
    .option('--lambda-p <r>', "λ_P: each client's Poisson sending rate per second (real packets replace decoys in it)", num('--lambda-p', 0.01, 1000), 10)
    .option('--lambda-l <r>', "λ_L: each client's loop cover rate per second", num('--lambda-l', 0, 1000), 1)
    .option('--lambda-d <r>', "λ_D: each client's drop cover rate per second", num('--lambda-d', 0, 1000), 1)
    .option('--lambda-m <r>', "λ_M: each mix's loop cover rate per second", num('--lambda-m', 0, 1000), 0.5)
    .option('--lambda-g <r>', "λ_G: each gateway's loop cover rate per second (in the document; gateways do not emit it yet)", num('--lambda-g', 0, 1000), 0.5)
    .option(
      '--payload-size <bytes>',
      'Sphinx payload size of the network document (the packet is this plus the header)',
      int('--payload-size', 512, 32 * 1024),
      2048,
    )
    .option('--timeout <duration>', 'give up waiting for deliveries after this long, e.g. 240s or 4m', durationOption('--timeout', 10, 3600), 240)
    .option(
      '--serve',
      "bring the network up and keep it running for your own mail client (no batch run): print each user's SMTP submission settings and Maildir, " +
        'then wait for SIGINT/SIGTERM and stop everything (Postfix included; the run directory goes unless --keep)',
      false,
    )
    .option('--tokens <n>', 'with --serve: tokens each user holds for the other (one per message through the overlay)', int('--tokens', 1, 10_000), 50)
    .option(
      '--json',
      'print the final report as one JSON object on stdout (progress goes to stderr); with --serve, one JSON ready line (README "postmix testnet --serve")',
      false,
    )
    .option('--keep <dir>', 'keep the run directory (configs, keys, logs, Maildirs) in DIR')
    .option('--log-level <level>', 'log level of every node (their logs are in the run directory)', 'info')
    .addHelpText(
      'after',
      '\nExit status: 0 only when every message went where it should, byte-identical and exactly once;\n' +
        '1 otherwise. With --serve: 0 after a clean stop by SIGINT/SIGTERM, 1 if the network failed to come up.\n' +
        'See README "What postmix testnet does" for the topology.',
    )
    .action(async (o: Record<string, unknown>, cmd: Command) => {
      const { runTestnet, TESTNET_DEFAULTS } = await import('./testnet/run.ts');
      const common = {
        ...TESTNET_DEFAULTS,
        json: Boolean(o.json),
        ...(typeof o.keep === 'string' ? { keep: o.keep } : {}),
        mta: o.mta as 'embedded' | 'postfix',
        layers: o.layers as number,
        layerSize: o.layerSize as number,
        epochLength: Math.round(o.epochLength as number),
        meanDelayMs: Math.round((o.meanDelay as number) * 1000),
        lambdaP: o.lambdaP as number,
        lambdaL: o.lambdaL as number,
        lambdaD: o.lambdaD as number,
        lambdaM: o.lambdaM as number,
        lambdaG: o.lambdaG as number,
        payloadSize: o.payloadSize as number,
        logLevel: o.logLevel as string,
        ...(o.netns ? { netns: { delayMs: o.linkDelay as number, lossPct: o.linkLoss as number } } : {}),
      };
      if (!o.netns && (cmd.getOptionValueSource('linkDelay') === 'cli' || cmd.getOptionValueSource('linkLoss') === 'cli'))
        cmd.error('error: --link-delay and --link-loss shape the links between namespaces: add --netns', { exitCode: 64 });
      if (o.netns) {
        const { netnsUnavailable } = await import('./testnet/netns.ts');
        const why = netnsUnavailable();
        if (why) cmd.error(`error: --netns ${why}`, { exitCode: 77 });
      }
      if (o.serve) {
        const { serveTestnet, NOT_WITH_SERVE } = await import('./testnet/serve.ts');
        const bad = NOT_WITH_SERVE.filter((f) => cmd.getOptionValueSource(camel(f)) === 'cli');
        if (bad.length > 0)
          cmd.error(`error: ${bad.join(', ')} ${bad.length > 1 ? 'are batch-run flags' : 'is a batch-run flag'}, not for --serve`, { exitCode: 64 });
        process.exitCode = await serveTestnet({ ...common, tokens: o.tokens as number });
        return;
      }
      if (cmd.getOptionValueSource('tokens') === 'cli')
        cmd.error('error: --tokens is for --serve (the batch run gives each user what its messages need)', { exitCode: 64 });
      const report = await runTestnet({
        ...common,
        messages: o.messages as number,
        size: o.size as number,
        unauthorized: o.unauthorized as number,
        killMix: o.killMix as number,
        restartGatewayMs: typeof o.restartGateway === 'number' ? Math.round(o.restartGateway * 1000) : 0,
        mxOutageS: o.mxOutage as number,
        restartClientMs: typeof o.restartClient === 'number' ? Math.round(o.restartClient * 1000) : 0,
        authorityOutageS: o.authorityOutage as number,
        soakS: o.soak as number,
        capture: Boolean(o.capture),
        ...(typeof o.capture === 'string' ? { captureDir: resolve(o.capture) } : {}),
        replay: o.replay as number,
        timeoutS: Math.round(o.timeout as number),
      });
      process.exitCode = report.ok ? 0 : 1;
    });
}
