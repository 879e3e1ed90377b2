// The walk and the report of `disk-usage`, written against a `Lister` so Node tests can run
// them on a made-up tree; the step (index.ts) gives them the host's `files.listDir`.
import type { Context, GlobSet } from '@qodify/plugin-sdk';

/** One folder entry: what `files.listDir` says about it, reduced to what the walk needs. */
export interface Entry {
  name: string;
  kind: 'file' | 'directory' | 'symlink' | 'other';
  size: bigint;
}

/** Lists a folder (guest path), sorted by name. */
export type Lister = (path: string) => Entry[];

/** What the walk found. */
export interface Usage {
  files: number;
  bytes: bigint;
  /** The largest file (first in walk order among equals), relative to the root. */
  largest: { path: string; bytes: bigint } | undefined;
  /** Bytes under each top-level file or folder that is not excluded, in name order. */
  entries: Array<{ name: string; bytes: bigint }>;
}

/**
 * Walks `root` depth-first in name order without following symlinks: regular files count, the
 * rest does not; a path (relative to `root`) matching `exclude` is skipped with all it holds.
 */
export function walk(ctx: Context, list: Lister, root: string, exclude: GlobSet | undefined): Usage {
  const usage: Usage = { files: 0, bytes: 0n, largest: undefined, entries: [] };
  const base = root.replace(/\/+$/, '');
  const visit = (dir: string, rel: string): bigint => {
    ctx.checkCancelled();
    let total = 0n;
    for (const e of list(`${base}${dir}`)) {
      const path = rel === '' ? e.name : `${rel}/${e.name}`;
      if (exclude?.matches(path)) continue;
      if (e.kind === 'directory') {
        total += visit(`${dir}/${e.name}`, path);
      } else if (e.kind === 'file') {
        usage.files += 1;
        usage.bytes += e.size;
        total += e.size;
        if (usage.largest === undefined || e.size > usage.largest.bytes) usage.largest = { path, bytes: e.size };
      }
    }
    return total;
  };
  const top = list(base === '' ? '/' : base).filter((e) => !exclude?.matches(e.name));
  top.forEach((e, i) => {
    ctx.report((100 * i) / Math.max(1, top.length), `measuring ${e.name}`);
    if (e.kind === 'directory') {
      usage.entries.push({ name: e.name, bytes: visit(`/${e.name}`, e.name) });
    } else if (e.kind === 'file') {
      usage.files += 1;
      usage.bytes += e.size;
      if (usage.largest === undefined || e.size > usage.largest.bytes) usage.largest = { path: e.name, bytes: e.size };
      usage.entries.push({ name: e.name, bytes: e.size });
    }
  });
  ctx.report(100, `${usage.files} files, ${usage.bytes} bytes`);
  return usage;
}

/**
 * The JSON report, byte for byte what the Rust twin (tests/plugins/disk-usage-rs) writes:
 * two-space indent, fields in this order, a final newline.
 */
export function reportJson(root: string, usage: Usage, maxBytes: number | undefined): string {
  const report = {
    root,
    files: usage.files,
    bytes: Number(usage.bytes),
    largest: usage.largest === undefined ? null : { path: usage.largest.path, bytes: Number(usage.largest.bytes) },
    entries: usage.entries.map((e) => ({ name: e.name, bytes: Number(e.bytes) })),
    maxBytes: maxBytes ?? null,
  };
  return `${JSON.stringify(report, null, 2)}\n`;
}

/** `12.3 GiB`: a size for people. */
export function human(bytes: bigint | number): string {
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let n = Number(bytes);
  let u = 0;
  while (n >= 1024 && u < units.length - 1) {
    n /= 1024;
    u += 1;
  }
  return u === 0 ? `${n} B` : `${n.toFixed(1)} ${units[u]}`;
}
