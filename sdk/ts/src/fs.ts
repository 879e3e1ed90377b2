// Files by guest path, over the WASI file system: the step's mounts are its preopens, and a guest
// path is resolved onto the mount with the longest matching prefix, the way wasi-libc does for a
// Rust plugin's `std::fs`. `..` and symlinks are passed to the host as they are: it refuses any
// that would leave the mount, so there is nothing to check here.
import { getDirectories } from 'wasi:filesystem/preopens@0.2.12';
import type { Descriptor, DescriptorType, ErrorCode } from 'wasi:filesystem/types@0.2.12';

import { Io, NotFound, PermissionDenied, StepError } from './errors';
import { Sha256 } from './sha256';

/** What an entry is. */
export type FileType = 'file' | 'directory' | 'symlink' | 'other';

/** One entry of a folder listing. */
export interface DirEntry {
  /** The entry's name (one component). */
  name: string;
  /** What it is (a symlink is not followed). */
  type: FileType;
}

/** Metadata WASI gives: type, size and modification time (modes and owners: `files.stat`). */
export interface Stat {
  type: FileType;
  size: bigint;
  /** Modification time, when the host knows it. */
  mtime?: { seconds: bigint; nanoseconds: number };
}

interface Preopen {
  dir: Descriptor;
  guest: string;
}

let preopens: Preopen[] | undefined;

/** The step's mounts as preopens; read once per step (the host's list does not change). */
function mounts(): Preopen[] {
  preopens ??= getDirectories().map(([dir, guest]) => ({ dir, guest: trimSlashes(guest) }));
  return preopens;
}

function trimSlashes(path: string): string {
  const trimmed = path.replace(/\/+$/, '');
  return trimmed === '' ? '/' : trimmed;
}

/** A guest path resolved onto a mount: its folder and the path relative to it (`.` for itself). */
export interface Located {
  dir: Descriptor;
  rel: string;
  /** The mount's guest path. */
  mount: string;
}

/**
 * Resolves an absolute guest path onto the mount with the longest prefix (whole components), or
 * throws `PermissionDenied` when no mount holds it. Empty and `.` components are dropped; `..`
 * stays, for the host to judge.
 */
export function locate(path: string): Located {
  if (!path.startsWith('/')) throw new PermissionDenied(`${path}: not an absolute guest path`);
  const parts = path.split('/').filter((p) => p !== '' && p !== '.');
  const clean = `/${parts.join('/')}`;
  let best: Preopen | undefined;
  for (const m of mounts()) {
    const inside = m.guest === '/' || clean === m.guest || clean.startsWith(`${m.guest}/`);
    if (inside && (best === undefined || m.guest.length > best.guest.length)) best = m;
  }
  if (best === undefined) throw new PermissionDenied(`${path} is outside the step's mounts`);
  const rest = best.guest === '/' ? clean.slice(1) : clean.slice(best.guest.length + 1);
  // A trailing `/` means "a folder" to the host: keep it, as wasi-libc does.
  const rel = rest === '' ? '.' : path.endsWith('/') ? `${rest}/` : rest;
  return { dir: best.dir, rel, mount: best.guest };
}

/** The WASI error code a failed call threw, if it was one. */
export function errorCode(thrown: unknown): ErrorCode | undefined {
  if (typeof thrown === 'object' && thrown !== null && 'payload' in thrown) {
    const payload = (thrown as { payload: unknown }).payload;
    if (typeof payload === 'string') return payload as ErrorCode;
  }
  return undefined;
}

/** Maps what a WASI call threw onto a `StepError` saying what was being done. */
export function wasiError(what: string, path: string, thrown: unknown): StepError {
  if (thrown instanceof StepError) return thrown;
  const code = errorCode(thrown);
  const message = `${what} ${path}: ${code ?? (thrown instanceof Error ? thrown.message : String(thrown))}`;
  switch (code) {
    case 'no-entry':
      return new NotFound(message);
    case 'access':
    case 'not-permitted':
    case 'read-only':
      return new PermissionDenied(message);
    default:
      return new Io(message);
  }
}

/** Runs `f`, mapping a WASI failure onto a `StepError` naming `what` and `path`. */
function attempt<T>(what: string, path: string, f: () => T): T {
  try {
    return f();
  } catch (e) {
    throw wasiError(what, path, e);
  }
}

/** Drops a host handle now rather than whenever the garbage collector runs: handles are limited. */
export function close(handle: { [Symbol.dispose](): void }): void {
  handle[Symbol.dispose]();
}

