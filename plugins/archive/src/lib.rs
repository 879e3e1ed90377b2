//! `archive` step plugin: writes a `.tar.gz` of a granted folder into a granted output file.
//!
//! Modes, owners, mtimes and symlink targets come from the host's `files` interface (WASI does not
//! expose them); entries are sorted, excludes are anchored globs, and file data that does not
//! compress is stored instead of deflated, which is where the time goes.
//!
//! Config (see [`Config`]): `source`, `output`, `name`, `exclude`, `keep`, `include`, `follow_symlinks`,
//! `level`, `prefix`, `backups`, `reuse`. Returns the artifact `{name, output, size, sha256}` and
//! the outputs `files`, `bytes` (input bytes), `excluded`, `fingerprint` (the source's, see
//! [`fingerprint`]; absent when a file changed moments ago) and `reused-from` (the backup whose
//! archive was linked instead of written, see [`reuse`]).

pub mod deflater;
pub mod fingerprint;
pub mod gz;
pub mod reuse;
pub mod tarball;
pub mod walk;

use std::fs::File;

use glob_rules::glob_set;
use qodify_plugin_sdk::fs;
use qodify_plugin_sdk::prelude::*;

use crate::tarball::{TarOptions, write_tar_gz};
use crate::walk::{Hooks, WalkOptions, is_within, normalize, walk};

/// The step's config.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Guest path of the folder to archive.
    pub source: String,
    /// Guest path of the `.tar.gz` to create (in a writable mount).
    pub output: String,
    /// Artifact name; default: the output's file name without `.tar.gz`/`.tgz`.
    #[serde(default)]
    pub name: Option<String>,
    /// Globs, relative to `source` and anchored at it, of entries to leave out.
    #[serde(default)]
    pub exclude: Vec<String>,
    /// Exclude patterns to drop again: `pattern = true` keeps what `pattern` would exclude.
    /// Pipelines set the values from params, e.g. `"**/logs/**" = "{{ include.logs }}"`.
    #[serde(default)]
    pub keep: std::collections::BTreeMap<String, bool>,
    /// When given, only files matching one of these globs are archived.
    #[serde(default)]
    pub include: Option<Vec<String>>,
    /// Store what symlinks point to (inside the mount only) instead of the links.
    #[serde(default)]
    pub follow_symlinks: bool,
    /// Deflate level 0-9.
    #[serde(default = "default_level")]
    pub level: u32,
    /// Folder to put every entry under, e.g. `backend`.
    #[serde(default)]
    pub prefix: Option<String>,
    /// Guest path of the customer's backups folder (a read-only mount is enough): an earlier
    /// complete backup's archive of the very same source is linked instead of written anew.
    #[serde(default)]
    pub backups: Option<String>,
    /// False to write the archive even when an earlier one could be reused (a full backup).
    #[serde(default = "default_reuse")]
    pub reuse: bool,
}

fn default_level() -> u32 {
    6
}

fn default_reuse() -> bool {
    true
}

struct Archive;

impl Step for Archive {
    type Config = Config;

    fn run(ctx: &Context, config: Config) -> Result<Output, Error> {
        let mut plan = Plan::new(config)?;
        let mount = ctx.mount_for(&plan.walk.source).ok_or_else(|| {
            Error::permission_denied(format!(
                "source {} is not inside a folder granted to this step",
                plan.walk.source
            ))
        })?;
        plan.walk.boundary = mount.guest_path.clone();
        let mut hooks = CtxHooks(ctx);
        let started = now();
        let walked = walk(&fs::HostFs, &plan.walk, &mut hooks)?;
        let fingerprint = match fingerprint::fingerprint(&walked, &plan.settings(), started) {
            Ok(fp) => Some(fp),
            Err(why) => {
                ctx.info(format!(
                    "{}: {why}, so this archive gets no fingerprint and a later backup makes it anew",
                    plan.name
                ));
                None
            }
        };
        if let Some(reused) = plan.try_reuse(ctx, &fs::HostFs, fingerprint.as_deref()) {
            let files = walked.entries.iter().filter(|e| e.meta.is_file()).count();
            ctx.info(format!(
                "{} unchanged since backup {} ({files} files, {:.1} MiB): its archive is linked, not written again",
                plan.name,
                reused.id,
                walked.total_bytes as f64 / 1048576.0
            ));
            return Ok(Output::new()
                .artifact(plan.name, plan.output, reused.size, reused.sha256)
                .value("files", files)
                .value("bytes", walked.total_bytes)
                .value("excluded", walked.excluded)
                .value("fingerprint", fingerprint.unwrap_or_default())
                .value("reused-from", reused.id));
        }

        let file = File::create(&plan.output)
            .with_context(|| format!("creating the archive {}", plan.output))?;
        let written = write_tar_gz(HashingWriter::new(file), &walked, &plan.tar, &mut hooks);
        let (writer, stats) = match written {
            Ok(done) => done,
            Err(e) => {
                // A half-written archive must not look like a result.
                let _ = std::fs::remove_file(&plan.output);
                return Err(e);
            }
        };
        let (_file, size, sha256) = writer.finish();
        ctx.info(format!(
            "archived {}: {} files, {:.1} MiB into {:.1} MiB ({} stored uncompressed), {} excluded",
            plan.tar.label,
            stats.files,
            stats.bytes as f64 / 1048576.0,
            size as f64 / 1048576.0,
            stats.stored_files,
            walked.excluded
        ));
        let out = Output::new()
            .artifact(plan.name, plan.output, size, sha256)
            .value("files", stats.files)
            .value("bytes", stats.bytes)
            .value("excluded", walked.excluded);
        Ok(match fingerprint {
            Some(fp) => out.value("fingerprint", fp),
            None => out,
        })
    }
}

