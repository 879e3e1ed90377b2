//! The plugin kit end to end, through the real binary and real plugins: `qodify-host step` on a
//! fixture folder, a plugin built against the first released WIT (0.1.0) running on this host,
//! `plugins add` checking what it copies, manifests compared with grants by `validate` and
//! `plan`, and a capability change shown by `plan --diff` and audited by the run it affects.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::{Host, api, json_of, repo, run, sha256_file, target_dir, write};

const TOKEN: &str = "plugin-kit-token";

fn kit(name: &str) -> PathBuf {
    repo().join("tests/tests/plugin_kit").join(name)
}

/// `qodify-host` with the built plugins and the test plugins.
fn cmd(host: &Host) -> Command {
    let mut c = host.cmd();
    c.arg("--plugins-dir")
        .arg(target_dir().join("test-plugins"));
    c
}

fn stdout_json(out: &std::process::Output) -> serde_json::Value {
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "not JSON ({e}): {}\nstderr: {}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    })
}

fn stderr(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn step_runs_a_plugin_on_a_fixture_and_prints_the_expected_json() {
    let host = Host::new();
    let out = run(cmd(&host)
        .args(["step", "noop", "--json", "--fixture"])
        .arg(kit("fixture"))
        .arg("--step-config")
        .arg(kit("noop.toml")));
    assert!(out.status.success(), "{}", stderr(&out));
    let mut got = stdout_json(&out);
    // Volatile fields are checked, then left out of the comparison.
    let sha = got["sha256"].take();
    assert_eq!(
        sha.as_str().unwrap(),
        sha256_file(&target_dir().join("test-plugins/noop.wasm"))
    );
    assert!(got["durationMs"].take().as_u64().is_some());
    let expected: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(kit("noop.expected.json")).unwrap()).unwrap();
    got.as_object_mut()
        .unwrap()
        .retain(|k, _| k != "sha256" && k != "durationMs");
    assert_eq!(got, expected);

    // A bad grant is refused before anything runs, naming the grant (exit 2).
    let out = run(cmd(&host)
        .args(["step", "noop", "--grant", "../etc=/etc", "--fixture"])
        .arg(kit("fixture")));
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("`../etc`"), "{}", stderr(&out));
}

#[test]
fn a_plugin_built_against_wit_0_1_0_runs_on_this_host_and_its_calls_are_counted() {
    let wasm = target_dir().join("test-plugins/wit-compat.wasm");
    let imports = String::from_utf8_lossy(&std::fs::read(&wasm).unwrap()).into_owned();
    assert!(
        imports.contains("qodify:pipeline/files@0.1.0") && !imports.contains("@0.1.1"),
        "wit-compat must import the 0.1.0 interfaces"
    );
    let host = Host::new();
    let step = |extra: &[&str]| {
        let out = run(cmd(&host)
            .args([
                "step",
                "wit-compat",
                "--json",
                "--grant",
                "ro:.=/data",
                "--fixture",
            ])
            .arg(kit("fixture"))
            .args(extra));
        assert!(out.status.success(), "{}", stderr(&out));
        stdout_json(&out)
    };
    let granted = step(&["--program", "node:--version"]);
    let outputs: std::collections::BTreeMap<String, String> =
        serde_json::from_value(serde_json::Value::Object(
            granted["outputs"]
                .as_array()
                .unwrap()
                .iter()
                .map(|kv| (kv[0].as_str().unwrap().to_owned(), kv[1].clone()))
                .collect(),
        ))
        .unwrap();
    assert_eq!(outputs["wit"], "0.1.0");
    assert_eq!(outputs["entries"], "2", "a.txt and sub/");
    assert_eq!(outputs["stat"], "EntryKind::Directory");
    assert!(outputs["node"].starts_with('v'), "{granted}");
    assert_eq!(granted["used"]["programs"]["node"]["allowed"], 1);
    assert_eq!(
        granted["logs"][0]["message"],
        "wit 0.1.0 plugin for fixture.example"
    );

    // Not granted: the call is refused and counted as denied.
    let denied = step(&[]);
    let node = denied["outputs"]
        .as_array()
        .unwrap()
        .iter()
        .find(|kv| kv[0] == "node")
        .unwrap()[1]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(
        node.starts_with("denied") && node.contains("NotGranted"),
        "{node}"
    );
    assert_eq!(denied["used"]["programs"]["node"]["denied"], 1);
}

