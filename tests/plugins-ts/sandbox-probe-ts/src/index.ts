// `sandbox-probe-ts` test plugin: the TypeScript port of tests/plugins/sandbox-probe. In
// `escape` mode it makes the same attempts, under the same output keys, with the SDK (plus a
// few raw WASI calls that skip the SDK's own checks), so a test can assert that every denial of
// the Rust probe is a denial here too. `loop` and `memory-bomb` show the host's limits stop a
// JS component like a Rust one. `sdk` goes through the SDK's file helpers inside `out` (nested
// folders, a 3 MiB file written and read back in chunks, rename, listing, removal) and returns
// the file as an artifact, whose size and sha256 the host checks.
//
// Config: `mode` ("escape" | "loop" | "memory-bomb" | "memory-caught" | "sdk"), `data` (read-only mount), `out`
// (writable mount), `command` (a granted argv for the control), `origin` (a granted URL for
// the control). Each output is `ok…`/`FAILED…` (controls), or `denied:<error>` / `ALLOWED:<what>`.
import { artifact, commands, defineStep, files, fs, http, Internal, Output, Sha256, t } from '@qodify/plugin-sdk';
import { getDirectories } from 'wasi:filesystem/preopens@0.2.12';

const config = t.object({
  mode: t.enum(['escape', 'loop', 'memory-bomb', 'memory-caught', 'sdk']).default('escape'),
  data: t.string().default('/data'),
  out: t.string().default('/out'),
  command: t.array(t.string()).optional(),
  origin: t.string().optional(),
});

/** At most this much of what an attempt got goes into its value. */
const SHOWN = 120;

function clip(s: string): string {
  return s.slice(0, SHOWN).replace(/\n/g, '\\n');
}

function message(e: unknown): string {
  if (e instanceof Error) return e.message;
  const payload = (e as { payload?: unknown } | null)?.payload;
  return payload === undefined ? String(e) : `error ${JSON.stringify(payload)}`;
}

/** `ALLOWED:<what>` when `f` returns, `denied:<error>` when it throws. */
function report<T>(f: () => T, shown: (v: T) => string): string {
  try {
    return `ALLOWED:${clip(shown(f()))}`;
  } catch (e) {
    return `denied:${clip(message(e))}`;
  }
}

function readText(path: string): string {
  return fs.readText(path);
}

function list(path: string): string {
  return fs
    .readDir(path)
    .map((e) => e.name)
    .join(',');
}

/** Opens `path` as a file, then as a folder, and reports whichever worked. */
function openOrList(path: string): string {
  try {
    return `ALLOWED:read ${clip(readText(path))}`;
  } catch (openErr) {
    try {
      return `ALLOWED:listed ${clip(list(path))}`;
    } catch (listErr) {
      return `denied:open: ${message(openErr)}; read_dir: ${message(listErr)}`;
    }
  }
}

function tryRead(path: string): { ok: string } | { err: string } {
  try {
    return { ok: readText(path) };
  } catch (e) {
    return { err: message(e) };
  }
}

/** A write-style attempt on a read-only file: ALLOWED only if the file actually changed. */
function changedAttempt(path: string, before: { ok: string } | { err: string }, attempt: () => void): string {
  let error: string | undefined;
  try {
    attempt();
  } catch (e) {
    error = message(e);
  }
  const after = tryRead(path);
  if (JSON.stringify(after) !== JSON.stringify(before)) return `ALLOWED:content changed to ${clip(JSON.stringify(after))}`;
  return error === undefined ? 'denied:call succeeded but the content is unchanged' : `denied:${clip(error)}`;
}

/** A symlink the sandbox created: ALLOWED only if reading through it yields the target's content. */
function followCreated(create: () => void, readThrough: string): string {
  try {
    create();
  } catch (e) {
    return `denied:${clip(message(e))}`;
  }
  try {
    return `ALLOWED:${clip(readText(readThrough))}`;
  } catch (e) {
    return `denied:created-but-unfollowable: ${message(e)}`;
  }
}

/** The preopen mounted at `guest`, for the raw WASI attempts. */
function preopen(guest: string) {
  const found = getDirectories().find(([, g]) => g === guest);
  if (found === undefined) throw new Error(`no preopen ${guest}`);
  return found[0];
}

