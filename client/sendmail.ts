/**
 * `postmix sendmail`: the sendmail command line as mutt, cron and scripts use it. Flags:
 * -t (recipients from To/Cc/Bcc; Bcc is then removed from the header), -i / -oi (a line with a
 * single '.' does not end the message), -f / -r ADDR (envelope sender), -C FILE (client config),
 * -v (verbose: the path each recipient takes, and why, on stderr); other sendmail flags (-oem,
 * -odb, -F NAME ...) are accepted and ignored. The message goes to the running client's SMTP
 * intake; the body is never altered.
 */
import { addressesIn, cutAtDot, headerValues, recipientsFromHeaders, removeBcc } from './headers.ts';

export interface SendmailArgs {
  readonly t: boolean;
  readonly i: boolean;
  /** -v: tell each recipient's path on stderr */
  readonly v: boolean;
  readonly from: string | undefined;
  readonly config: string | undefined;
  readonly rcpts: string[];
}

export function parseSendmailArgs(args: readonly string[]): SendmailArgs {
  let t = false;
  let i = false;
  let v = false;
  let from: string | undefined;
  let config: string | undefined;
  const rcpts: string[] = [];
  for (let k = 0; k < args.length; k++) {
    const a = args[k]!;
    if (a === '--') {
      rcpts.push(...args.slice(k + 1));
      break;
    }
    if (a === '-t') t = true;
    else if (a === '-i' || a === '-oi') i = true;
    else if (a === '-v') v = true;
    else if (a === '-f' || a === '-r') from = args[++k];
    else if ((a.startsWith('-f') || a.startsWith('-r')) && a.length > 2) from = a.slice(2);
    else if (a === '-C' || a === '--config') config = args[++k];
    else if (['-F', '-O', '-B', '-N', '-R', '-V', '-X', '-L', '-p', '-q'].includes(a)) k++;
    else if (a.startsWith('-')) continue;
    else rcpts.push(a);
  }
  return { t, i, v, from, config, rcpts };
}

/** Applies -i/-t to the raw input: the message to submit, its recipients and envelope sender. */
export function prepareSendmail(a: SendmailArgs, input: Uint8Array): { raw: Uint8Array; to: string[]; from: string } {
  let raw = a.i ? input : cutAtDot(input);
  const to = [...a.rcpts];
  if (a.t) {
    to.push(...recipientsFromHeaders(raw));
    raw = removeBcc(raw);
  }
  const from = a.from ?? addressesIn(headerValues(raw, 'from'))[0] ?? '';
  return { raw, to: [...new Set(to.map((x) => x.toLowerCase()))], from };
}
