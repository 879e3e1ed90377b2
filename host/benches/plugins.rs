//! A TypeScript plugin against the same step in Rust (`disk-usage`, built by componentize-js,
//! and its twin `disk-usage-rs`): component size, compile time (first load with the cache
//! cleared), load from the disk cache (a restarted host), warm instantiation (store +
//! instantiate + a call that fails its config at once), and the run time of measuring one
//! folder, p50 each. Run by `cargo xtask bench --plugins-only`; a benchmark, nothing here fails
//! on a number.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use qodify_host::engine::bindings::types;
use qodify_host::engine::caps::{CancelToken, StepHost};
use qodify_host::engine::plugins::{PluginBytes, read_hashed};
use qodify_host::engine::runtime::{Runtime, StepCall};
use qodify_host::engine::sandbox::{MountTable, Roots, open_customer};
use qodify_host::events::NullSink;
use qodify_host::pipeline::{MountRoot, PlannedMount};

const DOMAIN: &str = "bench.example.com";
const MIB: u64 = 1 << 20;

fn pct(v: &mut [Duration], p: f64) -> Duration {
    v.sort();
    v[((v.len() as f64 - 1.0) * p).round() as usize]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// `folders` × `files` files of varied (sparse) sizes in two levels, like a shop's sources.
fn make_tree(dir: &Path, folders: usize, files: usize) {
    for f in 0..folders {
        let sub = dir.join(format!("s{:02}/d{f:03}", f % 8));
        std::fs::create_dir_all(&sub).unwrap();
        for i in 0..files {
            let file = std::fs::File::create(sub.join(format!("f{i:03}.js"))).unwrap();
            file.set_len(((f * 7919 + i * 104_729) % 200_000) as u64)
                .unwrap();
        }
    }
}

struct Bench {
    customers: PathBuf,
    root: tempfile::TempDir,
}

impl Bench {
    fn call(&self, config: &str) -> StepCall {
        let customer = open_customer(&self.customers, DOMAIN).unwrap();
        let work = self.root.path().join("work");
        std::fs::create_dir_all(&work).unwrap();
        let roots = Roots {
            customer,
            customer_path: self.customers.join(DOMAIN),
            work: cap_std::fs::Dir::open_ambient_dir(&work, cap_std::ambient_authority()).unwrap(),
            work_path: work,
            backup: None,
            links: None,
            releases: None,
        };
        let planned = [PlannedMount {
            guest: "/customer".into(),
            from: MountRoot::Customer,
            path: PathBuf::new(),
            writable: false,
            create: false,
            optional: false,
            reason: None,
        }];
        let mounts = MountTable::resolve(&planned, &roots).unwrap().unwrap();
        StepCall {
            context: types::StepContext {
                customer: types::Customer {
                    id: "42".into(),
                    domain: DOMAIN.into(),
                },
                run_id: "bench".into(),
                run_timestamp: "20261126-000000".into(),
                step_id: "usage".into(),
                params: vec![],
                config: config.into(),
                mounts: vec![types::Mount {
                    guest_path: "/customer".into(),
                    writable: false,
                }],
                previous: vec![],
            },
            host: StepHost::new(
                "usage",
                mounts,
                Arc::new(NullSink),
                CancelToken::default(),
                Instant::now() + Duration::from_secs(600),
            )
            .with_max_log_lines(1000),
            memory_bytes: 256 * MIB,
            timeout: Duration::from_secs(600),
        }
    }
}

struct Row {
    name: &'static str,
    size: u64,
    compile: Duration,
    cached: Duration,
    instantiate: Duration,
    instantiate_p99: Duration,
    run: Duration,
    outputs: Vec<(String, String)>,
}

fn measure(name: &'static str, bytes: &PluginBytes, bench: &Bench) -> Row {
    // Compile: a fresh data folder each time, so nothing comes from the disk cache.
    let (mut compile, mut cached) = (Vec::new(), Vec::new());
    for _ in 0..5 {
        let data = tempfile::tempdir().unwrap();
        let rt = Runtime::new(data.path()).unwrap();
        let t = Instant::now();
        rt.prepare(bytes).unwrap();
        compile.push(t.elapsed());
        drop(rt);
        // A restarted host on the same data folder loads the compiled code from disk.
        let rt = Runtime::new(data.path()).unwrap();
        let t = Instant::now();
        rt.prepare(bytes).unwrap();
        cached.push(t.elapsed());
    }

    let data = tempfile::tempdir().unwrap();
    let rt = Runtime::new(data.path()).unwrap();
    let pre = rt.prepare(bytes).unwrap();
    // Warm instantiation: the config is missing `root`, so the step fails as soon as it parses it.
    let mut inst: Vec<Duration> = Vec::new();
    for i in 0..320 {
        let call = bench.call("{}");
        let t = Instant::now();
        let failed = rt.call(&pre, call).is_err();
        if i >= 20 {
            inst.push(t.elapsed());
        }
        assert!(failed, "{name}: a config without root must fail");
    }
    let mut runs = Vec::new();
    let mut outputs = Vec::new();
    for i in 0..12 {
        let call = bench.call(r#"{"root":"/customer","exclude":["s07/**"]}"#);
        let t = Instant::now();
        let (result, _) = rt
            .call(&pre, call)
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        if i >= 2 {
            runs.push(t.elapsed());
        }
        outputs = result
            .outputs
            .into_iter()
            .map(|o| (o.key, o.value))
            .collect();
    }
    Row {
        name,
        size: bytes.bytes.len() as u64,
        compile: pct(&mut compile, 0.5),
        cached: pct(&mut cached, 0.5),
        instantiate: pct(&mut inst, 0.5),
        instantiate_p99: pct(&mut inst, 0.99),
        run: pct(&mut runs, 0.5),
        outputs,
    }
}

fn main() {
    let wasm: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| a.ends_with(".wasm"))
        .collect();
    let [ts, rs] = &wasm[..] else {
        panic!("usage: plugins <disk-usage.wasm> <disk-usage-rs.wasm>");
    };
    let root = tempfile::tempdir().unwrap();
    let customers = root.path().join("customers");
    let (folders, files) = (200, 50);
    make_tree(&customers.join(DOMAIN), folders, files);
    let bench = Bench { customers, root };

    let ts_bytes = read_hashed(Path::new(ts)).unwrap();
    let rs_bytes = read_hashed(Path::new(rs)).unwrap();
    let rows = [
        measure("TypeScript (disk-usage)", &ts_bytes, &bench),
        measure("Rust (disk-usage-rs)", &rs_bytes, &bench),
    ];
    assert_eq!(
        rows[0].outputs, rows[1].outputs,
        "the twins disagree on the same folder"
    );
    let files_counted = rows[0]
        .outputs
        .iter()
        .find(|(k, _)| k == "files")
        .map_or("?", |(_, v)| v.as_str());

    println!(
        "\nTypeScript plugin vs the same step in Rust ({} files in {folders} folders, {files_counted} counted; p50):",
        folders * files
    );
    println!(
        "  {:<26} {:>10} {:>12} {:>12} {:>13} {:>13} {:>10}",
        "", "size", "compile", "disk cache", "instantiate", "inst. p99", "run"
    );
    for r in &rows {
        println!(
            "  {:<26} {:>7.2} MB {:>9.1} ms {:>9.1} ms {:>10.3} ms {:>10.3} ms {:>7.1} ms",
            r.name,
            r.size as f64 / 1e6,
            ms(r.compile),
            ms(r.cached),
            ms(r.instantiate),
            ms(r.instantiate_p99),
            ms(r.run)
        );
    }
    let (t, r) = (&rows[0], &rows[1]);
    println!(
        "  {:<26} {:>9.1}× {:>11.1}× {:>11.1}× {:>12.1}× {:>12.1}× {:>9.1}×",
        "ratio (TS/Rust)",
        t.size as f64 / r.size as f64,
        ms(t.compile) / ms(r.compile),
        ms(t.cached) / ms(r.cached),
        ms(t.instantiate) / ms(r.instantiate),
        ms(t.instantiate_p99) / ms(r.instantiate_p99),
        ms(t.run) / ms(r.run)
    );
}
