// `disk-usage` step plugin (the TypeScript example): walks a mounted folder and reports its
// size by top-level entry; with `maxBytes` it fails when the folder is over that quota, with
// `report` it writes a JSON report (returned as an artifact). Its Rust twin is
// tests/plugins/disk-usage-rs: same config, outputs and report.
//
// Config: `root` (guest path of the folder), `exclude` (anchored globs relative to it, the rules
// of archive's), `maxBytes` (bytes, or a size such as "10GiB"), `report` (guest path in a
// writable mount). Outputs: `files`, `bytes`, `largest`, `largest-bytes`, `bytes.<entry>` per
// top-level file or folder, and `quota` when one is set.
import { GlobSet, Io, NotFound, Output, artifact, defineStep, files, fs, t } from '@qodify/plugin-sdk';

import { type Entry, human, reportJson, walk } from './usage';

const config = t.object({
  root: t.string(),
  exclude: t.array(t.string()).default([]),
  maxBytes: t.size().optional(),
  report: t.string().optional(),
});

function list(path: string): Entry[] {
  return files.listDir(path).map((e) => ({ name: e.name, kind: e.metadata.kind, size: e.metadata.size }));
}

export const run = defineStep(config, (ctx, cfg) => {
  const exclude = GlobSet.build('exclude', cfg.exclude);
  if (files.stat(cfg.root).kind !== 'directory') throw new NotFound(`root ${cfg.root} is not a folder`);
  const usage = walk(ctx, list, cfg.root, exclude);
  ctx.info(`${cfg.root}: ${usage.files} files, ${human(usage.bytes)}`);

  const out = new Output()
    .value('files', usage.files)
    .value('bytes', usage.bytes)
    .value('largest', usage.largest?.path ?? '')
    .value('largest-bytes', usage.largest?.bytes ?? 0n);
  for (const e of usage.entries) out.value(`bytes.${e.name}`, e.bytes);
  if (cfg.maxBytes !== undefined) out.value('quota', cfg.maxBytes);

  if (cfg.report !== undefined) {
    fs.writeFile(cfg.report, reportJson(cfg.root, usage, cfg.maxBytes));
    out.artifact(artifact('report', cfg.report));
  }
  if (cfg.maxBytes !== undefined && usage.bytes > BigInt(cfg.maxBytes)) {
    throw new Io(
      `${cfg.root} uses ${human(usage.bytes)} (${usage.bytes} bytes), over its quota of ${human(cfg.maxBytes)} (maxBytes = ${cfg.maxBytes})`,
    );
  }
  return out;
});
