/**
 * An authority's durable state (SQLite through better-sqlite3, WAL mode): accepted descriptors,
 * its own and its peers' votes, its document body and the signatures collected over it, and the
 * published documents. Everything the authority needs after a restart is here.
 */
import Database from 'better-sqlite3';

export interface StoredDescriptor {
  readonly epoch: number;
  readonly nodeId: Uint8Array;
  readonly digest: Uint8Array;
  readonly bytes: Uint8Array;
  readonly receivedAt: number;
}

const SCHEMA = `
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS descriptors (
  epoch INTEGER NOT NULL, node_id BLOB NOT NULL, digest BLOB NOT NULL, bytes BLOB NOT NULL,
  received_at INTEGER NOT NULL, PRIMARY KEY (epoch, node_id));
CREATE TABLE IF NOT EXISTS votes (
  epoch INTEGER NOT NULL, authority BLOB NOT NULL, bytes BLOB NOT NULL, PRIMARY KEY (epoch, authority));
CREATE TABLE IF NOT EXISTS bodies (epoch INTEGER PRIMARY KEY, body BLOB NOT NULL, digest BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS signatures (
  epoch INTEGER NOT NULL, authority BLOB NOT NULL, signature BLOB NOT NULL, PRIMARY KEY (epoch, authority));
CREATE TABLE IF NOT EXISTS documents (
  epoch INTEGER PRIMARY KEY, bytes BLOB NOT NULL, signers INTEGER NOT NULL, published_at INTEGER NOT NULL);
`;

const u8 = (b: Buffer): Uint8Array => new Uint8Array(b.buffer, b.byteOffset, b.byteLength).slice();
const buf = (u: Uint8Array): Buffer => Buffer.from(u.buffer, u.byteOffset, u.byteLength);

export class AuthorityStore {
  private readonly db: Database.Database;

  constructor(path: string) {
    this.db = new Database(path);
    this.db.pragma('journal_mode = WAL');
    this.db.pragma('synchronous = NORMAL');
    this.db.exec(SCHEMA);
    const v = this.db.prepare('SELECT value FROM meta WHERE key = ?').get('schema') as { value: string } | undefined;
    if (!v) this.db.prepare('INSERT INTO meta (key, value) VALUES (?, ?)').run('schema', '1');
    else if (v.value !== '1') throw new Error(`${path}: unknown schema version ${v.value}`);
  }

  close(): void {
    if (this.db.open) this.db.close();
  }

  getDescriptor(epoch: number, nodeId: Uint8Array): StoredDescriptor | undefined {
    const r = this.db.prepare('SELECT * FROM descriptors WHERE epoch = ? AND node_id = ?').get(epoch, buf(nodeId)) as
      { epoch: number; node_id: Buffer; digest: Buffer; bytes: Buffer; received_at: number } | undefined;
    return r && { epoch: r.epoch, nodeId: u8(r.node_id), digest: u8(r.digest), bytes: u8(r.bytes), receivedAt: r.received_at };
  }

  descriptors(epoch: number): StoredDescriptor[] {
    const rows = this.db.prepare('SELECT * FROM descriptors WHERE epoch = ? ORDER BY node_id').all(epoch) as {
      epoch: number;
      node_id: Buffer;
      digest: Buffer;
      bytes: Buffer;
      received_at: number;
    }[];
    return rows.map((r) => ({ epoch: r.epoch, nodeId: u8(r.node_id), digest: u8(r.digest), bytes: u8(r.bytes), receivedAt: r.received_at }));
  }

  countDescriptors(epoch: number): number {
    return (this.db.prepare('SELECT COUNT(*) AS n FROM descriptors WHERE epoch = ?').get(epoch) as { n: number }).n;
  }

  putDescriptor(d: StoredDescriptor): void {
    this.db
      .prepare('INSERT INTO descriptors (epoch, node_id, digest, bytes, received_at) VALUES (?, ?, ?, ?, ?)')
      .run(d.epoch, buf(d.nodeId), buf(d.digest), buf(d.bytes), d.receivedAt);
  }