/// The wall clock, as file timestamps count.
fn now() -> fs::Timestamp {
    let d = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    fs::Timestamp {
        seconds: d.as_secs() as i64,
        nanos: d.subsec_nanos(),
    }
}

export_step!(Archive);

/// A checked config: what to walk and how to write.
#[derive(Debug)]
pub struct Plan {
    /// Walk options; `boundary` is filled in from the step's mounts.
    pub walk: WalkOptions,
    /// Tar options.
    pub tar: TarOptions,
    /// Normalised output path.
    pub output: String,
    /// Artifact name.
    pub name: String,
    /// Exclude patterns in effect, include patterns: for the fingerprint.
    pub exclude: Vec<String>,
    /// Include patterns, when given.
    pub include: Option<Vec<String>>,
    /// Normalised guest path of the backups folder to reuse from.
    pub backups: Option<String>,
    /// Whether to look for an archive to reuse.
    pub reuse: bool,
}

impl Plan {
    /// Validates `config` (pure: no host calls).
    pub fn new(config: Config) -> Result<Plan, Error> {
        let source = normalize(&config.source).map_err(|e| e.context("source"))?;
        let output = normalize(&config.output).map_err(|e| e.context("output"))?;
        if config.level > 9 {
            return Err(Error::invalid_config(format!(
                "level {} is out of range; use 0 (store) to 9 (smallest)",
                config.level
            )));
        }
        let prefix = match config.prefix.as_deref().map(|p| p.trim_matches('/')) {
            None | Some("") => None,
            Some(p) if p.split('/').any(|c| c.is_empty() || c == "." || c == "..") => {
                return Err(Error::invalid_config(format!(
                    "prefix `{p}` must be a plain relative folder name like `backend`"
                )));
            }
            Some(p) => Some(p.to_string()),
        };
        let include = match &config.include {
            Some(patterns) if patterns.is_empty() => {
                return Err(Error::invalid_config(
                    "include is an empty list; leave it out to archive everything",
                ));
            }
            Some(patterns) => glob_set("include", patterns)?,
            None => None,
        };
        let file_name = output.rsplit('/').next().unwrap_or_default();
        let name = config.name.unwrap_or_else(|| {
            let stem = [".tar.gz", ".tgz", ".gz"]
                .iter()
                .find_map(|ext| file_name.strip_suffix(ext))
                .unwrap_or(file_name);
            stem.to_string()
        });
        if name.is_empty() {
            return Err(Error::invalid_config("name is empty"));
        }
        for pattern in config.keep.keys() {
            if !config.exclude.contains(pattern) {
                return Err(Error::invalid_config(format!(
                    "keep names `{pattern}`, which is not one of the exclude patterns [{}]",
                    config.exclude.join(", ")
                )));
            }
        }
        let exclude: Vec<String> = config
            .exclude
            .iter()
            .filter(|p| !config.keep.get(*p).copied().unwrap_or(false))
            .cloned()
            .collect();
        let skip_path = is_within(&source, &output).then(|| output.clone());
        let backups = match &config.backups {
            Some(b) => Some(normalize(b).map_err(|e| e.context("backups"))?),
            None => None,
        };
        Ok(Plan {
            walk: WalkOptions {
                boundary: source.clone(),
                exclude: glob_set("exclude", &exclude)?,
                include,
                follow_symlinks: config.follow_symlinks,
                skip_path,
                source,
                identities: true,
            },
            exclude,
            include: config.include,
            backups,
            reuse: config.reuse,
            tar: TarOptions {
                level: config.level,
                prefix,
                label: name.clone(),
            },
            output,
            name,
        })
    }
}

impl Plan {
    /// What besides the source shapes the archive.
    pub fn settings(&self) -> fingerprint::Settings<'_> {
        fingerprint::Settings {
            exclude: &self.exclude,
            include: self.include.as_deref(),
            follow_symlinks: self.walk.follow_symlinks,
            level: self.tar.level,
            prefix: self.tar.prefix.as_deref(),
            name: &self.name,
        }
    }

    /// Links an earlier backup's archive of this very source as the output, when reuse is on,
    /// the source has a fingerprint and an earlier complete backup has it; else says why not
    /// and returns `None`, and the caller writes the archive.
    pub fn try_reuse(
        &self,
        ctx: &Context,
        tree: &impl fs::FileSystem,
        fingerprint: Option<&str>,
    ) -> Option<backup_list::Reusable> {
        let (Some(backups), Some(fp)) = (self.backups.as_deref(), fingerprint) else {
            return None;
        };
        if !self.reuse {
            ctx.info(format!(
                "{}: a full backup, so the archive is written anew",
                self.name
            ));
            return None;
        }
        match reuse::reuse(tree, backups, &self.name, fp, &self.output) {
            Ok(Some(found)) => Some(found),
            Ok(None) => {
                ctx.info(format!(
                    "{}: no earlier complete backup has an archive of this very source; writing it",
                    self.name
                ));
                None
            }
            Err(e) => {
                ctx.warn(format!(
                    "{}: could not link the earlier archive ({e}); writing it instead",
                    self.name
                ));
                None
            }
        }
    }
}

struct CtxHooks<'a>(&'a Context);

impl Hooks for CtxHooks<'_> {
    fn warn(&mut self, message: &str) {
        self.0.warn(message);
    }

    fn progress(&mut self, percent: f32, message: &str) {
        self.0.progress(percent, message);
    }

    fn cancelled(&mut self) -> bool {
        self.0.is_cancelled()
    }
}

#[cfg(test)]
mod tests;
