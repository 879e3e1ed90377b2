//! Project automation, run as `cargo xtask <command>`: build the web console, the host and every
//! plugin, run all tests, run the demo, run benchmarks, scaffold a plugin.

mod bench;
mod bench_api;
mod bench_console;
mod bench_nodes;
mod bench_offsite;
mod bench_plugins;
mod bench_upgrade;
mod demo;
mod manifest;
mod scaffold;
mod scaffold_ts;
mod ts_plugins;

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context as _, Result, bail};

const HELP: &str = "\
cargo xtask <command>

Commands:
  build [--release]   build the web console (console/: `npm ci` when needed, `npm run build`;
                      the host embeds console/dist; without npm a warning, an error under CI),
                      then qodify-host and every plugin (wasm32-wasip2); plugins land in
                      <target>/plugins/<id>.wasm, test-only plugins in <target>/test-plugins/;
                      then the TypeScript plugins (plugins-ts/<id>, tests/plugins-ts/<id>:
                      `npm ci` in sdk/ts when needed, one node process, unchanged ones skipped)
                      beside them. A plugin folder's qodify-plugin.toml is appended to its
                      component as the `qodify-manifest` custom section
  test                build, then run every test (host, plugins, end-to-end, the console's
                      Vitest suite, the TypeScript SDK's and plugins' Node tests)
  demo                make a sample customer and back it up with the shipped `backup` pipeline
  bench               archive plugin vs native `tar -czf`, per-step overhead, a whole backup vs a
                      plain script, the HTTP API under load, and the downtime of a layout
                      migration and of an upgrade's swap on real PM2 apps vs plain scripts
                      (release build); pick some with --archive-only, --backup-only, --api-only,
                      --upgrade-only, --console-only (the console's first-load JS and render
                      times in Chromium with 1000 customers and backups vs a plain table),
                      --nodes-only (three hosts sharing one PostgreSQL store vs one on SQLite:
                      the API load, history through another host, event latency from the
                      executing host to SSE on another; needs PostgreSQL on 127.0.0.1:5432),
                      --plugins-only (the TypeScript example plugin vs its Rust twin: size,
                      compile, disk-cache load, warm instantiation and run time),
                      --reuse-only (a second backup of an unchanged customer vs the first),
                      --offsite-only (restic's bytes and seconds of a first and a second,
                      unchanged off-site copy; a restore drill vs the backup; needs restic and
                      rclone).
                      --runs N (3) for archive, backup and upgrade. API (and nodes) options:
                      --clients N (200), --duration-secs N (30), --poll-ms N (100), --workers N
                      (4), --history-runs N (1000), --samples N (500). Upgrade options:
                      --pm2-mode cluster|fork|both (both), --cluster-sched rr|none|both (both:
                      the PM2 daemon's NODE_CLUSTER_SCHED_POLICY in cluster mode); needs pm2,
                      node and PostgreSQL
  new-plugin <id> [--ts] [--dir <parent>]
                      scaffold a Rust step plugin: plugins/<id> (a workspace member), or
                      <parent>/<id> as a crate of its own using this checkout's SDK; it comes
                      with its capability manifest, a fixture, a native test and the expected
                      output of `qodify-host step` on the fixture. With --ts a TypeScript plugin
                      in plugins-ts/<id> (or <parent>/<id>) using sdk/ts, with the same kit and
                      Node tests (its logic, and the built plugin under `qodify-host step`)
";

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let rest: Vec<&str> = args.iter().skip(1).map(String::as_str).collect();
    match args.first().map(String::as_str) {
        Some("build") => build(rest.contains(&"--release")).map(|_| ()),
        Some("test") => test(),
        Some("demo") => demo::run(),
        Some("bench") => bench::run(&rest),
        Some("new-plugin") => new_plugin(&rest),
        Some("-h" | "--help" | "help") | None => {
            print!("{HELP}");
            Ok(())
        }
        Some(other) => bail!("unknown command `{other}`\n\n{HELP}"),
    }
}

/// The workspace root (the folder holding this repository's Cargo.toml).
pub fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask lives in the workspace")
        .to_path_buf()
}