  getVote(epoch: number, authority: Uint8Array): Uint8Array | undefined {
    const r = this.db.prepare('SELECT bytes FROM votes WHERE epoch = ? AND authority = ?').get(epoch, buf(authority)) as { bytes: Buffer } | undefined;
    return r && u8(r.bytes);
  }

  putVote(epoch: number, authority: Uint8Array, bytes: Uint8Array): void {
    this.db.prepare('INSERT OR IGNORE INTO votes (epoch, authority, bytes) VALUES (?, ?, ?)').run(epoch, buf(authority), buf(bytes));
  }

  votes(epoch: number): { authority: Uint8Array; bytes: Uint8Array }[] {
    return (this.db.prepare('SELECT authority, bytes FROM votes WHERE epoch = ?').all(epoch) as { authority: Buffer; bytes: Buffer }[]).map((r) => ({
      authority: u8(r.authority),
      bytes: u8(r.bytes),
    }));
  }

  getBody(epoch: number): { body: Uint8Array; digest: Uint8Array } | undefined {
    const r = this.db.prepare('SELECT body, digest FROM bodies WHERE epoch = ?').get(epoch) as { body: Buffer; digest: Buffer } | undefined;
    return r && { body: u8(r.body), digest: u8(r.digest) };
  }

  putBody(epoch: number, body: Uint8Array, digest: Uint8Array): void {
    this.db.prepare('INSERT OR IGNORE INTO bodies (epoch, body, digest) VALUES (?, ?, ?)').run(epoch, buf(body), buf(digest));
  }

  signatures(epoch: number): { authorityKey: Uint8Array; signature: Uint8Array }[] {
    return (this.db.prepare('SELECT authority, signature FROM signatures WHERE epoch = ?').all(epoch) as { authority: Buffer; signature: Buffer }[]).map(
      (r) => ({ authorityKey: u8(r.authority), signature: u8(r.signature) }),
    );
  }

  putSignature(epoch: number, authority: Uint8Array, signature: Uint8Array): void {
    this.db.prepare('INSERT OR IGNORE INTO signatures (epoch, authority, signature) VALUES (?, ?, ?)').run(epoch, buf(authority), buf(signature));
  }

  getDocument(epoch: number): { bytes: Uint8Array; signers: number; publishedAt: number } | undefined {
    const r = this.db.prepare('SELECT bytes, signers, published_at FROM documents WHERE epoch = ?').get(epoch) as
      { bytes: Buffer; signers: number; published_at: number } | undefined;
    return r && { bytes: u8(r.bytes), signers: r.signers, publishedAt: r.published_at };
  }

  putDocument(epoch: number, bytes: Uint8Array, signers: number, publishedAt: number): void {
    this.db
      .prepare(
        'INSERT INTO documents (epoch, bytes, signers, published_at) VALUES (?, ?, ?, ?) ' +
          'ON CONFLICT (epoch) DO UPDATE SET bytes = excluded.bytes, signers = excluded.signers, published_at = excluded.published_at',
      )
      .run(epoch, buf(bytes), signers, publishedAt);
  }

  /** The newest published document's epoch, or the newest up to `atMost`. */
  latestDocumentEpoch(atMost = 0xffffffff): number | undefined {
    const r = this.db.prepare('SELECT MAX(epoch) AS e FROM documents WHERE epoch <= ?').get(atMost) as { e: number | null };
    return r.e ?? undefined;
  }

  /** Drops descriptors, votes and signatures of epochs before `epoch` (documents are kept). */
  prune(epoch: number): void {
    for (const t of ['descriptors', 'votes', 'signatures', 'bodies']) this.db.prepare(`DELETE FROM ${t} WHERE epoch < ?`).run(epoch);
  }
}
