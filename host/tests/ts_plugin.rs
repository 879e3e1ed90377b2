//! TypeScript plugins on the real engine, built from source by `cargo xtask build`
//! (`plugins-ts/`, `tests/plugins-ts/`, with `sdk/ts`): the example `disk-usage` and its Rust
//! twin measure the same customer folder alike in one pipeline, the shipped `usage` pipeline
//! reports and enforces its quota, a TS step is held to the same grants (its escape attempts are
//! denied exactly where the Rust probe's are) and the same limits, and a JS component built with
//! `fetch` (which imports wasi:http) is refused before it runs.

mod common;

use common::snapshot;
use std::os::unix::fs::PermissionsExt as _;

use std::collections::BTreeMap;
use std::io::{Read as _, Write as _};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use qodify_host::customer::Customer;
use qodify_host::engine::caps::CancelToken;
use qodify_host::engine::executor::{self, RunOutcome, RunRequest, StepRecord};
use qodify_host::engine::plugins::{self, Catalog};
use qodify_host::engine::runtime::Runtime;
use qodify_host::events::{Event, LogLevel, MemorySink, RunStatus};
use qodify_host::ops;
use qodify_host::pipeline::{self, Pipeline, RunInputs};
use qodify_host::settings::{Ceilings, Settings};
use sha2::Digest as _;

const DOMAIN: &str = "shop.example.com";

fn target_dir() -> PathBuf {
    if let Some(t) = std::env::var_os("QODIFY_TEST_TARGET_DIR") {
        return t.into();
    }
    // <target>/debug/deps/ts_plugin-<hash>
    let exe = std::env::current_exe().unwrap();
    exe.ancestors().nth(3).unwrap().to_path_buf()
}

struct Fixture {
    _tmp: tempfile::TempDir,
    root: PathBuf,
    settings: Settings,
    catalog: Catalog,
}

impl Fixture {
    fn customer(&self) -> PathBuf {
        self.root.join("customers").join(DOMAIN)
    }
}

fn fixture() -> Fixture {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().to_path_buf();
    let target = target_dir();
    let plugin_dirs = vec![target.join("plugins"), target.join("test-plugins")];
    let catalog = Catalog::scan(&plugin_dirs);
    for id in [
        "disk-usage",
        "disk-usage-rs",
        "sandbox-probe",
        "sandbox-probe-ts",
        "fetch-imports-ts",
    ] {
        assert!(
            catalog.contains(id),
            "plugin {id} missing in {plugin_dirs:?}: run `cargo xtask build` first ({})",
            catalog.hint()
        );
    }
    let settings = Settings {
        customers_root: root.join("customers"),
        data_dir: root.join("data"),
        store: Default::default(),
        node: "test".into(),
        advertise_url: None,
        plugin_dirs,
        pipelines_dir: Path::new(env!("CARGO_MANIFEST_DIR")).join("../pipelines"),
        releases_dir: root.join("releases"),
        listen: "127.0.0.1:0".into(),
        api_token: None,
        ceilings: Ceilings::default(),
        config_file: None,
        commands: Default::default(),
        grants: Default::default(),
        runs: Default::default(),
        console: Default::default(),
        schedule: Default::default(),
    };
    std::fs::create_dir_all(root.join("customers").join(DOMAIN)).unwrap();
    Fixture {
        _tmp: tmp,
        root,
        settings,
        catalog,
    }
}

fn write(path: &Path, bytes: usize) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, vec![b'x'; bytes]).unwrap();
}

