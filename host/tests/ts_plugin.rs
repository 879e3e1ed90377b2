//! Feasibility prototype for issue 14 item 1: a TypeScript plugin, built with componentize-js
//! (`node sdk/ts/build.mjs plugins-ts/hello <target>/ts-plugins/hello-ts.wasm`), runs as a step
//! under the same grants as a Rust one, and cannot leave its mounts.
//!
//! Ignored until `cargo xtask build` builds the TS plugins from source (issue 14's next step):
//! run them by hand with `cargo test -p qodify-host --test ts_plugin -- --ignored` after
//! `(cd sdk/ts && npm ci)` and building `hello-ts.wasm` (and `hello-ts-http.wasm`, componentize-js's default features) as
//! above.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use qodify_host::customer::Customer;
use qodify_host::engine::caps::CancelToken;
use qodify_host::engine::executor::{self, RunOutcome, RunRequest};
use qodify_host::engine::plugins::{self, Catalog};
use qodify_host::engine::runtime::Runtime;
use qodify_host::events::{Event, MemorySink, RunStatus};
use qodify_host::pipeline::{self, RunInputs};
use qodify_host::settings::{Ceilings, Settings};

fn target_dir() -> PathBuf {
    if let Some(t) = std::env::var_os("QODIFY_TEST_TARGET_DIR") {
        return t.into();
    }
    let exe = std::env::current_exe().unwrap();
    exe.ancestors().nth(3).unwrap().to_path_buf()
}

struct Fixture {
    _tmp: tempfile::TempDir,
    root: PathBuf,
    settings: Settings,
    catalog: Catalog,
}

fn fixture() -> Fixture {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().to_path_buf();
    let target = target_dir();
    let plugin_dirs = vec![target.join("ts-plugins"), target.join("test-plugins")];
    let catalog = Catalog::scan(&plugin_dirs);
    assert!(
        catalog.contains("hello-ts") && catalog.contains("noop"),
        "plugins missing in {plugin_dirs:?} ({})",
        catalog.hint()
    );
    let settings = Settings {
        customers_root: root.join("customers"),
        data_dir: root.join("data"),
        store: Default::default(),
        node: "test".into(),
        advertise_url: None,
        plugin_dirs,
        pipelines_dir: root.join("pipelines"),
        releases_dir: root.join("releases"),
        listen: "127.0.0.1:0".into(),
        api_token: None,
        ceilings: Ceilings {
            default_memory_bytes: 256 << 20,
            ..Ceilings::default()
        },
        config_file: None,
        commands: Default::default(),
        grants: Default::default(),
        runs: Default::default(),
        console: Default::default(),
    };
    let cust = root.join("customers/shop.example.com");
    std::fs::create_dir_all(cust.join("out")).unwrap();
    std::fs::create_dir_all(root.join("customers/other-customer")).unwrap();
    std::fs::write(root.join("customers/other-customer/secret"), "secret").unwrap();
    Fixture {
        _tmp: tmp,
        root,
        settings,
        catalog,
    }
}

