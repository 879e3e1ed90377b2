//! `cargo xtask new-plugin <id> --dir <parent>` makes a Rust plugin that, as generated, passes
//! its own test, builds for wasm32-wasip2, is accepted by `plugins add` with its manifest, and
//! gives the output its `tests/expected.json` names under `qodify-host step` on its fixture.

mod common;

use std::path::Path;
use std::process::Command;

use common::{run, target_dir};

fn ok(out: &std::process::Output, what: &str) {
    assert!(
        out.status.success(),
        "{what} failed\nstdout: {}\nstderr: {}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// `cargo` in the scaffolded crate, with a target folder of its own that persists between
/// runs (the crate is a workspace of its own, with its own dependency graph).
fn cargo(dir: &Path, args: &[&str]) -> std::process::Output {
    run(
        Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
            .args(args)
            .current_dir(dir)
            .env("CARGO_TARGET_DIR", target_dir().join("scaffold-target"))
            .env_remove("RUSTFLAGS"),
    )
}

#[test]
fn a_scaffolded_rust_plugin_builds_passes_its_test_and_runs_under_step() {
    let tmp = tempfile::tempdir().unwrap();
    let xtask = target_dir().join("debug/xtask");
    assert!(
        xtask.is_file(),
        "{} missing: run `cargo xtask build`",
        xtask.display()
    );
    let out = run(Command::new(&xtask)
        .args(["new-plugin", "scaffolded-count", "--dir"])
        .arg(tmp.path()));
    ok(&out, "new-plugin");
    let dir = tmp.path().join("scaffolded-count");
    for f in [
        "Cargo.toml",
        "src/lib.rs",
        "qodify-plugin.toml",
        "README.md",
        "tests/expected.json",
    ] {
        assert!(dir.join(f).is_file(), "{f} missing");
    }
    // A second time: refused, nothing overwritten.
    let again = run(Command::new(&xtask)
        .args(["new-plugin", "scaffolded-count", "--dir"])
        .arg(tmp.path()));
    assert!(!again.status.success());
    assert!(String::from_utf8_lossy(&again.stderr).contains("already exists"));

    ok(&cargo(&dir, &["test", "--quiet"]), "the generated test");
    ok(
        &cargo(
            &dir,
            &["build", "--release", "--quiet", "--target", "wasm32-wasip2"],
        ),
        "the wasm build",
    );
    let wasm = target_dir().join("scaffold-target/wasm32-wasip2/release/scaffolded_count.wasm");

    let host = |args: &[&str]| {
        let mut c = Command::new(target_dir().join("debug/qodify-host"));
        c.env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("QODIFY_DATA_DIR", tmp.path().join("data"))
            .arg("--plugins-dir")
            .arg(tmp.path().join("built"))
            .args(args)
            .current_dir(&dir);
        run(&mut c)
    };
    let out = host(&[
        "plugins",
        "add",
        wasm.to_str().unwrap(),
        "--id",
        "scaffolded-count",
        "--manifest",
        "qodify-plugin.toml",
        "--json",
    ]);
    ok(&out, "plugins add");
    let added: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(added["plugin"]["declares"]["mounts"][0]["role"], "source");

    let out = host(&[
        "step",
        "scaffolded-count",
        "--fixture",
        "tests/fixture",
        "--step-config",
        "tests/step.toml",
        "--json",
    ]);
    ok(&out, "step");
    let got: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let expected: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("tests/expected.json")).unwrap())
            .unwrap();
    for (key, want) in expected.as_object().unwrap() {
        assert_eq!(&got[key], want, "{key} in {got}");
    }
}