/// A shop in the current layout: services with dependencies and logs, a backup, an `.env`, a
/// link and an empty folder (neither counts).
fn make_shop(dir: &Path) {
    write(&dir.join("backend/server.js"), 1200);
    write(&dir.join("backend/src/app.js"), 4000);
    write(&dir.join("backend/logs/app.log"), 700);
    write(&dir.join("backend/node_modules/lib/index.js"), 50_000);
    write(&dir.join("admin/index.html"), 900);
    write(&dir.join("store/.next/cache.bin"), 30_000);
    write(&dir.join("store/pages/index.js"), 4000);
    write(&dir.join("backups/20260101-000000/backend.tar.gz"), 9000);
    write(&dir.join(".env"), 64);
    std::fs::create_dir_all(dir.join("empty")).unwrap();
    std::os::unix::fs::symlink("backend", dir.join("current")).unwrap();
}

fn run_plan(rt: &Runtime, fx: &Fixture, p: &Pipeline, params: &[(&str, &str)]) -> RunOutcome {
    run_plan_with_events(rt, fx, p, params).0
}

fn run_plan_with_events(
    rt: &Runtime,
    fx: &Fixture,
    p: &Pipeline,
    params: &[(&str, &str)],
) -> (RunOutcome, Arc<MemorySink>) {
    let customer = Customer::new(DOMAIN, Some("42")).unwrap();
    let inputs = RunInputs {
        customer_id: "42".into(),
        customer_domain: DOMAIN.into(),
        run_id: executor::new_run_id(),
        timestamp: executor::timestamp_now(),
        params: params
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        database: Default::default(),
        paths: Default::default(),
    };
    let plan = pipeline::resolve(p, &inputs).unwrap();
    let sink = Arc::new(MemorySink::default());
    let outcome = executor::execute(
        rt,
        RunRequest {
            plan: &plan,
            customer: &customer,
            run_id: inputs.run_id.clone(),
            timestamp: inputs.timestamp.clone(),
            catalog: &fx.catalog,
            settings: &fx.settings,
            events: sink.clone(),
            cancel: CancelToken::default(),
            recovery: None,
            approvals: None,
        },
    )
    .unwrap();
    (outcome, sink)
}

/// Loads and validates a pipeline written for the test.
fn pipeline(fx: &Fixture, toml: &str) -> Pipeline {
    let path = fx.root.join("pipelines/test.toml");
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(&path, toml).unwrap();
    let p = pipeline::load_pipeline(&path).unwrap_or_else(|d| panic!("{d}"));
    pipeline::validate(&p, &|id| fx.catalog.contains(id), &fx.catalog.hint())
        .unwrap_or_else(|d| panic!("{d}"));
    p
}

fn output<'a>(step: &'a StepRecord, key: &str) -> Option<&'a str> {
    step.outputs
        .iter()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.as_str())
}

fn sha256_file(path: &Path) -> String {
    hex::encode(sha2::Sha256::digest(std::fs::read(path).unwrap()))
}

/// One `disk-usage` step of `plugin`, with its report at `/reports/<report>`.
fn usage_step(id: &str, plugin: &str, report: &str) -> String {
    format!(
        r#"
[[steps]]
id = "{id}"
plugin = "{plugin}"
[steps.config]
root = "/customer"
exclude = ["**/node_modules/**", "reports/**"]
maxBytes = "1MiB"
report = "/reports/{report}"
[[steps.mounts]]
guest = "/customer"
path = ""
[[steps.mounts]]
guest = "/reports"
path = "reports"
access = "rw"
create = true
[steps.limits]
memory = "256MiB"
timeout = "60s"
"#
    )
}

