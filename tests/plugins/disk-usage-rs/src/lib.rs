//! `disk-usage-rs` test plugin: the Rust twin of the TypeScript example `plugins-ts/disk-usage`,
//! with the same config, outputs and report byte for byte, so the two can be compared on the
//! same folder (`host/tests/ts_plugin.rs`) and benchmarked (`cargo xtask bench --plugins-only`).
//!
//! Config: `root` (guest path of the folder), `exclude` (anchored globs relative to it),
//! `maxBytes` (bytes, or a size such as `"10GiB"`), `report` (guest path in a writable mount).
//! Outputs: `files`, `bytes`, `largest`, `largest-bytes`, `bytes.<entry>` per top-level file or
//! folder, and `quota` when one is set.

use glob_rules::GlobSet;
use qodify_plugin_sdk::fs::{self, FileKind};
use qodify_plugin_sdk::prelude::*;
use serde::Serialize;

/// The step's config (camelCase, like the TypeScript plugin's).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct Config {
    root: String,
    #[serde(default)]
    exclude: Vec<String>,
    #[serde(default)]
    max_bytes: Option<Size>,
    #[serde(default)]
    report: Option<String>,
}

/// A byte count: a number, or text with a unit (`10GiB`, `500MB`).
#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum Size {
    Bytes(u64),
    Text(String),
}

impl Size {
    fn bytes(&self) -> Result<u64, Error> {
        match self {
            Size::Bytes(n) => Ok(*n),
            Size::Text(s) => parse_size(s).ok_or_else(|| {
                Error::invalid_config(format!(
                    "config field `maxBytes`: expected a size such as 500MiB or a number of bytes, got the string {s:?}"
                ))
            }),
        }
    }
}

/// `10GiB`, `1.5 KiB`, `2GB`, `7`: the sizes the TypeScript SDK's `parseSize` reads.
pub fn parse_size(text: &str) -> Option<u64> {
    let t = text.trim();
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (number, unit) = t.split_at(split);
    let number: f64 = number.parse().ok()?;
    let unit: f64 = match unit.trim().to_ascii_uppercase().as_str() {
        "" | "B" => 1.0,
        "KB" => 1e3,
        "MB" => 1e6,
        "GB" => 1e9,
        "TB" => 1e12,
        "KIB" => 1024.0,
        "MIB" => 1024f64.powi(2),
        "GIB" => 1024f64.powi(3),
        "TIB" => 1024f64.powi(4),
        _ => return None,
    };
    let bytes = (number * unit).round();
    (bytes >= 0.0 && bytes < 2f64.powi(53)).then_some(bytes as u64)
}

/// One folder entry, reduced to what the walk needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// Its name.
    pub name: String,
    /// What it is (symlinks are not followed).
    pub kind: FileKind,
    /// Its size in bytes.
    pub size: u64,
}

/// What the walk found.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Usage {
    /// Regular files counted.
    pub files: u64,
    /// Their bytes.
    pub bytes: u64,
    /// The largest file (first in walk order among equals), relative to the root.
    pub largest: Option<(String, u64)>,
    /// Bytes under each top-level file or folder that is not excluded, in name order.
    pub entries: Vec<(String, u64)>,
}

impl Usage {
    fn count(&mut self, path: &str, size: u64) {
        self.files += 1;
        self.bytes += size;
        if self.largest.as_ref().is_none_or(|(_, b)| size > *b) {
            self.largest = Some((path.to_owned(), size));
        }
    }
}