function escape(dataPath: string, outPath: string, command: string[] | undefined, origin: string | undefined): Output {
  const data = dataPath.replace(/\/+$/, '');
  const outDir = outPath.replace(/\/+$/, '');
  const o = new Output();
  const inside = `${data}/inside.txt`;
  const original = tryRead(inside);
  // Leftovers of an earlier run would turn "created" attempts into "exists" failures.
  for (const leftover of ['abs', 'abs2', 'up', 'stolen.txt', 'hardlink.txt']) {
    try {
      fs.remove(`${outDir}/${leftover}`);
    } catch {
      // not there
    }
  }

  // Controls: these must work, or the denials below prove nothing.
  const control = tryRead(`${data}/ok.txt`);
  o.value('control-read', 'ok' in control ? `ok:${control.ok.trimEnd()}` : `FAILED:${control.err}`);
  try {
    fs.writeFile(`${outDir}/ok.txt`, 'ok\n');
    o.value('control-write', 'ok');
  } catch (e) {
    o.value('control-write', `FAILED:${message(e)}`);
  }
  if (command !== undefined && command.length > 0) {
    try {
      const r = commands.run(command[0], command.slice(1), { stdout: 'capture', cwd: outDir });
      o.value('control-command', r.success ? `ok:${r.stdoutText().trim()}` : `FAILED:exit ${r.exitCode}`);
    } catch (e) {
      o.value('control-command', `FAILED:${message(e)}`);
    }
  }
  if (origin !== undefined) {
    try {
      o.value('control-http', `ok:${http.get(origin, { timeoutMs: 5000 }).status}`);
    } catch (e) {
      o.value('control-http', `FAILED:${message(e)}`);
    }
  }

  // Path tricks.
  const tricks: Array<[string, string]> = [
    ['read-dotdot', `${data}/../other-customer/secret`],
    ['read-dotdot-2', `${data}/../../other-customer/secret`],
    ['read-relative', '../other-customer/secret'],
    ['read-etc-passwd', '/etc/passwd'],
    ['follow-abs-symlink', `${data}/escape-abs`],
    ['follow-rel-symlink', `${data}/escape-rel`],
  ];
  for (const [key, path] of tricks) o.value(key, report(() => readText(path), (s) => s));
  o.value('read-root-listing', report(() => list('/'), (s) => s));
  o.value('trailing-slash-abs', openOrList(`${data}/escape-abs/`));
  o.value('trailing-slash-rel', openOrList(`${data}/escape-rel/`));

  // The same tricks with raw WASI calls on the mount's own descriptor, past the SDK's checks.
  const root = preopen(data);
  const rawRead = (rel: string, follow: boolean) => () => {
    const f = root.openAt({ symlinkFollow: follow }, rel, {}, { read: true });
    try {
      return new TextDecoder().decode(f.read(1024n, 0n)[0]);
    } finally {
      fs.close(f);
    }
  };
  o.value('raw-absolute', report(rawRead('/etc/passwd', false), (s) => s));
  o.value('raw-dotdot', report(rawRead('../../other-customer/secret', false), (s) => s));
  o.value('raw-follow-abs-symlink', report(rawRead('escape-abs', true), (s) => s));
  o.value('raw-follow-rel-symlink', report(rawRead('escape-rel', true), (s) => s));
  o.value(
    'raw-open-parent',
    report(() => fs.close(root.openAt({}, '..', { directory: true }, { read: true })), () => 'opened'),
  );

  // Changes to the read-only mount.
  const newFile = `${data}/new.txt`;
  o.value('write-ro', report(() => fs.writeFile(newFile, 'x'), () => newFile));
  const openRaw = (flags: { truncate?: boolean }, descriptorFlags: { read?: boolean; write?: boolean }) => () =>
    fs.close(root.openAt({}, 'inside.txt', flags, descriptorFlags));
  o.value('truncate-ro', changedAttempt(inside, original, openRaw({ truncate: true }, { read: true })));
  o.value('truncate-write-ro', changedAttempt(inside, original, openRaw({ truncate: true }, { write: true })));
  o.value(
    'append-ro',
    changedAttempt(inside, original, () => {
      const w = fs.openWrite(inside, { append: true });
      try {
        w.write('x');
      } finally {
        w.close();
      }
    }),
  );
  o.value('rename-ro-to-rw', report(() => fs.rename(inside, `${outDir}/stolen.txt`), () => 'moved'));
  o.value('hardlink-ro-to-rw', report(() => fs.hardLink(inside, `${outDir}/hardlink.txt`), () => 'linked'));
  // After rename and hardlink: if deleting works, those could not have found the file.
  o.value('delete-ro', report(() => fs.remove(inside), () => 'removed'));
  o.value('mkdir-ro', report(() => fs.mkdir(`${data}/newdir`), () => 'created'));

  // Symlinks created inside the writable mount, pointing out.
  const abs = `${outDir}/abs`;
  o.value('symlink-abs-create', followCreated(() => files.symlink('/etc/passwd', abs), abs));
  const abs2 = `${outDir}/abs2`;
  o.value('symlink-guest-create', followCreated(() => fs.symlink('/etc/passwd', abs2), abs2));
  const up = `${outDir}/up`;
  o.value('symlink-up', followCreated(() => files.symlink('../..', up), `${up}/other-customer/secret`));

  // The host's `files` interface, outside the mounts or against the read-only one.
  const kind = (m: files.Metadata) => `${m.kind} mode ${m.mode.toString(8)}`;
  o.value('files-stat-outside', report(() => files.stat(`${data}/../../other-customer`), kind));
  o.value('files-stat-etc', report(() => files.stat('/etc'), kind));
  const names = (entries: files.DirEntry[]) => entries.map((e) => e.name).join(',');
  o.value('files-list-outside', report(() => files.listDir('/'), names));
  o.value('files-list-dotdot', report(() => files.listDir(`${data}/..`), names));
  o.value('files-set-mode-ro', report(() => files.setMode(inside, 0o777), () => 'set'));
  o.value('files-set-mode-through-link', report(() => files.setMode(abs, 0o777), () => 'host claims success'));
  o.value('files-set-mtime-ro', report(() => files.setMtime(inside, 0n, 0), () => 'set'));
  o.value('files-symlink-ro', report(() => files.symlink('x', `${data}/l`), () => 'created'));
  // Not an earlier backup's file: a link would make a read-only file writable through `out`.
  o.value('files-hard-link-ro', report(() => files.hardLink(inside, `${outDir}/hl`), () => 'linked'));

  // Host programs and origins that were not granted.
  const ran = (r: commands.CommandResult) => `exit ${r.exitCode}: ${r.stdoutText()}`;
  o.value('command-not-granted', report(() => commands.run('sh', ['-c', 'cat /etc/passwd'], { stdout: 'capture' }), ran));
  o.value(
    'command-arg-not-granted',
    report(() => commands.run('echo', ['not-granted-arg'], { stdout: 'capture', cwd: outDir }), ran),
  );
  o.value('http-not-granted', report(() => http.get('http://127.0.0.1:9/', { timeoutMs: 2000 }), (r) => `status ${r.status}`));
  // Through the SDK's console: a run-log line at `warn`.
  console.warn(`escape attempts done: ${o.values.length} outputs`);
  return o;
}