/// What `disk-usage` must find, computed here with std: regular files not under an excluded
/// folder, symlinks not followed.
fn expected_usage(dir: &Path) -> BTreeMap<String, String> {
    fn walk(dir: &Path, rel: &str, files: &mut Vec<(String, u64)>) {
        let mut entries: Vec<_> = std::fs::read_dir(dir).unwrap().flatten().collect();
        entries.sort_by_key(|e| e.file_name());
        for e in entries {
            let name = e.file_name().to_string_lossy().into_owned();
            let path = if rel.is_empty() {
                name.clone()
            } else {
                format!("{rel}/{name}")
            };
            if name == "node_modules" || path == "reports" {
                continue;
            }
            let md = std::fs::symlink_metadata(e.path()).unwrap();
            if md.is_dir() {
                walk(&e.path(), &path, files);
            } else if md.is_file() {
                files.push((path, md.len()));
            }
        }
    }
    let mut files = Vec::new();
    walk(dir, "", &mut files);
    let mut want = BTreeMap::new();
    want.insert("files".into(), files.len().to_string());
    want.insert(
        "bytes".into(),
        files.iter().map(|f| f.1).sum::<u64>().to_string(),
    );
    let largest = files
        .iter()
        .fold(None::<&(String, u64)>, |best, f| match best {
            Some(b) if b.1 >= f.1 => Some(b),
            _ => Some(f),
        });
    want.insert("largest".into(), largest.unwrap().0.clone());
    want.insert("largest-bytes".into(), largest.unwrap().1.to_string());
    for (path, size) in &files {
        let top = path.split('/').next().unwrap();
        let entry = want.entry(format!("bytes.{top}")).or_insert("0".into());
        *entry = (entry.parse::<u64>().unwrap() + size).to_string();
    }
    // An empty top-level folder is an entry of 0 bytes.
    want.insert("bytes.empty".into(), "0".into());
    want.insert("quota".into(), (1u64 << 20).to_string());
    want
}

#[test]
fn a_typescript_step_and_its_rust_twin_measure_a_customer_folder_alike_in_one_pipeline() {
    let fx = fixture();
    make_shop(&fx.customer());
    let rt = Runtime::new(&fx.settings.data_dir).unwrap();
    let toml = format!(
        "name = \"test\"\n{}{}",
        usage_step("ts", "disk-usage", "ts.json"),
        usage_step("rs", "disk-usage-rs", "rs.json")
    );
    let (outcome, sink) = run_plan_with_events(&rt, &fx, &pipeline(&fx, &toml), &[]);
    assert_eq!(outcome.status, RunStatus::Succeeded, "{:?}", outcome.error);
    let (ts, rs) = (&outcome.steps[0], &outcome.steps[1]);

    let got: BTreeMap<String, String> = ts.outputs.iter().cloned().collect();
    assert_eq!(got, expected_usage(&fx.customer()));
    assert_eq!(output(ts, "largest"), Some("store/.next/cache.bin"));
    assert_eq!(ts.outputs, rs.outputs, "same outputs, in the same order");

    // The reports are the same bytes; the host checked each artifact's size and sha256.
    let reports = fx.customer().join("reports");
    for (step, file) in [(ts, "ts.json"), (rs, "rs.json")] {
        assert_eq!(step.artifacts.len(), 1, "{}", step.id);
        let a = &step.artifacts[0];
        assert_eq!(
            (a.name.as_str(), a.path.as_str()),
            ("report", &*format!("reports/{file}"))
        );
        assert_eq!(a.sha256, sha256_file(&reports.join(file)));
    }
    assert_eq!(ts.artifacts[0].sha256, rs.artifacts[0].sha256);
    let report: serde_json::Value =
        serde_json::from_slice(&std::fs::read(reports.join("ts.json")).unwrap()).unwrap();
    assert_eq!(report["bytes"].to_string(), got["bytes"]);
    assert_eq!(report["maxBytes"], 1 << 20);

    // Progress (the host passes the first report and the one reaching 100) and the run log come
    // through the SDK from both languages.
    let events = sink.0.lock().unwrap();
    let done = format!("{} files, {} bytes", got["files"], got["bytes"]);
    for step in ["ts", "rs"] {
        let progress: Vec<(f32, &str)> = events
            .iter()
            .filter_map(|e| match e {
                Event::StepProgress {
                    step: s,
                    percent,
                    message,
                } if s == step => Some((*percent, message.as_str())),
                _ => None,
            })
            .collect();
        assert_eq!(progress.first(), Some(&(0.0, "measuring .env")), "{step}");
        assert_eq!(progress.last(), Some(&(100.0, done.as_str())), "{step}");
        assert!(
            events.iter().any(|e| matches!(e,
                Event::StepLog { step: s, level: LogLevel::Info, message } if s == step && message.starts_with("/customer: "))),
            "{step}: no log line"
        );
    }
}

