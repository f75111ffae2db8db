import { describe, expect, it } from 'vitest';
import { addressesIn, cutAtDot, emptyMessageProblem, headerValues, recipientsFromHeaders, removeBcc, splitHeader, stripHeaders } from './headers.ts';
import { parseSendmailArgs, prepareSendmail } from './sendmail.ts';

const enc = (s: string) => new Uint8Array(Buffer.from(s, 'latin1'));
const dec = (b: Uint8Array) => Buffer.from(b).toString('latin1');

const MSG =
  'Received: from laptop.home (laptop.home [192.168.1.7])\r\n\tby mail.example with ESMTP; Mon, 1 Jan 2026\r\n' +
  'From: Alice <alice@sender.test>\r\n' +
  'To: "Bob, B." <bob@overlay.test>, carol@plain.test\r\n' +
  'Cc: dave@plain.test (Dave)\r\n' +
  'Bcc: eve@plain.test\r\n' +
  'X-Mailer: Thunderbird 128\r\n' +
  'User-Agent: Mutt/2.2\r\n' +
  'Message-ID: <1234.5678@laptop.home>\r\n' +
  'Subject: test\r\n' +
  '\r\n' +
  'Received: this line is in the body and stays\r\n' +
  '\r\nX-Mailer: so is this\r\n';

describe('header handling never touches the body', () => {
  it('splits at the first empty line (CRLF or LF)', () => {
    const [h, b] = splitHeader(enc(MSG));
    expect(dec(h).endsWith('Subject: test\r\n\r\n')).toBe(true);
    expect(dec(b).startsWith('Received: this line')).toBe(true);
    const [h2, b2] = splitHeader(enc('A: 1\nB: 2\n\nbody\n'));
    expect([dec(h2), dec(b2)]).toEqual(['A: 1\nB: 2\n\n', 'body\n']);
  });

  it('strips Received (folded), X-Mailer, User-Agent and the Message-ID host part when configured', () => {
    const out = dec(stripHeaders(enc(MSG), { received: true, xMailer: true, userAgent: true, messageIdHost: 'sender.test' }));
    expect(out).not.toMatch(/laptop/);
    expect(out).not.toMatch(/X-Mailer: Thunderbird/);
    expect(out).toMatch(/X-Mailer: so is this/);
    expect(out).not.toMatch(/User-Agent/);
    expect(out).toMatch(/Message-ID: <1234\.5678@sender\.test>\r\n/);
    // the body is byte-identical
    expect(out.slice(out.indexOf('\r\n\r\n'))).toBe(MSG.slice(MSG.indexOf('\r\n\r\n')));
    expect(out.startsWith('From: Alice <alice@sender.test>\r\n')).toBe(true);
  });

  it('is the identity when nothing is configured', () => {
    const m = enc(MSG);
    expect(stripHeaders(m, {})).toBe(m);
  });

  it('finds recipients for -t in To, Cc and Bcc, and removes Bcc', () => {
    expect(recipientsFromHeaders(enc(MSG))).toEqual(['bob@overlay.test', 'carol@plain.test', 'dave@plain.test', 'eve@plain.test']);
    const nb = dec(removeBcc(enc(MSG)));
    expect(nb).not.toMatch(/Bcc:/);
    expect(nb.slice(nb.indexOf('\r\n\r\n'))).toBe(MSG.slice(MSG.indexOf('\r\n\r\n')));
    expect(headerValues(enc(MSG), 'received')[0]).toMatch(/^from laptop\.home .* by mail\.example/);
    expect(addressesIn(['Alice <alice@sender.test>'])).toEqual(['alice@sender.test']);
  });

  it('without -i a lone "." ends the input', () => {
    expect(dec(cutAtDot(enc('A: 1\n\nline\n.\nafter\n')))).toBe('A: 1\n\nline\n');
    expect(dec(cutAtDot(enc('A: 1\n\n..x\n')))).toBe('A: 1\n\n..x\n');
  });

  it('parses sendmail flags as mutt and cron pass them', () => {
    expect(parseSendmailArgs(['-oem', '-oi', '-f', 'a@x', '--', 'b@y'])).toEqual({
      t: false,
      i: true,
      v: false,
      from: 'a@x',
      rcpts: ['b@y'],
      config: undefined,
    });
    const p = prepareSendmail(parseSendmailArgs(['-t', '-i']), enc(MSG));
    expect([p.to, p.from]).toEqual([['bob@overlay.test', 'carol@plain.test', 'dave@plain.test', 'eve@plain.test'], 'alice@sender.test']);
    expect(dec(p.raw)).not.toMatch(/Bcc/);
    expect(parseSendmailArgs(['-t', '-i', '-C', '/c.toml'])).toEqual({ t: true, i: true, v: false, from: undefined, rcpts: [], config: '/c.toml' });
    expect(parseSendmailArgs(['-v', '-t', '-i']).v).toBe(true);
  });
});

describe('emptyMessageProblem', () => {
  it('names 0 bytes, blank lines only and a missing header section; a message with a header passes', () => {
    expect(emptyMessageProblem(enc(''))).toBe('empty message (0 bytes)');
    expect(emptyMessageProblem(enc('\r\n'))).toBe('empty message (2 bytes of blank lines only)');
    expect(emptyMessageProblem(enc('\r\nbody\r\n'))).toBe('no header section (the first line is empty)');
    expect(emptyMessageProblem(enc('hello there\r\n'))).toBe('no header section (the first line is not a header field)');
    expect(emptyMessageProblem(enc('Subject: x\r\n\r\ny\r\n'))).toBeNull();
    expect(emptyMessageProblem(enc('From: a@b\n'))).toBeNull(); // header only, no body: a message
  });
});