fn run(rt: &Runtime, fx: &Fixture, toml: &str) -> (RunOutcome, Arc<MemorySink>) {
    let path = fx.root.join("pipelines/test.toml");
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(&path, toml).unwrap();
    let p = pipeline::load_pipeline(&path).unwrap_or_else(|d| panic!("{d}"));
    pipeline::validate(&p, &|id| fx.catalog.contains(id), &fx.catalog.hint())
        .unwrap_or_else(|d| panic!("{d}"));
    let customer = Customer::new("shop.example.com", Some("42")).unwrap();
    let inputs = RunInputs {
        customer_id: "42".into(),
        customer_domain: "shop.example.com".into(),
        run_id: executor::new_run_id(),
        timestamp: executor::timestamp_now(),
        params: Default::default(),
        database: Default::default(),
        paths: Default::default(),
    };
    let plan = pipeline::resolve(&p, &inputs).unwrap();
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

const HELLO: &str = r#"
name = "test"
[[steps]]
id = "hello"
plugin = "hello-ts"
[steps.config]
output = "/out/hello.txt"
greeting = "hi"
probe = true
[[steps.mounts]]
guest = "/out"
path = "out"
access = "rw"
[steps.limits]
memory = "256MiB"
timeout = "20s"
"#;

const NOOP: &str = r#"
name = "test"
[[steps]]
id = "noop"
plugin = "noop"
"#;

#[test]
#[ignore = "needs the TS plugins built by hand (see the module doc); cargo xtask build does not build them yet"]
fn a_typescript_plugin_runs_as_a_step_and_stays_in_its_mounts() {
    let fx = fixture();
    for id in ["hello-ts", "noop"] {
        let path = &fx.catalog.iter().find(|p| p.id == id).unwrap().path;
        let bytes = plugins::read_hashed(path).unwrap().bytes;
        eprintln!(
            "{id}: {} bytes, imports {:?}",
            bytes.len(),
            plugins::imports(&bytes).unwrap()
        );
    }
    let rt = Runtime::new(&fx.settings.data_dir).unwrap();

    for (name, toml) in [("hello-ts", HELLO), ("noop", NOOP)] {
        for round in 0..4 {
            let t = Instant::now();
            let (outcome, sink) = run(&rt, &fx, toml);
            let wall = t.elapsed();
            assert_eq!(outcome.status, RunStatus::Succeeded, "{:?}", outcome.error);
            let step = &outcome.steps[0];
            eprintln!(
                "{name} round {round}: run {wall:?}, step {} ms",
                step.duration_ms
            );
            if name == "hello-ts" && round == 0 {
                for (k, v) in &step.outputs {
                    eprintln!("  {k} = {v}");
                }
                for a in &step.artifacts {
                    eprintln!("  artifact {a:?}");
                }
                for e in sink.0.lock().unwrap().iter() {
                    if let Event::StepLog { message, .. } | Event::StepProgress { message, .. } = e
                    {
                        eprintln!("  event: {message}");
                    }
                }
                let get = |k: &str| {
                    step.outputs
                        .iter()
                        .find(|(key, _)| key == k)
                        .map(|(_, v)| v.as_str())
                };
                assert_eq!(get("greeting"), Some("hi shop.example.com"));
                assert_eq!(
                    std::fs::read_to_string(
                        fx.root.join("customers/shop.example.com/out/hello.txt")
                    )
                    .unwrap(),
                    "hi shop.example.com\n"
                );
                assert_eq!(step.artifacts.len(), 1);
                let escaped: Vec<_> = step
                    .outputs
                    .iter()
                    .filter(|(k, v)| {
                        k.starts_with("probe-") && !k.ends_with("-0") && !v.contains("denied")
                    })
                    .collect();
                assert!(escaped.is_empty(), "escapes succeeded: {escaped:#?}");
            }
        }
    }

    // A second host process on the same data folder: the compiled plugins come from the disk cache.
    drop(rt);
    let rt = Runtime::new(&fx.settings.data_dir).unwrap();
    for (name, toml) in [("hello-ts", HELLO), ("noop", NOOP)] {
        let t = Instant::now();
        let (outcome, _) = run(&rt, &fx, toml);
        assert_eq!(outcome.status, RunStatus::Succeeded, "{:?}", outcome.error);
        eprintln!("{name} from the disk cache: run {:?}", t.elapsed());
    }
}

/// componentize-js's default features (`http`, `fetch-event`) make the component import
/// `wasi:http/types@0.2.10` and `wasi:http/outgoing-handler@0.2.10`; the host links no wasi:http,
/// so such a component is refused before anything runs.
#[test]
#[ignore = "needs the TS plugins built by hand (see the module doc); cargo xtask build does not build them yet"]
fn a_js_component_built_with_fetch_is_refused() {
    let fx = fixture();
    let file = fx
        .catalog
        .iter()
        .find(|p| p.id == "hello-ts-http")
        .expect("hello-ts-http.wasm is built (see the module doc)");
    let rt = Runtime::new(&fx.settings.data_dir).unwrap();
    let err = rt
        .prepare(&plugins::read_hashed(&file.path).unwrap())
        .err()
        .expect("a component importing wasi:http must not link");
    eprintln!("{err:#}");
    assert!(format!("{err:#}").contains("wasi:http"), "{err:#}");
}

/// A plain `{ kind, message }` object thrown from `run` becomes the step's `step-error`.
#[test]
#[ignore = "needs the TS plugins built by hand (see the module doc); cargo xtask build does not build them yet"]
fn a_thrown_step_error_fails_the_step_with_its_kind() {
    let fx = fixture();
    let rt = Runtime::new(&fx.settings.data_dir).unwrap();
    let toml = HELLO.replace("output = \"/out/hello.txt\"\n", "");
    let (outcome, _) = run(&rt, &fx, &toml);
    eprintln!("{:?}: {:?}", outcome.status, outcome.error);
    assert_eq!(outcome.status, RunStatus::Failed);
    assert!(
        outcome
            .error
            .as_deref()
            .unwrap()
            .contains("config field `output`"),
        "{:?}",
        outcome.error
    );
}