#[test]
fn the_shipped_usage_pipeline_reports_by_service_and_fails_over_the_quota() {
    let fx = fixture();
    make_shop(&fx.customer());
    let rt = Runtime::new(&fx.settings.data_dir).unwrap();
    let (p, _) = ops::plan::load_pipeline(&fx.settings, &fx.catalog, "usage", None).unwrap();

    let outcome = run_plan(&rt, &fx, &p, &[("quota", "1MiB")]);
    assert_eq!(outcome.status, RunStatus::Succeeded, "{:?}", outcome.error);
    let step = &outcome.steps[0];
    assert_eq!(output(step, "bytes.backend"), Some("55900"));
    assert_eq!(output(step, "bytes.store"), Some("34000"));
    assert_eq!(output(step, "quota"), Some("1048576"));
    let a = &step.artifacts[0];
    assert!(
        a.path.starts_with(".qodify/usage/usage-") && a.path.ends_with(".json"),
        "{a:?}"
    );
    assert_eq!(a.sha256, sha256_file(&fx.customer().join(&a.path)));

    // Over the quota: the step fails with a typed error naming it; the report is still written.
    let outcome = run_plan(&rt, &fx, &p, &[("quota", "50KiB")]);
    assert_eq!(outcome.status, RunStatus::Failed);
    let err = outcome.error.unwrap();
    assert!(
        err.contains("step measure failed (io): /customer uses ")
            && err.contains("over its quota of 50.0 KiB (maxBytes = 51200)"),
        "{err}"
    );

    // The paid tier's overlay raises the quota.
    let (paid, _) =
        ops::plan::load_pipeline(&fx.settings, &fx.catalog, "usage", Some("paid")).unwrap();
    let outcome = run_plan(&rt, &fx, &paid, &[]);
    assert_eq!(outcome.status, RunStatus::Succeeded, "{:?}", outcome.error);
    assert_eq!(
        output(&outcome.steps[0], "quota"),
        Some(&*(50u64 << 30).to_string())
    );
}

#[test]
fn a_bad_config_fails_a_typescript_step_like_a_rust_one_naming_the_field() {
    let fx = fixture();
    let rt = Runtime::new(&fx.settings.data_dir).unwrap();
    for plugin in ["disk-usage", "disk-usage-rs"] {
        let toml = format!(
            "name = \"test\"\n[[steps]]\nid = \"u\"\nplugin = \"{plugin}\"\n[steps.config]\nroot = \"/customer\"\nexclude = [\"ok/**\", 3]\n[[steps.mounts]]\nguest = \"/customer\"\npath = \"\"\n"
        );
        let outcome = run_plan(&rt, &fx, &pipeline(&fx, &toml), &[]);
        assert_eq!(outcome.status, RunStatus::Failed, "{plugin}");
        let err = outcome.error.unwrap();
        assert!(
            err.starts_with("step u failed (invalid-config): config field `exclude[1]`: "),
            "{plugin}: {err}"
        );
    }
}

/// The neighbour's secret, host canaries and the links pointing at them, as host/tests/sandbox.rs
/// plants them.
fn make_probe_targets(fx: &Fixture) {
    let cust = fx.customer();
    std::fs::create_dir_all(cust.join("data")).unwrap();
    std::fs::create_dir_all(cust.join("out")).unwrap();
    std::fs::write(cust.join("data/ok.txt"), "hello").unwrap();
    std::fs::write(cust.join("data/inside.txt"), "read-only content").unwrap();
    std::fs::create_dir_all(fx.root.join("customers/other-customer")).unwrap();
    std::fs::write(
        fx.root.join("customers/other-customer/secret"),
        "neighbour secret",
    )
    .unwrap();
    std::fs::write(fx.root.join("canary.txt"), "canary").unwrap();
    std::fs::set_permissions(
        fx.root.join("canary.txt"),
        std::fs::Permissions::from_mode(0o640),
    )
    .unwrap();
    std::os::unix::fs::symlink(fx.root.join("canary.txt"), cust.join("data/escape-abs")).unwrap();
    std::os::unix::fs::symlink("../../other-customer/secret", cust.join("data/escape-rel"))
        .unwrap();
}