/// Walks `root` depth-first in name order without following symlinks: regular files count, the
/// rest does not; a path (relative to `root`) matching `exclude` is skipped with all it holds.
pub fn walk(
    ctx: &Context,
    list: &dyn Fn(&str) -> Result<Vec<Entry>, Error>,
    root: &str,
    exclude: Option<&GlobSet>,
) -> Result<Usage, Error> {
    let base = root.trim_end_matches('/');
    let excluded = |path: &str| exclude.is_some_and(|g| g.is_match(path));
    let mut usage = Usage::default();
    fn visit(
        ctx: &Context,
        list: &dyn Fn(&str) -> Result<Vec<Entry>, Error>,
        excluded: &dyn Fn(&str) -> bool,
        usage: &mut Usage,
        dir: &str,
        rel: &str,
    ) -> Result<u64, Error> {
        ctx.check_cancelled()?;
        let mut total = 0;
        for e in list(dir)? {
            let path = format!("{rel}/{}", e.name);
            if excluded(&path) {
                continue;
            }
            match e.kind {
                FileKind::Directory => {
                    total += visit(
                        ctx,
                        list,
                        excluded,
                        usage,
                        &format!("{dir}/{}", e.name),
                        &path,
                    )?
                }
                FileKind::File => {
                    usage.count(&path, e.size);
                    total += e.size;
                }
                FileKind::Symlink | FileKind::Other => {}
            }
        }
        Ok(total)
    }
    let top: Vec<Entry> = list(if base.is_empty() { "/" } else { base })?
        .into_iter()
        .filter(|e| !excluded(&e.name))
        .collect();
    for (i, e) in top.iter().enumerate() {
        ctx.progress(
            (100 * i) as f32 / top.len().max(1) as f32,
            format!("measuring {}", e.name),
        );
        match e.kind {
            FileKind::Directory => {
                let bytes = visit(
                    ctx,
                    list,
                    &excluded,
                    &mut usage,
                    &format!("{base}/{}", e.name),
                    &e.name,
                )?;
                usage.entries.push((e.name.clone(), bytes));
            }
            FileKind::File => {
                usage.count(&e.name, e.size);
                usage.entries.push((e.name.clone(), e.size));
            }
            FileKind::Symlink | FileKind::Other => {}
        }
    }
    ctx.progress(
        100.0,
        format!("{} files, {} bytes", usage.files, usage.bytes),
    );
    Ok(usage)
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Report<'a> {
    root: &'a str,
    files: u64,
    bytes: u64,
    largest: Option<Largest<'a>>,
    entries: Vec<ReportEntry<'a>>,
    max_bytes: Option<u64>,
}

#[derive(Serialize)]
struct Largest<'a> {
    path: &'a str,
    bytes: u64,
}

#[derive(Serialize)]
struct ReportEntry<'a> {
    name: &'a str,
    bytes: u64,
}

/// The JSON report, byte for byte what the TypeScript plugin writes.
pub fn report_json(root: &str, usage: &Usage, max_bytes: Option<u64>) -> String {
    let report = Report {
        root,
        files: usage.files,
        bytes: usage.bytes,
        largest: usage.largest.as_ref().map(|(path, bytes)| Largest {
            path,
            bytes: *bytes,
        }),
        entries: usage
            .entries
            .iter()
            .map(|(name, bytes)| ReportEntry {
                name,
                bytes: *bytes,
            })
            .collect(),
        max_bytes,
    };
    let mut text = serde_json::to_string_pretty(&report).expect("a report always serialises");
    text.push('\n');
    text
}

/// `12.3 GiB`: a size for people.
pub fn human(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut n = bytes as f64;
    let mut u = 0;
    while n >= 1024.0 && u < UNITS.len() - 1 {
        n /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{bytes} B")
    } else {
        format!("{n:.1} {}", UNITS[u])
    }
}

fn list(path: &str) -> Result<Vec<Entry>, Error> {
    Ok(fs::list_dir(path)?
        .into_iter()
        .map(|e| Entry {
            name: e.name,
            kind: e.metadata.kind,
            size: e.metadata.size,
        })
        .collect())
}

struct DiskUsage;

impl Step for DiskUsage {
    type Config = Config;

    fn run(ctx: &Context, cfg: Config) -> Result<Output, Error> {
        let exclude = glob_rules::glob_set("exclude", &cfg.exclude)?;
        let max_bytes = cfg.max_bytes.as_ref().map(Size::bytes).transpose()?;
        if !fs::stat(&cfg.root)?.is_dir() {
            return Err(Error::not_found(format!(
                "root {} is not a folder",
                cfg.root
            )));
        }
        let usage = walk(ctx, &list, &cfg.root, exclude.as_ref())?;
        ctx.info(format!(
            "{}: {} files, {}",
            cfg.root,
            usage.files,
            human(usage.bytes)
        ));

        let mut out = Output::new()
            .value("files", usage.files)
            .value("bytes", usage.bytes)
            .value(
                "largest",
                usage.largest.as_ref().map_or("", |(p, _)| p.as_str()),
            )
            .value("largest-bytes", usage.largest.as_ref().map_or(0, |l| l.1));
        for (name, bytes) in &usage.entries {
            out.push_value(format!("bytes.{name}"), bytes);
        }
        if let Some(max) = max_bytes {
            out.push_value("quota", max);
        }
        if let Some(report) = &cfg.report {
            let text = report_json(&cfg.root, &usage, max_bytes);
            let mut w = HashingWriter::new(
                std::fs::File::create(report).context(format!("creating {report}"))?,
            );
            w.write_all(text.as_bytes())
                .context(format!("writing {report}"))?;
            let (_, size, sha256) = w.finish();
            out.push_artifact(Artifact {
                name: "report".into(),
                path: report.clone(),
                size,
                sha256,
            });
        }
        if let Some(max) = max_bytes.filter(|m| usage.bytes > *m) {
            return Err(Error::io(format!(
                "{} uses {} ({} bytes), over its quota of {} (maxBytes = {max})",
                cfg.root,
                human(usage.bytes),
                usage.bytes,
                human(max)
            )));
        }
        Ok(out)
    }
}

