/**
 * Keeps docs/packet-path.md true: every source file it names exists, and every name written
 * after a file (up to the next file named in the same section) is defined in that file: a
 * top-level function, class, interface, type, enum or variable, or, written `Owner.member`, a
 * member of that class, enum or object literal. Declarations are read with TypeScript's parser,
 * so a comment or an import that merely mentions a name does not count. Paths written
 * `b52d39e:path` name the older tree and are not checked here. The count in "The files today"
 * must be the number of files in its table.
 */
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import ts from 'typescript';
import { describe, expect, it } from 'vitest';

const ROOT = new URL('..', import.meta.url).pathname;
const GUIDE = 'docs/packet-path.md';
const text = readFileSync(join(ROOT, GUIDE), 'utf8');

const PATH = /^[\w./-]+\.(ts|md)$/;
const NAME = /^[A-Za-z_$][\w$]*(\.[A-Za-z_$][\w$]*)?$/;

interface Declared {
  readonly names: Set<string>;
  readonly members: Map<string, Set<string>>;
}

const declaredCache = new Map<string, Declared>();

function nameOf(n: ts.PropertyName | ts.BindingName | undefined): string | undefined {
  if (!n) return undefined;
  if (ts.isIdentifier(n) || ts.isPrivateIdentifier(n) || ts.isStringLiteral(n)) return n.text;
  return undefined;
}

/** What a source file itself defines at its top level (re-exports and imports are not definitions). */
function declared(file: string): Declared {
  const hit = declaredCache.get(file);
  if (hit) return hit;
  const sf = ts.createSourceFile(file, readFileSync(join(ROOT, file), 'utf8'), ts.ScriptTarget.Latest, true);
  const names = new Set<string>();
  const members = new Map<string, Set<string>>();
  const addMembers = (owner: string, ms: Iterable<string | undefined>) => {
    const set = members.get(owner) ?? new Set<string>();
    for (const m of ms) if (m) set.add(m);
    members.set(owner, set);
  };
  for (const s of sf.statements) {
    if ((ts.isFunctionDeclaration(s) || ts.isInterfaceDeclaration(s) || ts.isTypeAliasDeclaration(s)) && s.name) names.add(s.name.text);
    else if (ts.isClassDeclaration(s) && s.name) {
      names.add(s.name.text);
      addMembers(
        s.name.text,
        s.members.map((m) => nameOf(m.name)),
      );
    } else if (ts.isEnumDeclaration(s)) {
      names.add(s.name.text);
      addMembers(
        s.name.text,
        s.members.map((m) => nameOf(m.name)),
      );
    } else if (ts.isVariableStatement(s)) {
      for (const d of s.declarationList.declarations) {
        const n = nameOf(d.name);
        if (!n) continue;
        names.add(n);
        if (d.initializer && ts.isObjectLiteralExpression(d.initializer))
          addMembers(
            n,
            d.initializer.properties.map((p) => nameOf(p.name)),
          );
      }
    }
  }
  const out = { names, members };
  declaredCache.set(file, out);
  return out;
}

/** [file, name] for every name written after a file, within one section of the guide. */
function claims(): { files: string[]; pairs: [string, string][] } {
  const files: string[] = [];
  const pairs: [string, string][] = [];
  for (const section of text.split(/^#+ .*$/m)) {
    let current: string | undefined;
    for (const m of section.matchAll(/`([^`]+)`/g)) {
      const tok = m[1]!;
      if (tok.includes(':')) continue; // b52d39e:path, the older tree
      if (PATH.test(tok)) {
        files.push(tok);
        current = tok.endsWith('.ts') ? tok : undefined;
      } else if (current && NAME.test(tok)) pairs.push([current, tok]);
    }
  }
  return { files, pairs };
}

describe('docs/packet-path.md', () => {
  const { files, pairs } = claims();

  it('names files that exist', () => {
    expect(files.length).toBeGreaterThan(40);
    expect(files.filter((f) => !existsSync(join(ROOT, f)))).toEqual([]);
  });

  it('names, beside each file, only what that file defines', () => {
    expect(pairs.length).toBeGreaterThan(100);
    const wrong = pairs.filter(([file, name]) => {
      if (!existsSync(join(ROOT, file))) return true;
      const d = declared(file);
      const [owner, member] = name.split('.');
      return member === undefined ? !d.names.has(owner!) : !d.members.get(owner!)?.has(member);
    });
    expect(wrong.map(([f, n]) => `${f}: ${n}`)).toEqual([]);
  });

  it('counts the files of its own list', () => {
    const part = text.slice(text.indexOf('### The files today'));
    const heading = /^### The files today: (\d+)$/m.exec(part);
    expect(heading).not.toBeNull();
    const table = part.slice(0, part.indexOf('\n### ', 4));
    const listed = [...table.matchAll(/\| (\d+) \| `([^`]+)` /g)].map((m) => ({ n: Number(m[1]), file: m[2]! }));
    expect(new Set(listed.map((l) => l.file)).size).toBe(listed.length);
    expect(listed.map((l) => l.n).sort((a, b) => a - b)).toEqual(Array.from({ length: listed.length }, (_, i) => i + 1));
    expect(listed.length).toBe(Number(heading![1]));
    expect(listed.filter((l) => !existsSync(join(ROOT, l.file)))).toEqual([]);
  });
});