/// An HTTP server answering every request with 204, for the granted origin.
fn http_server() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for mut conn in listener.incoming().flatten() {
            let mut buf = [0u8; 4096];
            let _ = conn.read(&mut buf);
            let _ = conn.write_all(b"HTTP/1.1 204 No Content\r\nconnection: close\r\n\r\n");
        }
    });
    port
}

fn probe_pipeline(fx: &Fixture, plugin: &str, port: u16) -> Pipeline {
    pipeline(
        fx,
        &format!(
            r#"
name = "test"
[[steps]]
id = "probe"
plugin = "{plugin}"
[steps.config]
mode = "escape"
data = "/data"
out = "/out"
command = ["echo", "granted"]
origin = "http://127.0.0.1:{port}/health"
[[steps.mounts]]
guest = "/data"
path = "data"
[[steps.mounts]]
guest = "/out"
path = "out"
access = "rw"
[[steps.commands]]
program = "echo"
args = ["granted"]
[[steps.http]]
origin = "http://127.0.0.1:{port}"
[steps.limits]
memory = "256MiB"
timeout = "60s"
"#
        ),
    )
}

/// `denied`, `ALLOWED`, `ok` or `FAILED`: what an attempt's value says happened, not its wording.
fn verdict(value: &str) -> &str {
    value.split(':').next().unwrap_or(value)
}

#[test]
fn the_typescript_probe_is_denied_exactly_where_the_rust_probe_is() {
    let fx = fixture();
    make_probe_targets(&fx);
    let port = http_server();
    let rt = Runtime::new(&fx.settings.data_dir).unwrap();
    let outside = snapshot(&fx.root.join("customers/other-customer"));
    let data = snapshot(&fx.customer().join("data"));

    let mut results = BTreeMap::new();
    for plugin in ["sandbox-probe", "sandbox-probe-ts"] {
        let (outcome, sink) =
            run_plan_with_events(&rt, &fx, &probe_pipeline(&fx, plugin, port), &[]);
        assert_eq!(
            outcome.status,
            RunStatus::Succeeded,
            "{plugin}: {:?}",
            outcome.error
        );
        let outputs: BTreeMap<String, String> = outcome.steps[0].outputs.iter().cloned().collect();
        // The controls prove each probe can do what it was granted, so its denials mean something.
        for (key, want) in [
            ("control-read", "ok:hello"),
            ("control-write", "ok"),
            ("control-command", "ok:granted"),
            ("control-http", "ok:204"),
        ] {
            assert_eq!(
                outputs.get(key).map(String::as_str),
                Some(want),
                "{plugin}: {key}"
            );
        }
        let escaped: Vec<_> = outputs
            .iter()
            .filter(|(k, v)| !k.starts_with("control-") && verdict(v) != "denied")
            .collect();
        assert!(
            escaped.is_empty(),
            "{plugin}: escapes succeeded: {escaped:#?}"
        );
        if plugin == "sandbox-probe-ts" {
            // console.* of a TS plugin lands in the run log.
            let events = sink.0.lock().unwrap();
            assert!(events.iter().any(|e| matches!(e,
                Event::StepLog { level: LogLevel::Warn, message, .. } if message.starts_with("escape attempts done:"))));
        }
        results.insert(plugin, outputs);
    }

    let (rust, ts) = (&results["sandbox-probe"], &results["sandbox-probe-ts"]);
    for (key, value) in ts {
        eprintln!("{key}\n  rust {:?}\n  ts   {value:?}", rust.get(key));
    }
    // What a JS component cannot even try: it has no environment and no stdin.
    let rust_only = ["env-leak", "stdin"];
    let ts_only = |k: &str| k.starts_with("raw-");
    for (key, value) in rust {
        if rust_only.contains(&key.as_str()) {
            assert!(
                !ts.contains_key(key),
                "{key} is tried by the TS probe after all"
            );
            continue;
        }
        let Some(ts_value) = ts.get(key) else {
            panic!("the TS probe does not try `{key}`");
        };
        assert_eq!(
            verdict(ts_value),
            verdict(value),
            "{key}: rust {value:?}, ts {ts_value:?}"
        );
    }
    for key in ts.keys() {
        assert!(
            rust.contains_key(key) || ts_only(key),
            "`{key}` is tried by the TS probe only: port it to the Rust one"
        );
    }
    assert!(
        ts.keys().filter(|k| ts_only(k)).count() >= 5,
        "raw WASI attempts missing"
    );
    assert!(rust.len() >= 35, "too few attempts: {}", rust.len());

    assert_eq!(snapshot(&fx.root.join("customers/other-customer")), outside);
    assert_eq!(
        snapshot(&fx.customer().join("data")),
        data,
        "read-only mount changed"
    );
    assert_eq!(
        std::fs::read_to_string(fx.root.join("canary.txt")).unwrap(),
        "canary"
    );
    let out = fx.customer().join("out");
    assert!(!out.join("stolen.txt").exists() && !out.join("hardlink.txt").exists());
}

