/**
 * One TOML config file per daemon, read so that it cannot silently fail: every key the schema
 * does not know is refused by name (with the nearest known key), environment overrides
 * (`PREFIX_SECTION__KEY=value`) are converted by the type the schema gives that key and an error
 * names the variable, and path fields expand a leading `~`. Kept free of logging and metrics so
 * that `postmix sendmail`, started once per message, loads only this.
 */
import { readFileSync } from 'node:fs';
import { homedir } from 'node:os';
import { parse as parseToml } from 'smol-toml';
import { z, type ZodType } from 'zod';
import { ConfigError } from './errors.ts';

type Obj = Record<string, unknown>;

/** `~` and `~/…` become the home directory; other strings are unchanged. */
export function expandHome(p: string, home = homedir()): string {
  return p === '~' ? home : p.startsWith('~/') ? home + p.slice(1) : p;
}

/** A file or directory path in a config: a leading `~` is the home directory of the daemon's user. */
export const pathField = z
  .string()
  .min(1)
  .transform((p) => expandHome(p));

/**
 * A public key in a config: base64 (44 characters), the one encoding `postmix keygen` prints
 * (`identity public key:`) and every role's config takes. A hex key gets its own message.
 */
export const b64Key = z
  .string()
  .refine((s) => !/^[0-9a-f]{64}$/i.test(s), {
    message: 'is a hex key; give the base64 identity public key that `postmix keygen` prints (or identity.pub)',
    abort: true,
  })
  .refine((s) => /^[A-Za-z0-9+/]{43}=$/.test(s), 'must be a base64 Ed25519 public key (32 bytes, 44 characters)');

/** What an environment value is converted to, from the schema of the key it sets. */
type Kind = 'string' | 'number' | 'boolean' | 'json' | 'object' | 'unknown';

interface ZodInternals {
  _zod: { def: { type: string; innerType?: ZodType; in?: ZodType; shape?: Record<string, ZodType>; options?: ZodType[] } };
}

function defOf(s: ZodType) {
  return (s as unknown as ZodInternals)._zod.def;
}

/** Strips default, prefault, optional, nullable, catch and readonly wrappers, and a transform's output side. */
function unwrap(s: ZodType): ZodType {
  for (;;) {
    const d = defOf(s);
    if (d.innerType && ['default', 'prefault', 'optional', 'nullable', 'catch', 'readonly', 'nonoptional'].includes(d.type)) s = d.innerType;
    else if (d.type === 'pipe' && d.in) s = d.in;
    else return s;
  }
}

function kindOf(s: ZodType): Kind {
  const d = defOf(unwrap(s));
  switch (d.type) {
    case 'string':
    case 'enum':
    case 'literal':
      return 'string';
    case 'number':
    case 'int':
      return 'number';
    case 'boolean':
      return 'boolean';
    case 'array':
    case 'tuple':
    case 'record':
      return 'json';
    case 'object':
      return 'object';
    case 'union': {
      const kinds = new Set((d.options ?? []).map(kindOf));
      return kinds.size === 1 ? [...kinds][0]! : 'unknown';
    }
    default:
      return 'unknown';
  }
}

function shapeOf(s: ZodType): Record<string, ZodType> | undefined {
  const d = defOf(unwrap(s));
  return d.type === 'object' ? d.shape : undefined;
}

/** The nearest of `known` to `key` (edit distance at most 2), for "did you mean". */
export function nearest(key: string, known: readonly string[]): string | undefined {
  const dist = (a: string, b: string): number => {
    const row = Array.from({ length: b.length + 1 }, (_, j) => j);
    for (let i = 1; i <= a.length; i++) {
      let prev = row[0]!;
      row[0] = i;
      for (let j = 1; j <= b.length; j++) {
        const cur = row[j]!;
        row[j] = Math.min(row[j]! + 1, row[j - 1]! + 1, prev + (a[i - 1] === b[j - 1] ? 0 : 1));
        prev = cur;
      }
    }
    return row[b.length]!;
  };
  let best: string | undefined;
  let bestD = 3;
  for (const k of known) {
    const d = dist(key, k);
    if (d < bestD) [best, bestD] = [k, d];
  }
  return best;
}

function convert(variable: string, key: string, kind: Kind, v: string): unknown {
  const bad = (want: string) => new ConfigError(`${variable}: ${key} takes ${want}, got ${JSON.stringify(v)}`);
  switch (kind) {
    case 'string':
      return v;
    case 'number': {
      const n = v.trim() === '' ? NaN : Number(v);
      if (!Number.isFinite(n)) throw bad('a number');
      return n;
    }
    case 'boolean':
      if (v === 'true') return true;
      if (v === 'false') return false;
      throw bad('true or false');
    case 'json':
    case 'object':
      try {
        return JSON.parse(v) as unknown;
      } catch {
        throw bad(kind === 'json' ? 'a JSON array, e.g. ["a","b"]' : 'a JSON object');
      }
    default:
      throw bad('a value that cannot be set from the environment');
  }
}