#[test]
fn step_keeps_a_hostile_plugin_in_its_mounts() {
    let host = Host::new();
    let fixture = host.tmp.path().join("fixture");
    write(&fixture.join("data/.env"), "SECRET=1\n");
    write(&fixture.join("data/ok.txt"), "fine\n");
    std::fs::create_dir_all(fixture.join("out")).unwrap();
    let config = host.tmp.path().join("probe.json");
    write(
        &config,
        r#"{"mode": "escape", "data": "/data", "out": "/out"}"#,
    );
    let out = run(cmd(&host)
        .args([
            "step",
            "sandbox-probe",
            "--json",
            "--grant",
            "ro:data=/data",
        ])
        .args(["--grant", "rw:out=/out", "--fixture"])
        .arg(&fixture)
        .arg("--step-config")
        .arg(&config));
    assert!(out.status.success(), "{}", stderr(&out));
    let report = stdout_json(&out);
    let outputs = report["outputs"].as_array().unwrap();
    assert!(outputs.len() > 5, "{report}");
    for kv in outputs {
        let (k, v) = (kv[0].as_str().unwrap(), kv[1].as_str().unwrap());
        if k.starts_with("control") {
            assert!(v.starts_with("ok"), "{k}: {v}");
        } else {
            assert!(!v.starts_with("ALLOWED"), "{k}: {v}");
        }
    }
}