export_step!(DiskUsage);

#[cfg(test)]
mod tests {
    use super::*;

    fn tree(path: &str) -> Result<Vec<Entry>, Error> {
        let e = |name: &str, kind, size| Entry {
            name: name.into(),
            kind,
            size,
        };
        use FileKind::*;
        Ok(match path {
            "/c" => vec![
                e("backend", Directory, 0),
                e("current", Symlink, 12),
                e("notes.txt", File, 5),
                e("tmp", Directory, 0),
            ],
            "/c/backend" => vec![
                e("a.js", File, 100),
                e("logs", Directory, 0),
                e("z.js", File, 100),
            ],
            "/c/backend/logs" => vec![e("x.log", File, 1000)],
            "/c/tmp" => vec![e("big", File, 10_000)],
            other => panic!("listed {other}"),
        })
    }

    fn globs(patterns: &[&str]) -> Option<GlobSet> {
        let p: Vec<String> = patterns.iter().map(|s| s.to_string()).collect();
        glob_rules::glob_set("exclude", &p).unwrap()
    }

    // The same cases as plugins-ts/disk-usage/test/usage.test.ts.
    #[test]
    fn files_count_symlinks_do_not_excluded_folders_are_skipped_whole() {
        let ctx = Context::builder().build();
        let ex = globs(&["tmp/**", "**/*.log"]);
        let usage = walk(&ctx, &tree, "/c", ex.as_ref()).unwrap();
        assert_eq!(usage.files, 3);
        assert_eq!(usage.bytes, 205);
        assert_eq!(usage.largest, Some(("backend/a.js".into(), 100)));
        assert_eq!(
            usage.entries,
            [("backend".into(), 200), ("notes.txt".into(), 5)]
        );
        assert_eq!(
            ctx.reported().last().unwrap(),
            &(100.0, "3 files, 205 bytes".to_string())
        );
    }

    #[test]
    fn without_excludes_everything_is_walked() {
        let usage = walk(&Context::builder().build(), &tree, "/c/", None).unwrap();
        assert_eq!(usage.files, 5);
        assert_eq!(usage.largest, Some(("tmp/big".into(), 10_000)));
    }

    #[test]
    fn a_cancelled_run_stops_the_walk() {
        let ctx = Context::builder().build();
        ctx.cancel();
        let err = walk(&ctx, &tree, "/c", None).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Cancelled);
    }

    #[test]
    fn the_report_is_the_json_the_typescript_plugin_writes() {
        let ctx = Context::builder().build();
        let usage = walk(&ctx, &tree, "/c", globs(&["tmp"]).as_ref()).unwrap();
        assert_eq!(
            report_json("/c", &usage, Some(2048)),
            r#"{
  "root": "/c",
  "files": 4,
  "bytes": 1205,
  "largest": {
    "path": "backend/logs/x.log",
    "bytes": 1000
  },
  "entries": [
    {
      "name": "backend",
      "bytes": 1200
    },
    {
      "name": "notes.txt",
      "bytes": 5
    }
  ],
  "maxBytes": 2048
}
"#
        );
        let empty = report_json("/c", &Usage::default(), None);
        assert!(
            empty.contains("\"largest\": null,\n  \"entries\": [],\n  \"maxBytes\": null\n"),
            "{empty}"
        );
    }

    #[test]
    fn sizes_parse_like_the_typescript_sdk() {
        assert_eq!(parse_size("10GiB"), Some(10 << 30));
        assert_eq!(parse_size("1.5 KiB"), Some(1536));
        assert_eq!(parse_size("2GB"), Some(2_000_000_000));
        assert_eq!(parse_size("7"), Some(7));
        assert_eq!(parse_size("7 parsecs"), None);
        assert_eq!(human(5), "5 B");
        assert_eq!(human(1536), "1.5 KiB");
        assert_eq!(human(10 << 30), "10.0 GiB");
    }
}