/** Which environment variable set which dotted key: validation errors name the variable. */
export type EnvSources = ReadonlyMap<string, string>;

/**
 * Applies `PREFIX_SECTION__KEY=value` environment variables over the parsed file: the part after
 * the prefix is lower-cased, `__` separates nesting levels, and `_` inside a level stays (so
 * `POSTMIX_MIXNODE_METRICS__PORT=9101` sets `metrics.port`). Each value becomes what the schema
 * says the key holds: a number, true/false, a JSON array or object, or the string as given (a
 * password of digits stays a string). A variable naming no key of the schema is an error.
 */
export function applyEnvOverrides(cfg: Obj, prefix: string, schema: ZodType, env: NodeJS.ProcessEnv = process.env): { config: Obj; sources: EnvSources } {
  const out = structuredClone(cfg);
  const sources = new Map<string, string>();
  const p = prefix.endsWith('_') ? prefix : prefix + '_';
  for (const [variable, v] of Object.entries(env).sort(([a], [b]) => a.localeCompare(b))) {
    if (!variable.startsWith(p) || v === undefined) continue;
    const path = variable.slice(p.length).toLowerCase().split('__');
    let field: ZodType | undefined = schema;
    let o: Obj = out;
    for (let i = 0; i < path.length; i++) {
      const seg = path[i]!;
      const shape: Record<string, ZodType> | undefined = field ? shapeOf(field) : undefined;
      field = shape?.[seg];
      if (!shape || !field) {
        const where = path.slice(0, i).join('.');
        const hint = shape ? nearest(seg, Object.keys(shape)) : undefined;
        throw new ConfigError(
          `${variable}: no key ${path.slice(0, i + 1).join('.')} in this configuration${where && !shape ? ` (${where} is not a table)` : ''}${hint ? `; did you mean ${[...path.slice(0, i), hint].join('.')}?` : ''}`,
        );
      }
      if (i === path.length - 1) o[seg] = convert(variable, path.join('.'), kindOf(field), v);
      else {
        if (typeof o[seg] !== 'object' || o[seg] === null || Array.isArray(o[seg])) o[seg] = {};
        o = o[seg] as Obj;
      }
    }
    sources.set(path.join('.'), variable);
  }
  return { config: out, sources };
}

/** Validates against the schema. Throws ConfigError naming the source and every bad or unknown key. */
export function validateConfig<T>(raw: unknown, schema: ZodType<T>, source: string, sources: EnvSources = new Map()): T {
  const r = schema.safeParse(raw);
  if (r.success) return r.data;
  const lines: string[] = [];
  for (const i of r.error.issues) {
    const at = i.path.map(String);
    if (i.code === 'unrecognized_keys') {
      const known = Object.keys(shapeAt(schema, at) ?? {});
      for (const k of i.keys) {
        const hint = nearest(k, known);
        lines.push(`  ${[...at, k].join('.')}: unknown key${hint ? ` (did you mean ${[...at, hint].join('.')}?)` : ''}`);
      }
      continue;
    }
    const key = at.join('.');
    const fromEnv = sources.get(key);
    lines.push(`  ${key || '(top level)'}: ${i.message}${fromEnv ? ` (set by ${fromEnv})` : ''}`);
  }
  throw new ConfigError(`${source}: invalid configuration\n${lines.join('\n')}`);
}

function shapeAt(schema: ZodType, path: readonly string[]): Record<string, ZodType> | undefined {
  let s: ZodType | undefined = schema;
  for (const seg of path) {
    if (!s) return undefined;
    const d = defOf(unwrap(s)) as { type: string; shape?: Record<string, ZodType>; element?: ZodType };
    s = d.type === 'array' ? (/^\d+$/.test(seg) ? d.element : undefined) : d.shape?.[seg];
  }
  return s ? shapeOf(s) : undefined;
}

/** Reads, overrides and validates a config file. Throws ConfigError naming the file and each bad field. */
export function loadConfig<T>(file: string, schema: ZodType<T>, envPrefix: string, env: NodeJS.ProcessEnv = process.env): T {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (e) {
    throw new ConfigError(`cannot read config file ${file}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`);
  }
  let raw: Obj;
  try {
    raw = parseToml(text) as Obj;
  } catch (e) {
    throw new ConfigError(`${file} is not valid TOML: ${(e as Error).message.split('\n')[0]}`);
  }
  const { config, sources } = applyEnvOverrides(raw, envPrefix, schema, env);
  return validateConfig(config, schema, file, sources);
}

/** Loopback-only address check for listeners that must not face the network by default. */
export function isLoopback(host: string): boolean {
  return host === 'localhost' || host === '::1' || /^127\.\d+\.\d+\.\d+$/.test(host);
}