/// Cargo's target folder (honours CARGO_TARGET_DIR).
pub fn target_dir() -> Result<PathBuf> {
    let out = Command::new(cargo())
        .args(["metadata", "--format-version", "1", "--no-deps"])
        .current_dir(root())
        .output()?;
    anyhow::ensure!(
        out.status.success(),
        "cargo metadata failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout)?;
    Ok(PathBuf::from(
        v["target_directory"]
            .as_str()
            .context("no target_directory")?,
    ))
}

fn cargo() -> String {
    std::env::var("CARGO").unwrap_or_else(|_| "cargo".into())
}

/// Runs a command in the workspace root, failing on a non-zero exit.
pub fn run(cmd: &mut Command) -> Result<()> {
    cmd.current_dir(root());
    eprintln!("$ {}", format!("{cmd:?}").replace('"', ""));
    let status = cmd.status().with_context(|| format!("starting {cmd:?}"))?;
    anyhow::ensure!(status.success(), "{cmd:?} failed with {status}");
    Ok(())
}

/// Wasm plugin crates: (package name = plugin id, is it test-only).
fn plugin_crates() -> Result<Vec<(String, bool)>> {
    let mut out = Vec::new();
    for (dir, test_only) in [("plugins", false), ("tests/plugins", true)] {
        let Ok(rd) = std::fs::read_dir(root().join(dir)) else {
            continue;
        };
        for e in rd.flatten() {
            let manifest = e.path().join("Cargo.toml");
            let Ok(text) = std::fs::read_to_string(&manifest) else {
                continue;
            };
            // Only crates that build a component (the SDK is a library, not a plugin).
            if text.contains("cdylib") {
                out.push((e.file_name().to_string_lossy().into_owned(), test_only));
            }
        }
    }
    out.sort();
    Ok(out)
}

fn ensure_wasm_target() -> Result<()> {
    let out = Command::new("rustup")
        .args(["target", "list", "--installed"])
        .output();
    let installed = out
        .map(|o| String::from_utf8_lossy(&o.stdout).contains("wasm32-wasip2"))
        .unwrap_or(false);
    if !installed {
        run(Command::new("rustup").args(["target", "add", "wasm32-wasip2"]))?;
    }
    Ok(())
}

/// Builds the host (dev or release profile) and every plugin (always release: plugins are small
/// and their speed is the product's speed). Returns the target folder.
pub fn build(release: bool) -> Result<PathBuf> {
    // Before the host: it embeds console/dist when it compiles.
    build_console()?;
    ensure_wasm_target()?;
    let target = target_dir()?;
    let plugins = plugin_crates()?;
    let mut cmd = Command::new(cargo());
    cmd.args(["build", "--release", "--target", "wasm32-wasip2"]);
    for (p, _) in &plugins {
        cmd.args(["-p", p]);
    }
    run(&mut cmd)?;
    let mut cmd = Command::new(cargo());
    cmd.args(["build", "-p", "qodify-host"]);
    if release {
        cmd.arg("--release");
    }
    run(&mut cmd)?;
    for (p, test_only) in &plugins {
        let built = target
            .join("wasm32-wasip2/release")
            .join(format!("{}.wasm", p.replace('-', "_")));
        let dest_dir = target.join(if *test_only {
            "test-plugins"
        } else {
            "plugins"
        });
        std::fs::create_dir_all(&dest_dir)?;
        let dest = dest_dir.join(format!("{p}.wasm"));
        let component =
            std::fs::read(&built).with_context(|| format!("reading {}", built.display()))?;
        let source_dir = root()
            .join(if *test_only {
                "tests/plugins"
            } else {
                "plugins"
            })
            .join(p);
        let new = manifest::embed(component, &source_dir)?;
        // Copy only on change, so the host's compile cache and file times stay stable.
        if std::fs::read(&dest).ok().as_deref() != Some(&new[..]) {
            std::fs::write(&dest, &new)?;
        }
    }
    ts_plugins::build(&target)?;
    eprintln!("plugins: {}", target.join("plugins").display());
    Ok(target)
}

/// Runs a command in `dir`, failing on a non-zero exit.
fn run_in(dir: &Path, cmd: &mut Command) -> Result<()> {
    cmd.current_dir(dir);
    eprintln!(
        "$ (cd {}) {}",
        dir.display(),
        format!("{cmd:?}").replace('"', "")
    );
    let status = cmd.status().with_context(|| format!("starting {cmd:?}"))?;
    anyhow::ensure!(
        status.success(),
        "{cmd:?} in {} failed with {status}",
        dir.display()
    );
    Ok(())
}

fn console_dir() -> PathBuf {
    root().join("console")
}

/// Whether npm can be run. Without it the console is skipped with a warning (the host then
/// serves a page saying how to build it), except under CI, where the console must be built.
fn npm_available(what: &str) -> Result<bool> {
    let found = Command::new("npm")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if found {
        return Ok(true);
    }
    anyhow::ensure!(
        std::env::var("CI").as_deref() != Ok("true"),
        "npm is not on PATH, and CI=true needs {what}: install Node.js 20.19+ with npm (e.g. `apt-get install nodejs npm`)"
    );
    eprintln!(
        "warning: npm is not on PATH, so {what} is skipped; install Node.js 20.19+ with npm to include it"
    );
    Ok(false)
}

/// True when `<dir>/node_modules` is missing or older than `package-lock.json` (npm writes
/// `node_modules/.package-lock.json` at every install).
fn npm_deps_stale(dir: &Path) -> bool {
    let modified = |p: PathBuf| std::fs::metadata(p).and_then(|m| m.modified()).ok();
    match (
        modified(dir.join("package-lock.json")),
        modified(dir.join("node_modules/.package-lock.json")),
    ) {
        (Some(lock), Some(installed)) => lock > installed,
        _ => true,
    }
}

/// `npm ci` in `dir` when its packages are missing or older than its lock file.
fn npm_ci_if_stale(dir: &Path) -> Result<()> {
    if npm_deps_stale(dir) {
        run_in(
            dir,
            Command::new("npm").args(["ci", "--no-audit", "--no-fund"]),
        )?;
    }
    Ok(())
}

/// Installs the console's packages when needed and builds it into `console/dist`.
fn build_console() -> Result<()> {
    let dir = console_dir();
    if !npm_available("the web console's build")? {
        return Ok(());
    }
    npm_ci_if_stale(&dir)?;
    run_in(&dir, Command::new("npm").args(["run", "build"]))
}

fn test() -> Result<()> {
    let target = build(false)?;
    // The console's component tests (Vitest); `build` installed its packages.
    if npm_available("the web console's tests")? {
        run_in(
            &console_dir(),
            Command::new("npm").args(["test", "--", "--run"]),
        )?;
    }
    ts_plugins::test(&target)?;
    let plugins: Vec<String> = plugin_crates()?.into_iter().map(|(p, _)| p).collect();
    // Plugin logic is tested natively (the SDK's imports are stubs off wasm).
    let mut cmd = Command::new(cargo());
    cmd.args(["test", "-p", "qodify-plugin-sdk"]);
    for p in &plugins {
        cmd.args(["-p", p]);
    }
    run(&mut cmd)?;
    run(Command::new(cargo())
        .args(["test", "--workspace", "--exclude", "qodify-plugin-sdk"])
        .args(plugins.iter().flat_map(|p| ["--exclude", p.as_str()]))
        .env("QODIFY_TEST_TARGET_DIR", &target))
}

fn new_plugin(args: &[&str]) -> Result<()> {
    let usage = "usage: cargo xtask new-plugin <id> [--ts] [--dir <parent folder>]  (id: lowercase letters, digits and -)";
    let (mut id, mut ts, mut dir) = (None, false, None);
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match *a {
            "--ts" => ts = true,
            "--dir" => dir = Some(PathBuf::from(it.next().context(usage)?)),
            flag if flag.starts_with('-') => bail!("unknown option `{flag}`; {usage}"),
            name if id.is_none() => id = Some(name),
            extra => bail!("unexpected `{extra}`; {usage}"),
        }
    }
    let id = id.context(usage)?;
    if ts {
        let dir = scaffold_ts::create(id, dir.as_deref())?;
        let build = if dir.parent() == Some(&root().join("plugins-ts")) {
            format!("`cargo xtask build` builds it into <target>/plugins/{id}.wasm")
        } else {
            format!(
                "`node {}/sdk/ts/build.mjs build {}=<out>/{id}.wasm` builds it",
                root().display(),
                dir.display()
            )
        };
        eprintln!(
            "created {}: {build}; `node {}/sdk/ts/build.mjs test {}` runs its tests (its step test needs QODIFY_HOST and QODIFY_PLUGINS_DIR; `cargo xtask test` sets them)",
            dir.display(),
            root().display(),
            dir.display()
        );
        return Ok(());
    }
    let dir = scaffold::rust(id, dir.as_deref())?;
    eprintln!(
        "created {}: `cargo test` tests its logic natively; {}; then `qodify-host step {id} --fixture tests/fixture --step-config tests/step.toml` runs it (see its README.md)",
        dir.display(),
        if dir.starts_with(root().join("plugins")) {
            format!("`cargo xtask build` builds it into <target>/plugins/{id}.wasm")
        } else {
            "`cargo build --release --target wasm32-wasip2` builds it".to_owned()
        }
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, SystemTime};

    #[test]
    fn npm_packages_are_installed_when_missing_or_older_than_the_lock_file() {
        let dir = std::env::temp_dir().join(format!("xtask-console-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("node_modules")).unwrap();
        let lock = dir.join("package-lock.json");
        let installed = dir.join("node_modules/.package-lock.json");
        std::fs::write(&lock, "{}").unwrap();
        assert!(npm_deps_stale(&dir), "no install yet");

        std::fs::write(&installed, "{}").unwrap();
        let at = |path: &Path, t: SystemTime| {
            std::fs::File::options()
                .write(true)
                .open(path)
                .unwrap()
                .set_modified(t)
                .unwrap()
        };
        let now = SystemTime::now();
        at(&lock, now - Duration::from_secs(60));
        at(&installed, now);
        assert!(
            !npm_deps_stale(&dir),
            "installed after the lock was written"
        );

        at(&lock, now + Duration::from_secs(60));
        assert!(npm_deps_stale(&dir), "the lock changed since the install");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
