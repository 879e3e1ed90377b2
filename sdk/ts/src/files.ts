// What WASI does not tell a guest about files (`qodify:pipeline/files`): Unix modes, owners,
// exact symlink targets (absolute ones too), free space, folder fsync, which mounted folder a
// process works in, entries' identities (ctime, device, inode) and links of an earlier backup's
// files into the new one. Paths are guest paths; nothing here follows a final symlink.
import * as wit from 'qodify:pipeline/files@0.1.2';
import type {
  DirEntry,
  EntryIdentity,
  EntryKind,
  FilesError,
  FsSpace,
  Metadata,
} from 'qodify:pipeline/files@0.1.2';

import { Io, NotFound, PermissionDenied, StepError } from './errors';

export type { DirEntry, EntryIdentity, EntryKind, FsSpace, Metadata };

/** Maps a `files-error` onto a `StepError` naming what was being done. */
function filesError(what: string, path: string, thrown: unknown): StepError {
  if (thrown instanceof StepError) return thrown;
  const payload = (thrown as { payload?: FilesError } | null)?.payload;
  if (payload === undefined) return new Io(`${what} ${path}: ${String(thrown)}`);
  switch (payload.tag) {
    case 'not-permitted':
      return new PermissionDenied(`${what} ${path}: not permitted: ${payload.val}`);
    case 'not-found':
      return new NotFound(`${what} ${path}: not found: ${payload.val}`);
    case 'io':
      return new Io(`${what} ${path}: ${payload.val}`);
  }
}

function call<T>(what: string, path: string, f: () => T): T {
  try {
    return f();
  } catch (e) {
    throw filesError(what, path, e);
  }
}

/** Metadata of `path` (mode, owner, size, mtime, symlink target) without following a final symlink. */
export function stat(path: string): Metadata {
  return call('stat', path, () => wit.stat(path));
}

/** Lists a folder with every entry's metadata, sorted by name: one host call for the folder. */
export function listDir(path: string): DirEntry[] {
  return call('listing', path, () => wit.listDir(path));
}

/** Sets the permission bits (0o777) of `path`; needs a writable mount. */
export function setMode(path: string, mode: number): void {
  call('setting the mode of', path, () => wit.setMode(path, mode));
}

/** Sets the modification time of `path`; needs a writable mount. */
export function setMtime(path: string, seconds: bigint, nanos = 0): void {
  call('setting the mtime of', path, () => wit.setMtime(path, seconds, nanos));
}

/** Creates a symlink at `path` whose target `target` is stored verbatim; needs a writable mount. */
export function symlink(target: string, path: string): void {
  call('creating the symlink', path, () => wit.symlink(target, path));
}

/** Free and total bytes of the file system holding `path`. */
export function space(path: string): FsSpace {
  return call('reading the free space of', path, () => wit.space(path));
}

/** Flushes a folder's entries to disk, so a rename or symlink made in it survives a power loss. */
export function syncDir(path: string): void {
  call('syncing', path, () => wit.syncDir(path));
}

/** The working folder of process `pid` as a guest path, when it is inside a mount. */
export function processCwd(pid: number): string {
  return call('reading the working folder of process', String(pid), () => wit.processCwd(pid));
}

/**
 * The identity of every entry of folder `path` (name, ctime, device, inode), sorted by name,
 * symlinks not followed: with `listDir`'s size, mode and mtime it tells whether anything changed
 * since it was last seen (the way restic and borg skip unchanged files).
 */
export function listIdentities(path: string): EntryIdentity[] {
  return call('listing the identities in', path, () => wit.listIdentities(path));
}

/**
 * Makes `newPath` a hard link to `existing` when the run's backup completes. The host allows only a
 * file of an earlier backup (`backups/<id>/<file>` through a mount of the customer folder or of
 * `backups`) linked as a file of the run's new backup (a mount with `from = "backup"`); across
 * file systems it throws `Io` naming `EXDEV`. Until the backup completes `newPath` does not exist
 * for any step, so none can change the earlier file through it: return it as an artifact with the
 * earlier file's size and sha256 (from its `backup.json`), and write nothing there yourself.
 */
export function hardLink(existing: string, newPath: string): void {
  call(`linking ${existing} as`, newPath, () => wit.hardLink(existing, newPath));
}
