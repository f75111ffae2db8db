import { describe, expect, it } from 'vitest';
import { SubmissionGate } from './submit.ts';

describe('SubmissionGate: a client is never killed mid-transaction, and no transaction starts while it is down', () => {
  it('refuses to take a client down while a transaction is under way', async () => {
    const g = new SubmissionGate();
    await g.enter('alice');
    expect(g.takeDown('alice')).toBe(false);
    expect(g.takeDown('bob')).toBe(true);
    g.leave('alice');
    expect(g.takeDown('alice')).toBe(true);
  });

  it('holds a transaction back until the client is brought up again', async () => {
    const g = new SubmissionGate();
    expect(g.takeDown('alice')).toBe(true);
    let entered = false;
    const entering = g.enter('alice').then(() => (entered = true));
    await new Promise((r) => setTimeout(r, 250));
    expect(entered).toBe(false);
    g.bringUp('alice');
    await entering;
    expect(entered).toBe(true);
    expect(g.takeDown('alice')).toBe(false);
  });
});
