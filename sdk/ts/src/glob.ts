// Anchored globs with the rules of the Rust plugins' `glob-rules` crate (archive's `exclude`,
// preflight's estimate), so a TypeScript step leaves out exactly what a Rust one would: matched
// against a path relative to a root folder, `*` and `?` never cross `/`, `**` is a whole
// component, `dir/**` also matches `dir` itself, `{a,b}` alternates, `[a-z]`/`[!a-z]` classes,
// `\` escapes.
import { InvalidConfig } from './errors';

/** A set of compiled patterns; a path matches when any pattern does. */
export class GlobSet {
  private constructor(private readonly res: RegExp[]) {}

  /**
   * Compiles `patterns` for the config field `field` (named in errors). Leading `./` and `/`
   * and trailing `/` are ignored; a pattern empty after that is refused. No patterns, no set.
   */
  static build(field: string, patterns: readonly string[]): GlobSet | undefined {
    if (patterns.length === 0) return undefined;
    const res: RegExp[] = [];
    for (const raw of patterns) {
      const pattern = trimEnd(trimStart(trimStart(raw, './'), '/'), '/');
      if (pattern === '') throw new InvalidConfig(`${field} pattern \`${raw}\` is empty`);
      res.push(compile(field, raw, pattern));
      if (pattern.endsWith('/**')) res.push(compile(field, raw, pattern.slice(0, -3)));
    }
    return new GlobSet(res);
  }

  /** True when `path` (relative, `/`-separated, no leading `/`) matches a pattern. */
  matches(path: string): boolean {
    return this.res.some((re) => re.test(path));
  }
}

function trimStart(s: string, prefix: string): string {
  while (s.startsWith(prefix)) s = s.slice(prefix.length);
  return s;
}

function trimEnd(s: string, suffix: string): string {
  while (s.endsWith(suffix)) s = s.slice(0, -suffix.length);
  return s;
}

const SPECIAL = /[\\^$.*+?()[\]{}|/]/;

function literal(c: string): string {
  return SPECIAL.test(c) ? `\\${c}` : c;
}

/** Compiles one trimmed pattern into an anchored regular expression. */
export function compile(field: string, raw: string, pattern: string): RegExp {
  const bad = (why: string): never => {
    throw new InvalidConfig(`${field} pattern \`${raw}\`: ${why}`);
  };
  let re = '';
  let inAlt = false;
  let i = 0;
  while (i < pattern.length) {
    const c = pattern[i];
    if (c === '\\') {
      if (i + 1 >= pattern.length) bad('dangling `\\`');
      re += literal(pattern[i + 1]);
      i += 2;
    } else if (c === '*') {
      if (pattern[i + 1] === '*') {
        const atStart = i === 0 || pattern[i - 1] === '/';
        const atEnd = i + 2 === pattern.length || pattern[i + 2] === '/';
        if (!atStart || !atEnd) bad('`**` must be a whole path component');
        const last = i + 2 === pattern.length;
        if (i === 0 && last) re += '.*';
        else if (i === 0) re += '(?:.*/)?'; // `**/x`: x at any depth
        else if (last) re += '.*'; // `x/**`: everything below x (the `/` is already in re)
        else re += '(?:.*/)?'; // `a/**/b`: zero or more folders between
        i += last ? 2 : 3;
      } else {
        re += '[^/]*';
        i += 1;
      }
    } else if (c === '?') {
      re += '[^/]';
      i += 1;
    } else if (c === '[') {
      const end = classEnd(pattern, i);
      if (end < 0) bad('unclosed character class `[`');
      let body = pattern.slice(i + 1, end);
      let negate = false;
      if (body.startsWith('!') || body.startsWith('^')) {
        negate = true;
        body = body.slice(1);
      }
      const escaped = body.replace(/[\\\]^]/g, (m) => `\\${m}`);
      re += negate ? `[^/${escaped}]` : `[${escaped}]`;
      i = end + 1;
    } else if (c === '{') {
      if (inAlt) bad('nested alternate groups are not allowed');
      inAlt = true;
      re += '(?:';
      i += 1;
    } else if (c === '}' && inAlt) {
      inAlt = false;
      re += ')';
      i += 1;
    } else if (c === ',' && inAlt) {
      re += '|';
      i += 1;
    } else {
      re += literal(c);
      i += 1;
    }
  }
  if (inAlt) bad('unclosed alternate group `{`');
  return new RegExp(`^${re}$`, 's');
}

/** The index of the `]` closing the class opened at `start` (a `]` first in it is literal). */
function classEnd(pattern: string, start: number): number {
  let i = start + 1;
  if (pattern[i] === '!' || pattern[i] === '^') i += 1;
  if (pattern[i] === ']') i += 1;
  for (; i < pattern.length; i++) if (pattern[i] === ']') return i;
  return -1;
}
