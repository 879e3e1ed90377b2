// A small runtime schema for a step's `config` table, so a TypeScript plugin gets what serde
// gives a Rust one: the parsed config typed (`Infer<typeof schema>`), unknown fields refused, and
// errors naming the field's path (`config field \`exclude[1]\`: expected a string, got 3`).
import { InvalidConfig } from './errors';

/** Where a value sits in the config, as serde_path_to_error prints it: `a.b[2]`. */
type Path = string;

/** Parses a value of type `T` out of JSON data, or throws `InvalidConfig` naming its path. */
export abstract class Schema<T> {
  /** Type-level only: the parsed type. */
  declare readonly _type: T;

  /** Parses `value` found at `path` ("" for the config itself). */
  abstract parse(value: unknown, path: Path): T;

  /** A one-line description for error messages, e.g. `a string`. */
  abstract describe(): string;

  /** Absent (or `null`) is allowed and parses as `undefined`. */
  optional(): Schema<T | undefined> {
    return new OptionalSchema(this, undefined);
  }

  /** Absent (or `null`) parses as `value`. */
  default(value: T): Schema<T> {
    return new OptionalSchema<T>(this, value);
  }

  /** Adds a check: `check` returns an error text (without the path) or `undefined`. */
  refine(check: (value: T) => string | undefined): Schema<T> {
    return new RefinedSchema(this, check);
  }

  /** True when the field may be absent from an object. */
  get mayBeAbsent(): boolean {
    return false;
  }
}

/** The parsed type of a schema. */
export type Infer<S> = S extends Schema<infer T> ? T : never;

/** Throws the error every schema failure is: `config field \`path\`: text`. */
export function fail(path: Path, text: string): never {
  throw new InvalidConfig(path === '' ? `config: ${text}` : `config field \`${path}\`: ${text}`);
}

function got(value: unknown): string {
  if (value === null) return 'null';
  if (Array.isArray(value)) return 'an array';
  switch (typeof value) {
    case 'string':
      return `the string ${JSON.stringify(value)}`;
    case 'number':
    case 'boolean':
      return String(value);
    case 'object':
      return 'an object';
    default:
      return typeof value;
  }
}

class OptionalSchema<T> extends Schema<T> {
  constructor(
    private readonly inner: Schema<T>,
    private readonly fallback: T,
  ) {
    super();
  }
  parse(value: unknown, path: Path): T {
    return value === undefined || value === null ? this.fallback : this.inner.parse(value, path);
  }
  describe(): string {
    return this.inner.describe();
  }
  override get mayBeAbsent(): boolean {
    return true;
  }
}

class RefinedSchema<T> extends Schema<T> {
  constructor(
    private readonly inner: Schema<T>,
    private readonly check: (value: T) => string | undefined,
  ) {
    super();
  }
  parse(value: unknown, path: Path): T {
    const parsed = this.inner.parse(value, path);
    const problem = this.check(parsed);
    if (problem !== undefined) fail(path, problem);
    return parsed;
  }
  describe(): string {
    return this.inner.describe();
  }
  override get mayBeAbsent(): boolean {
    return this.inner.mayBeAbsent;
  }
}

class Primitive<T> extends Schema<T> {
  constructor(
    private readonly what: string,
    private readonly accept: (value: unknown) => value is T,
  ) {
    super();
  }
  parse(value: unknown, path: Path): T {
    if (!this.accept(value)) fail(path, `expected ${this.what}, got ${got(value)}`);
    return value;
  }
  describe(): string {
    return this.what;
  }
}

class ArraySchema<T> extends Schema<T[]> {
  constructor(private readonly item: Schema<T>) {
    super();
  }
  parse(value: unknown, path: Path): T[] {
    if (!Array.isArray(value)) fail(path, `expected ${this.describe()}, got ${got(value)}`);
    return value.map((v: unknown, i) => this.item.parse(v, `${path}[${i}]`));
  }
  describe(): string {
    return `a list of ${this.item.describe().replace(/^an? /, '')}s`;
  }
}

class RecordSchema<T> extends Schema<Record<string, T>> {
  constructor(private readonly item: Schema<T>) {
    super();
  }
  parse(value: unknown, path: Path): Record<string, T> {
    if (typeof value !== 'object' || value === null || Array.isArray(value)) {
      fail(path, `expected a table, got ${got(value)}`);
    }
    const out: Record<string, T> = {};
    for (const [k, v] of Object.entries(value)) out[k] = this.item.parse(v, join(path, k));
    return out;
  }
  describe(): string {
    return 'a table';
  }
}

type Shape = Record<string, Schema<unknown>>;
type OptionalKeys<S extends Shape> = { [K in keyof S]: undefined extends Infer<S[K]> ? K : never }[keyof S];
type RequiredKeys<S extends Shape> = Exclude<keyof S, OptionalKeys<S>>;
type Simplify<T> = { [K in keyof T]: T[K] } & {};
/** The parsed type of an object schema's shape: optional fields become `?:`. */
export type ObjectOf<S extends Shape> = Simplify<
  { [K in RequiredKeys<S>]: Infer<S[K]> } & { [K in OptionalKeys<S>]?: Infer<S[K]> }
>;

