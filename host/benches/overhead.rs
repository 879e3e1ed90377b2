//! Per-step overhead with a warm cache: a fresh `Store` + instantiate from the pre-linked
//! component + a no-op `run` call, p50/p99 over many calls, against spawning a native no-op
//! process (`/bin/true`), the cheapest way to isolate a native step. Run by `cargo xtask bench`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use qodify_host::bindings::types;
use qodify_host::caps::{CancelToken, StepHost};
use qodify_host::events::NullSink;
use qodify_host::plugins::read_hashed;
use qodify_host::runtime::{Runtime, StepCall};
use qodify_host::sandbox::MountTable;

fn pct(v: &mut [Duration], p: f64) -> Duration {
    v.sort();
    v[((v.len() as f64 - 1.0) * p).round() as usize]
}

fn main() {
    let wasm = std::env::args()
        .skip(1)
        .find(|a| a.ends_with(".wasm"))
        .expect("usage: overhead <noop.wasm>");
    let data = tempfile::tempdir().unwrap();
    let rt = Runtime::new(data.path()).unwrap();
    let bytes = read_hashed(std::path::Path::new(&wasm)).unwrap();
    let pre = rt.prepare(&bytes).unwrap();
    let call = || StepCall {
        context: types::StepContext {
            customer: types::Customer {
                id: "42".into(),
                domain: "bench.example.com".into(),
            },
            run_id: "bench".into(),
            run_timestamp: "20261126-000000".into(),
            step_id: "noop".into(),
            params: vec![],
            config: "{}".into(),
            mounts: vec![],
            previous: vec![],
        },
        host: StepHost {
            step_id: "noop".into(),
            mounts: MountTable::default(),
            commands: vec![],
            http: vec![],
            approvals: None,
            events: Arc::new(NullSink),
            cancel: CancelToken::default(),
            deadline: Instant::now() + Duration::from_secs(60),
            max_log_lines: 1000,
            log_lines: 0,
            last_progress: None,
            secrets: vec![],
            confinement: qodify_host::confine::Confinement::new(Default::default()),
            work: None,
            host_paths: Default::default(),
        },
        memory_bytes: 64 << 20,
        timeout: Duration::from_secs(60),
    };
    for _ in 0..100 {
        rt.call(&pre, call()).unwrap();
    }
    let n = 2000;
    let mut wasm_times: Vec<Duration> = (0..n)
        .map(|_| {
            let c = call();
            let t = Instant::now();
            rt.call(&pre, c).unwrap();
            t.elapsed()
        })
        .collect();
    let mut native: Vec<Duration> = (0..300)
        .map(|_| {
            let t = Instant::now();
            std::process::Command::new("/bin/true").status().unwrap();
            t.elapsed()
        })
        .collect();
    let (w50, w99) = (pct(&mut wasm_times, 0.5), pct(&mut wasm_times, 0.99));
    let (n50, n99) = (pct(&mut native, 0.5), pct(&mut native, 0.99));
    println!("\nper-step overhead, warm cache ({n} calls; native: 300 spawns of /bin/true):");
    println!(
        "  wasm step   p50 {:>8.3} ms   p99 {:>8.3} ms",
        w50.as_secs_f64() * 1e3,
        w99.as_secs_f64() * 1e3
    );
    println!(
        "  native proc p50 {:>8.3} ms   p99 {:>8.3} ms",
        n50.as_secs_f64() * 1e3,
        n99.as_secs_f64() * 1e3
    );
    println!(
        "  ratio (wasm/native) p50 {:.3}×  p99 {:.3}×",
        w50.as_secs_f64() / n50.as_secs_f64(),
        w99.as_secs_f64() / n99.as_secs_f64()
    );
}