function fileType(t: DescriptorType): FileType {
  switch (t) {
    case 'regular-file':
      return 'file';
    case 'directory':
      return 'directory';
    case 'symbolic-link':
      return 'symlink';
    default:
      return 'other';
  }
}

/** Chunk size of reads and of `FileReader.chunks`. */
const CHUNK = 1 << 20;

/** Reads a whole file. */
export function readFile(path: string): Uint8Array {
  const reader = openRead(path);
  try {
    return reader.readAll();
  } finally {
    reader.close();
  }
}

/** Reads a whole file as UTF-8 text. */
export function readText(path: string): string {
  return new TextDecoder().decode(readFile(path));
}

/** Creates or truncates a file and writes `data` (text as UTF-8) into it. */
export function writeFile(path: string, data: Uint8Array | string): void {
  const writer = openWrite(path);
  try {
    writer.write(data);
  } finally {
    writer.close();
  }
}

/** A file open for reading in chunks, so a large file never has to fit in memory. */
export class FileReader {
  private offset = 0n;
  private eof = false;

  constructor(
    private readonly file: Descriptor,
    /** The guest path, for messages. */
    readonly path: string,
  ) {}

  /** Up to `max` bytes, or `undefined` at the end of the file. */
  read(max = CHUNK): Uint8Array | undefined {
    if (this.eof) return undefined;
    const [bytes, end] = attempt('reading', this.path, () => this.file.read(BigInt(max), this.offset));
    this.offset += BigInt(bytes.length);
    if (end || bytes.length === 0) this.eof = true;
    return bytes.length === 0 ? undefined : bytes;
  }

  /** The file's chunks, in order. */
  *chunks(size = CHUNK): IterableIterator<Uint8Array> {
    for (let chunk = this.read(size); chunk !== undefined; chunk = this.read(size)) yield chunk;
  }

  /** The rest of the file. */
  readAll(): Uint8Array {
    const parts: Uint8Array[] = [];
    let total = 0;
    for (const chunk of this.chunks()) {
      parts.push(chunk);
      total += chunk.length;
    }
    if (parts.length === 1) return parts[0];
    const out = new Uint8Array(total);
    let at = 0;
    for (const p of parts) {
      out.set(p, at);
      at += p.length;
    }
    return out;
  }

  /** Releases the file. */
  close(): void {
    close(this.file);
  }
}

/** A file open for writing; counts and (optionally) hashes what it writes, for an artifact. */
export class FileWriter {
  private offset: bigint;
  private readonly hasher: Sha256 | undefined;

  constructor(
    private readonly file: Descriptor,
    readonly path: string,
    options: { hash?: boolean; offset?: bigint } = {},
  ) {
    this.offset = options.offset ?? 0n;
    this.hasher = options.hash ? new Sha256() : undefined;
  }

  /** Bytes written so far through this writer. */
  get size(): bigint {
    return this.offset;
  }

  /** Writes all of `data` (text as UTF-8). */
  write(data: Uint8Array | string): void {
    const bytes = typeof data === 'string' ? new TextEncoder().encode(data) : data;
    let done = 0;
    while (done < bytes.length) {
      const chunk = bytes.subarray(done, Math.min(bytes.length, done + CHUNK));
      const n = attempt('writing', this.path, () => this.file.write(chunk, this.offset));
      done += Number(n);
      this.offset += n;
    }
    this.hasher?.update(bytes);
  }

  /** Flushes the file's data to disk. */
  sync(): void {
    attempt('syncing', this.path, () => this.file.syncData());
  }

  /** The lowercase hex SHA-256 of what was written (only with `{ hash: true }`). */
  sha256(): string {
    if (this.hasher === undefined) throw new Error(`${this.path} was not opened with { hash: true }`);
    return this.hasher.hex();
  }

  /** Releases the file. */
  close(): void {
    close(this.file);
  }
}

/** Opens a file for reading (a final symlink is followed, inside the mount only). */
export function openRead(path: string): FileReader {
  const { dir, rel } = locate(path);
  const file = attempt('opening', path, () => dir.openAt({ symlinkFollow: true }, rel, {}, { read: true }));
  return new FileReader(file, path);
}

/**
 * Opens a file for writing: created when missing, truncated unless `append`; `exclusive` fails
 * when it exists. `hash` makes the writer compute the SHA-256 of what it writes.
 */