/** The SDK's file helpers, round trip, inside the writable mount `out`. */
function sdk(outPath: string): Output {
  const base = `${outPath.replace(/\/+$/, '')}/sdk`;
  if (fs.exists(base)) fs.remove(base, { recursive: true });
  fs.mkdir(`${base}/a/b/c`, { recursive: true });
  fs.mkdir(`${base}/a/b`, { recursive: true }); // exists: fine
  // 3 MiB + 7 in uneven chunks, so writes, reads and hashing all cross their chunk sizes.
  const w = fs.openWrite(`${base}/a/b/c/big.bin`, { hash: true });
  let x = 1;
  for (let i = 0; i < 48; i++) {
    const chunk = new Uint8Array(65_536 + (i === 47 ? 7 : 0));
    for (let j = 0; j < chunk.length; j++) {
      x = (Math.imul(x, 1103515245) + 12345) >>> 0;
      chunk[j] = x >>> 24;
    }
    w.write(chunk);
  }
  w.close();
  const written = w.sha256();
  const r = fs.openRead(`${base}/a/b/c/big.bin`);
  const again = new Sha256();
  for (const chunk of r.chunks(100_000)) again.update(chunk);
  r.close();
  fs.writeFile(`${base}/note.txt`, 'first\n');
  const append = fs.openWrite(`${base}/note.txt`, { append: true });
  append.write('second\n');
  append.close();
  fs.rename(`${base}/note.txt`, `${base}/a/note.txt`);
  const listing = fs.readDir(`${base}/a`).map((e) => `${e.name}:${e.type}`).join(',');
  const meta = files.stat(`${base}/a/b/c/big.bin`);
  const a = artifact('big', `${base}/a/b/c/big.bin`);
  const o = new Output()
    .value('written-sha256', written)
    .value('read-sha256', again.hex())
    .value('size', fs.stat(`${base}/a/b/c/big.bin`).size)
    .value('note', fs.readText(`${base}/a/note.txt`))
    .value('listing', listing)
    .value('mode', meta.mode.toString(8))
    .value('space', files.space(base).totalBytes > 0n)
    .artifact(a);
  fs.remove(`${base}/a/note.txt`);
  o.value('note-exists', fs.exists(`${base}/a/note.txt`));
  return o;
}

/** An endless loop the engine cannot skip. */
function spin(): never {
  let n = 0;
  for (;;) n = (n + 1) | 0;
}

/** Allocates 1 MiB buffers, touching every page, and keeps them all. */
function memoryBomb(): never {
  const kept: Uint8Array[] = [];
  for (;;) {
    const chunk = new Uint8Array(1 << 20);
    for (let i = 0; i < chunk.length; i += 4096) chunk[i] = 1;
    kept.push(chunk);
  }
}

export const run = defineStep(config, (_ctx, cfg) => {
  switch (cfg.mode) {
    case 'escape':
      return escape(cfg.data, cfg.out, cfg.command, cfg.origin);
    case 'loop':
      return spin();
    case 'memory-bomb':
      return memoryBomb();
    case 'memory-caught':
      // A plugin that catches its own allocation failure and returns an error of its own.
      try {
        return memoryBomb();
      } catch {
        throw new Internal('could not allocate the buffers');
      }
    case 'sdk':
      return sdk(cfg.out);
  }
});
