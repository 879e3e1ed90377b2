//! TypeScript plugins in `cargo xtask build`: `npm ci` in `sdk/ts` when its packages are missing
//! or older than the lock, then one `node sdk/ts/build.mjs build` for every `plugins-ts/<id>/`
//! (into `<target>/plugins/<id>.wasm`) and `tests/plugins-ts/<id>/` (into
//! `<target>/test-plugins/<id>.wasm`). One node process, because componentize-js's engine
//! warms up once (~2 s per plugin after the first instead of 4–15 s each); build.mjs skips a
//! plugin whose sources, SDK and lock are unchanged (a content-hash stamp beside the `.wasm`).

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::Result;

use crate::{npm_available, npm_ci_if_stale, root, run_in};

/// The SDK folder: package.json, lock, build.mjs.
pub fn sdk_dir() -> PathBuf {
    root().join("sdk/ts")
}

/// A TypeScript plugin folder and where its component goes.
pub struct TsPlugin {
    /// The plugin id (the folder name and the `.wasm` stem).
    pub id: String,
    /// Its folder (`src/index.ts`, `tsconfig.json`, maybe `qodify-plugin.toml`).
    pub dir: PathBuf,
    /// True for `tests/plugins-ts/<id>`.
    pub test_only: bool,
}

impl TsPlugin {
    /// `<target>/plugins/<id>.wasm` or `<target>/test-plugins/<id>.wasm`.
    pub fn out(&self, target: &Path) -> PathBuf {
        let folder = if self.test_only {
            "test-plugins"
        } else {
            "plugins"
        };
        target.join(folder).join(format!("{}.wasm", self.id))
    }
}

/// Every TypeScript plugin folder (one with `src/index.ts`), sorted by id.
pub fn plugins() -> Vec<TsPlugin> {
    let mut out = Vec::new();
    for (dir, test_only) in [("plugins-ts", false), ("tests/plugins-ts", true)] {
        let Ok(entries) = std::fs::read_dir(root().join(dir)) else {
            continue;
        };
        for e in entries.flatten() {
            if e.path().join("src/index.ts").is_file() {
                out.push(TsPlugin {
                    id: e.file_name().to_string_lossy().into_owned(),
                    dir: e.path(),
                    test_only,
                });
            }
        }
    }
    out.sort_by(|a, b| a.id.cmp(&b.id));
    out
}

/// Installs the SDK's packages when needed. False (after a warning) without npm, except under
/// CI, where that is an error.
pub fn prepare_sdk(what: &str) -> Result<bool> {
    if !npm_available(what)? {
        return Ok(false);
    }
    npm_ci_if_stale(&sdk_dir())?;
    Ok(true)
}

/// Builds every TypeScript plugin that changed.
pub fn build(target: &Path) -> Result<()> {
    let plugins = plugins();
    if plugins.is_empty() || !prepare_sdk("the TypeScript plugins' build")? {
        return Ok(());
    }
    let mut cmd = Command::new("node");
    cmd.arg("build.mjs").arg("build");
    for p in &plugins {
        let mut job = p.dir.clone().into_os_string();
        job.push("=");
        job.push(p.out(target));
        cmd.arg(job);
    }
    run_in(&sdk_dir(), &mut cmd)
}

/// Runs the Node tests of the SDK and of every TypeScript plugin that has `test/`; those that
/// run a built plugin under `qodify-host step` get the host and the plugins `build` made.
pub fn test(target: &Path) -> Result<()> {
    if !prepare_sdk("the TypeScript SDK's tests")? {
        return Ok(());
    }
    let mut cmd = Command::new("node");
    cmd.args(["build.mjs", "test", "."])
        .args(plugins().iter().map(|p| p.dir.clone()))
        .env("QODIFY_HOST", target.join("debug/qodify-host"))
        .env("QODIFY_PLUGINS_DIR", target.join("plugins"))
        // The compile cache of `qodify-host step`, kept between runs.
        .env("QODIFY_DATA_DIR", target.join("ts-step-data"));
    run_in(&sdk_dir(), &mut cmd)
}