#[test]
fn plugins_add_copies_only_step_plugins_and_never_replaces_silently() {
    let host = Host::new();
    let dir = host.tmp.path().join("my-plugins");
    // Only `dir` as plugin folder: `add` writes into the first one.
    let bare = || {
        let mut c = Command::new(target_dir().join("debug/qodify-host"));
        c.env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("QODIFY_CUSTOMERS_ROOT", host.customers())
            .env("QODIFY_DATA_DIR", host.tmp.path().join("data"))
            .arg("--plugins-dir")
            .arg(&dir);
        c
    };
    let add =
        |file: &Path, extra: &[&str]| run(bare().args(["plugins", "add"]).arg(file).args(extra));
    // Not a component at all.
    let junk = host.tmp.path().join("junk.wasm");
    write(&junk, "not wasm");
    let out = add(&junk, &[]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("junk.wasm cannot be added"),
        "{}",
        stderr(&out)
    );
    assert!(!dir.join("junk.wasm").exists());

    // A component built with componentize-js's fetch imports wasi:http, which steps do not get.
    let fetch = target_dir().join("test-plugins/fetch-imports-ts.wasm");
    let out = add(&fetch, &[]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("wasi:http/") && stderr(&out).contains("disableFeatures"),
        "{}",
        stderr(&out)
    );
    assert!(!dir.join("fetch-imports-ts.wasm").exists());

    let noop = target_dir().join("test-plugins/noop.wasm");
    let out = add(&noop, &["--json"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let added = stdout_json(&out);
    assert_eq!(added["plugin"]["sha256"], sha256_file(&noop));
    assert_eq!(added["plugin"]["declares"]["schema"], 1);
    assert_eq!(sha256_file(&dir.join("noop.wasm")), sha256_file(&noop));

    // Another plugin under the same id: refused without --replace, then replaced.
    let other = target_dir().join("test-plugins/wit-compat.wasm");
    let out = add(&other, &["--id", "noop"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("--replace"), "{}", stderr(&out));
    assert_eq!(sha256_file(&dir.join("noop.wasm")), sha256_file(&noop));
    let out = add(&other, &["--id", "noop", "--replace"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains(&sha256_file(&noop)), "{text}");
    assert!(
        text.contains(&format!("sha256 = \"{}\"", sha256_file(&other))),
        "{text}"
    );

    // `plugins list` shows what each declares.
    let out = run(bare().args(["plugins", "list", "--json"]));
    let list = stdout_json(&out);
    assert_eq!(list[0]["declares"]["programs"][0], "node", "{list}");
}

const V1: &str = r#"name = "compat"
description = "the wit-compat step, v1"

[[steps]]
id = "list"
plugin = "wit-compat"
[[steps.mounts]]
guest = "/data"
path = ""
"#;

/// V1 plus two program grants: `node`, which the plugin declares, and `psql`, which it does not.
fn v2() -> String {
    format!(
        "{V1}[[steps.commands]]\nprogram = \"node\"\nargs = [\"--version\"]\n[[steps.commands]]\nprogram = \"psql\"\nargs = [\"*\"]\n"
    )
}

#[test]
fn grants_beyond_the_manifest_are_warnings_and_a_new_grant_is_diffed_and_audited() {
    let host = Host::new();
    let pipelines = host.tmp.path().join("pipelines");
    write(&pipelines.join("compat.toml"), v2());
    // wit-compat from a folder of this test's own, so a new build of it can be dropped in.
    let plugins = host.tmp.path().join("plugins");
    std::fs::create_dir_all(&plugins).unwrap();
    let build_1 = std::fs::read(target_dir().join("test-plugins/wit-compat.wasm")).unwrap();
    std::fs::write(plugins.join("wit-compat.wasm"), &build_1).unwrap();
    let cmd = |host: &Host| {
        let mut c = host.cmd_with_pipelines(&pipelines);
        c.arg("--plugins-dir").arg(&plugins);
        c.arg("--plugins-dir")
            .arg(target_dir().join("test-plugins"));
        c
    };
    // `psql` is granted but not declared: a warning at its line, and the file is still valid.
    let out = run(cmd(&host).args(["validate"]));
    assert!(out.status.success(), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(
        err.contains("compat.toml:14:11: warning: step `list` grants program `psql`, which plugin `wit-compat` does not declare"),
        "{err}"
    );
    assert!(!err.contains("`node`"), "node is declared: {err}");

    // A registered customer's first run records its capabilities.
    write(&pipelines.join("compat.toml"), V1);
    let domain = "compat.example.com";
    write(&host.customer(domain).join("a.txt"), "a");
    let s = common::serve_cmd(cmd(&host), TOKEN, &[]);
    let (code, body) = json_of(
        api(TOKEN, "PUT", &format!("{}/api/customers/7", s.base))
            .send_json(serde_json::json!({ "domain": domain })),
    );
    assert_eq!(code, 200, "{body}");
    let out = run(cmd(&host).args(["run", "compat", "--customer", domain]));
    assert!(out.status.success(), "{}", stderr(&out));

    // The new version grants two programs: `plan --diff` shows them before anything runs,
    // against the last run and against the old file alike.
    let old = host.tmp.path().join("compat-v1.toml");
    write(&old, V1);
    write(&pipelines.join("compat.toml"), v2());
    for against in ["last", old.to_str().unwrap()] {
        let out = run(cmd(&host).args(["plan", "compat", "--customer", domain, "--diff", against]));
        assert!(out.status.success(), "{}", stderr(&out));
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(
            text.contains("+ list program: node args [--version]")
                && text.contains("+ list program: psql args [*]"),
            "{against}: {text}"
        );
    }
    let out = run(cmd(&host).args(["run", "compat", "--customer", domain]));
    assert!(out.status.success(), "{}", stderr(&out));
    let audit = capability_audit(&s);
    let entries = audit["entries"]
        .as_array()
        .unwrap_or_else(|| panic!("{audit}"));
    assert_eq!(entries.len(), 2, "{audit}");
    let newest = &entries[0]["detail"];
    assert_eq!(newest["first"], false);
    let changes: Vec<String> = newest["changes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            let f = |k: &str| c[k].as_str().unwrap().to_owned();
            format!("{} {} {}", f("change"), f("what"), f("value"))
        })
        .collect();
    assert_eq!(
        changes,
        [
            "added program node args [--version]",
            "added program psql args [*]"
        ]
    );
    assert_eq!(entries[1]["detail"]["first"], true);

    // A new build of the plugin (one more custom section: other bytes, same code) is a change
    // too, named by both hashes.
    let mut build_2 = build_1.clone();
    build_2.extend_from_slice(b"\x00\x07\x05build2");
    std::fs::write(plugins.join("wit-compat.wasm"), &build_2).unwrap();
    let (old_sha, new_sha) = (sha256_of(&build_1), sha256_of(&build_2));
    let out = run(cmd(&host).args(["plan", "compat", "--customer", domain, "--diff", "last"]));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains(&format!("- list plugin: wit-compat@{old_sha}"))
            && text.contains(&format!("+ list plugin: wit-compat@{new_sha}"))
            && !text.contains("program"),
        "{text}"
    );
    let out = run(cmd(&host).args(["run", "compat", "--customer", domain]));
    assert!(out.status.success(), "{}", stderr(&out));
    let audit = capability_audit(&s);
    let entries = audit["entries"].as_array().unwrap();
    assert_eq!(entries.len(), 3, "{audit}");
    assert_eq!(
        entries[0]["detail"]["changes"].as_array().unwrap().len(),
        2,
        "{audit}"
    );

    // A run with nothing changed writes nothing new.
    let out = run(cmd(&host).args(["run", "compat", "--customer", domain]));
    assert!(out.status.success(), "{}", stderr(&out));
    let audit = capability_audit(&s);
    assert_eq!(audit["entries"].as_array().unwrap().len(), 3, "{audit}");
}

/// Customer 7's `run.capabilities` audit entries, newest first.
fn capability_audit(s: &common::Server) -> serde_json::Value {
    let (code, audit) = json_of(
        api(
            TOKEN,
            "GET",
            &format!("{}/api/audit?customer=7&action=run.capabilities", s.base),
        )
        .call(),
    );
    assert_eq!(code, 200, "{audit}");
    audit
}

fn sha256_of(bytes: &[u8]) -> String {
    use sha2::Digest as _;
    hex::encode(sha2::Sha256::digest(bytes))
}