class ObjectSchema<S extends Shape> extends Schema<ObjectOf<S>> {
  constructor(
    readonly shape: S,
    private readonly allowUnknown: boolean,
  ) {
    super();
  }
  parse(value: unknown, path: Path): ObjectOf<S> {
    if (typeof value !== 'object' || value === null || Array.isArray(value)) {
      fail(path, `expected a table, got ${got(value)}`);
    }
    const input = value as Record<string, unknown>;
    const known = Object.keys(this.shape);
    if (!this.allowUnknown) {
      for (const key of Object.keys(input)) {
        if (!known.includes(key)) {
          fail(join(path, key), `unknown field, expected one of ${known.map((k) => `\`${k}\``).join(', ')}`);
        }
      }
    }
    const out: Record<string, unknown> = {};
    for (const key of known) {
      const schema = this.shape[key];
      const present = Object.prototype.hasOwnProperty.call(input, key);
      if (!present && !schema.mayBeAbsent) fail(join(path, key), 'missing');
      const parsed = schema.parse(present ? input[key] : undefined, join(path, key));
      if (parsed !== undefined) out[key] = parsed;
    }
    return out as ObjectOf<S>;
  }
  describe(): string {
    return 'a table';
  }
}

class EnumSchema<V extends string> extends Schema<V> {
  constructor(private readonly values: readonly V[]) {
    super();
  }
  parse(value: unknown, path: Path): V {
    if (typeof value !== 'string' || !(this.values as readonly string[]).includes(value)) {
      fail(path, `expected one of ${this.describe()}, got ${got(value)}`);
    }
    return value as V;
  }
  describe(): string {
    return this.values.map((v) => JSON.stringify(v)).join(', ');
  }
}

function join(path: Path, key: string): Path {
  return path === '' ? key : `${path}.${key}`;
}

const SIZE_UNITS: Record<string, number> = {
  B: 1,
  KB: 1e3,
  MB: 1e6,
  GB: 1e9,
  TB: 1e12,
  KIB: 2 ** 10,
  MIB: 2 ** 20,
  GIB: 2 ** 30,
  TIB: 2 ** 40,
};

/**
 * Parses a byte size: a whole number of bytes, or text such as `10GiB`, `512 MiB`, `2GB`, `100B`
 * (binary and decimal units, case-insensitive). `undefined` when it is not one.
 */
export function parseSize(value: unknown): number | undefined {
  if (typeof value === 'number') return Number.isSafeInteger(value) && value >= 0 ? value : undefined;
  if (typeof value !== 'string') return undefined;
  const m = /^\s*(\d+(?:\.\d+)?)\s*([a-zA-Z]*)\s*$/.exec(value);
  if (!m) return undefined;
  const unit = m[2] === '' ? 1 : SIZE_UNITS[m[2].toUpperCase()];
  if (unit === undefined) return undefined;
  const bytes = Math.round(Number(m[1]) * unit);
  return Number.isSafeInteger(bytes) ? bytes : undefined;
}

/** Builders for config schemas: `t.object({ root: t.string(), exclude: t.array(t.string()).default([]) })`. */
export const t = {
  /** A JSON string. */
  string: (): Schema<string> => new Primitive('a string', (v): v is string => typeof v === 'string'),
  /** A JSON number. */
  number: (): Schema<number> =>
    new Primitive('a number', (v): v is number => typeof v === 'number' && Number.isFinite(v)),
  /** A whole number (safe integer). */
  integer: (): Schema<number> =>
    new Primitive('an integer', (v): v is number => typeof v === 'number' && Number.isSafeInteger(v)),
  /** `true` or `false`. */
  boolean: (): Schema<boolean> => new Primitive('a bool', (v): v is boolean => typeof v === 'boolean'),
  /** A byte count: a whole number, or text with a unit (`10GiB`, `500MB`). */
  size: (): Schema<number> => new SizeSchema(),
  /** One of the given strings. */
  enum: <const V extends string>(values: readonly V[]): Schema<V> => new EnumSchema(values),
  /** A list of `item`. */
  array: <T>(item: Schema<T>): Schema<T[]> => new ArraySchema(item),
  /** A table with any keys, each holding an `item`. */
  record: <T>(item: Schema<T>): Schema<Record<string, T>> => new RecordSchema(item),
  /** A table with exactly these fields (unknown ones are refused, like serde's `deny_unknown_fields`). */
  object: <S extends Shape>(shape: S): ObjectSchema<S> => new ObjectSchema(shape, false),
  /** A table with these fields; other fields are ignored. */
  looseObject: <S extends Shape>(shape: S): ObjectSchema<S> => new ObjectSchema(shape, true),
  /** Any JSON value, unchecked. */
  unknown: (): Schema<unknown> => new Primitive('anything', (_v): _v is unknown => true),
};

class SizeSchema extends Schema<number> {
  parse(value: unknown, path: Path): number {
    const bytes = parseSize(value);
    if (bytes === undefined) fail(path, `expected a size such as 500MiB or a number of bytes, got ${got(value)}`);
    return bytes;
  }
  describe(): string {
    return 'a size';
  }
}

/** Parses a step's config JSON text with `schema`; empty text or `null` is an empty table. */
export function parseConfig<T>(schema: Schema<T>, json: string): T {
  const text = json.trim();
  let value: unknown;
  if (text === '' || text === 'null') {
    value = {};
  } else {
    try {
      value = JSON.parse(text);
    } catch (e) {
      fail('', `not JSON: ${e instanceof Error ? e.message : String(e)}`);
    }
  }
  return schema.parse(value, '');
}