#[test]
fn the_sdk_writes_reads_and_hashes_files_in_chunks_inside_its_mount() {
    let fx = fixture();
    make_probe_targets(&fx);
    let rt = Runtime::new(&fx.settings.data_dir).unwrap();
    let p = pipeline(
        &fx,
        "name = \"test\"\n[[steps]]\nid = \"sdk\"\nplugin = \"sandbox-probe-ts\"\n[steps.config]\nmode = \"sdk\"\n[[steps.mounts]]\nguest = \"/out\"\npath = \"out\"\naccess = \"rw\"\n[steps.limits]\ntimeout = \"60s\"\n",
    );
    let outcome = run_plan(&rt, &fx, &p, &[]);
    assert_eq!(outcome.status, RunStatus::Succeeded, "{:?}", outcome.error);
    let step = &outcome.steps[0];

    // The bytes the plugin wrote, made here the same way: 48 chunks of 64 KiB and 7 more.
    let mut x: u32 = 1;
    let want: Vec<u8> = (0..48 * 65_536 + 7)
        .map(|_| {
            x = x.wrapping_mul(1_103_515_245).wrapping_add(12_345);
            (x >> 24) as u8
        })
        .collect();
    let file = fx.customer().join("out/sdk/a/b/c/big.bin");
    assert!(
        std::fs::read(&file).unwrap() == want,
        "the file's bytes differ"
    );
    let sha = sha256_file(&file);
    assert_eq!(output(step, "written-sha256"), Some(sha.as_str()));
    assert_eq!(output(step, "read-sha256"), Some(sha.as_str()));
    assert_eq!(output(step, "size"), Some(&*want.len().to_string()));
    assert_eq!(output(step, "note"), Some("first\nsecond\n"));
    assert_eq!(output(step, "listing"), Some("b:directory,note.txt:file"));
    let mode = std::fs::metadata(&file).unwrap().permissions().mode() & 0o7777;
    assert_eq!(output(step, "mode"), Some(&*format!("{mode:o}")));
    assert_eq!(output(step, "space"), Some("true"));
    assert_eq!(output(step, "note-exists"), Some("false"));
    // The host re-hashed the artifact: the SDK's streaming SHA-256 agreed.
    let a = &step.artifacts[0];
    assert_eq!(
        (a.size, a.sha256.as_str()),
        (want.len() as u64, sha.as_str())
    );
}