export function openWrite(
  path: string,
  options: { append?: boolean; exclusive?: boolean; hash?: boolean } = {},
): FileWriter {
  const { dir, rel } = locate(path);
  const file = attempt('creating', path, () =>
    dir.openAt(
      {},
      rel,
      { create: true, truncate: !options.append, exclusive: options.exclusive ?? false },
      { write: true },
    ),
  );
  const offset = options.append ? attempt('opening', path, () => file.stat().size) : 0n;
  return new FileWriter(file, path, { hash: options.hash, offset });
}

/** Lists a folder, sorted by name (a symlink is listed as one, not followed). */
export function readDir(path: string): DirEntry[] {
  const { dir, rel } = locate(path);
  const folder = rel === '.' ? dir : attempt('opening', path, () => dir.openAt({ symlinkFollow: true }, rel, { directory: true }, { read: true }));
  try {
    const stream = attempt('listing', path, () => folder.readDirectory());
    const out: DirEntry[] = [];
    try {
      for (;;) {
        const e = attempt('listing', path, () => stream.readDirectoryEntry());
        if (e === undefined) break;
        out.push({ name: e.name, type: fileType(e.type) });
      }
    } finally {
      close(stream);
    }
    return out.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
  } finally {
    if (folder !== dir) close(folder);
  }
}

/** Type, size and mtime of `path`; a final symlink is described, not followed, unless `follow`. */
export function stat(path: string, options: { follow?: boolean } = {}): Stat {
  const { dir, rel } = locate(path);
  const s = attempt('reading the metadata of', path, () => dir.statAt({ symlinkFollow: options.follow ?? false }, rel));
  const m = s.dataModificationTimestamp;
  return {
    type: fileType(s.type),
    size: s.size,
    mtime: m === undefined ? undefined : { seconds: m.seconds, nanoseconds: m.nanoseconds },
  };
}

/** True when `path` names an entry (a dangling symlink counts). */
export function exists(path: string): boolean {
  try {
    stat(path);
    return true;
  } catch (e) {
    if (e instanceof NotFound) return false;
    throw e;
  }
}

/** Creates a folder; `recursive` also creates missing parents and accepts an existing folder. */
export function mkdir(path: string, options: { recursive?: boolean } = {}): void {
  if (options.recursive) {
    const parts = path.split('/').filter((p) => p !== '');
    let at = '';
    for (const part of parts) {
      at += `/${part}`;
      // A mount, or a folder above one, exists (and may lie outside every mount).
      if (mounts().some((m) => m.guest === at || m.guest.startsWith(`${at}/`))) continue;
      if (exists(at)) {
        if (stat(at, { follow: true }).type !== 'directory') throw new Io(`creating ${path}: ${at} is not a folder`);
        continue;
      }
      mkdirOne(at);
    }
    return;
  }
  mkdirOne(path);
}

function mkdirOne(path: string): void {
  const { dir, rel } = locate(path);
  attempt('creating the folder', path, () => dir.createDirectoryAt(rel));
}

/** Removes a file, a symlink or an empty folder; `recursive` removes a folder with its contents. */
export function remove(path: string, options: { recursive?: boolean } = {}): void {
  const { dir, rel } = locate(path);
  const s = stat(path);
  if (s.type === 'directory') {
    if (options.recursive) for (const e of readDir(path)) remove(`${trimSlashes(path)}/${e.name}`, options);
    attempt('removing the folder', path, () => dir.removeDirectoryAt(rel));
  } else {
    attempt('removing', path, () => dir.unlinkFileAt(rel));
  }
}

/** Renames `from` to `to` (replacing a file there), both guest paths. */
export function rename(from: string, to: string): void {
  const src = locate(from);
  const dst = locate(to);
  attempt('renaming', `${from} to ${to}`, () => src.dir.renameAt(src.rel, dst.dir, dst.rel));
}

/** Makes a hard link `to` of the file `from`. */
export function hardLink(from: string, to: string): void {
  const src = locate(from);
  const dst = locate(to);
  attempt('linking', `${from} to ${to}`, () => src.dir.linkAt({}, src.rel, dst.dir, dst.rel));
}

/**
 * Creates a symlink with WASI's own call, which refuses absolute targets and targets leaving
 * the mount; `files.symlink` stores any target verbatim.
 */
export function symlink(target: string, path: string): void {
  const { dir, rel } = locate(path);
  attempt('creating the symlink', path, () => dir.symlinkAt(target, rel));
}

/** The target of the symlink `path`, as WASI gives it. */
export function readLink(path: string): string {
  const { dir, rel } = locate(path);
  return attempt('reading the link', path, () => dir.readlinkAt(rel));
}