#[test]
fn runaway_typescript_steps_are_stopped_by_the_same_limits() {
    let fx = fixture();
    let rt = Runtime::new(&fx.settings.data_dir).unwrap();
    let probe = |mode: &str, limits: &str| {
        pipeline(
            &fx,
            &format!(
                "name = \"test\"\n[[steps]]\nid = \"probe\"\nplugin = \"sandbox-probe-ts\"\n[steps.config]\nmode = \"{mode}\"\n[steps.limits]\n{limits}\n"
            ),
        )
    };
    // A first run compiles the component, so the loop's time is the loop's.
    make_probe_targets(&fx);
    let escape = probe_pipeline(&fx, "sandbox-probe-ts", http_server());
    let outcome = run_plan(&rt, &fx, &escape, &[]);
    assert_eq!(outcome.status, RunStatus::Succeeded, "{:?}", outcome.error);
    let started = std::time::Instant::now();
    let outcome = run_plan(&rt, &fx, &probe("loop", "timeout = \"3s\""), &[]);
    assert_eq!(outcome.status, RunStatus::Failed);
    let err = outcome.error.unwrap();
    assert!(
        err.contains("step probe ran past its 3s time limit"),
        "{err}"
    );
    assert!(started.elapsed() < std::time::Duration::from_secs(15));

    let outcome = run_plan(
        &rt,
        &fx,
        &probe("memory-bomb", "memory = \"128MiB\"\ntimeout = \"60s\""),
        &[],
    );
    assert_eq!(outcome.status, RunStatus::Failed);
    let err = outcome.error.unwrap();
    assert!(
        err.contains("step probe exceeded its 128 MiB memory limit"),
        "{err}"
    );
    // A plugin that catches the failure and returns its own error: the limit is named too.
    let outcome = run_plan(
        &rt,
        &fx,
        &probe("memory-caught", "memory = \"128MiB\"\ntimeout = \"60s\""),
        &[],
    );
    let err = outcome.error.unwrap();
    assert!(
        err.contains("could not allocate the buffers")
            && err.contains("reached its memory limit of 128 MiB"),
        "{err}"
    );

    // The same host goes on: the next TS step runs normally.
    let outcome = run_plan(&rt, &fx, &escape, &[]);
    assert_eq!(outcome.status, RunStatus::Succeeded, "{:?}", outcome.error);
}

/// componentize-js's default features (`http`, `fetch-event`) make the component import
/// `wasi:http/types@0.2.10` and `wasi:http/outgoing-handler@0.2.10`; the host links no wasi:http,
/// so such a component is refused before anything runs (`fetch-imports-ts` is built with
/// them on: its folder's componentize.json).
#[test]
fn a_js_component_built_with_fetch_is_refused_before_it_runs() {
    let fx = fixture();
    let file = fx
        .catalog
        .iter()
        .find(|p| p.id == "fetch-imports-ts")
        .unwrap();
    let bytes = plugins::read_hashed(&file.path).unwrap();
    let imports = plugins::imports(&bytes.bytes).unwrap();
    assert!(
        imports.iter().any(|i| i.starts_with("wasi:http/")),
        "{imports:?}"
    );
    let rt = Runtime::new(&fx.settings.data_dir).unwrap();
    let err = rt
        .prepare(&bytes)
        .err()
        .expect("a component importing wasi:http must not link");
    assert!(format!("{err:#}").contains("wasi:http"), "{err:#}");

    // The same SDK code without those features imports none.
    let shipped = fx.catalog.iter().find(|p| p.id == "disk-usage").unwrap();
    let imports = plugins::imports(&plugins::read_hashed(&shipped.path).unwrap().bytes).unwrap();
    assert!(
        !imports.iter().any(|i| i.starts_with("wasi:http/")),
        "{imports:?}"
    );
}
