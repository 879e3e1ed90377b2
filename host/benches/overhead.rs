//! Per-step overhead with a warm cache: a fresh `Store` + instantiate from the pre-linked
//! component + a no-op `run` call, p50/p99 over many calls, against spawning a native no-op
//! process (`/bin/true`), the cheapest way to isolate a native step. Then what confinement adds
//! to starting a granted program: 1000 starts of `/bin/true` plain, under the supervisor alone
//! (`commands.confinement = "off"`) and in a Landlock domain, interleaved so that drift in the
//! machine's load hits all three alike. Run by `cargo xtask bench`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use qodify_host::engine::bindings::types;
use qodify_host::engine::caps::{CancelToken, StepHost};
use qodify_host::engine::plugins::read_hashed;
use qodify_host::engine::runtime::{Runtime, StepCall};
use qodify_host::engine::sandbox::MountTable;
use qodify_host::events::NullSink;

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
        host: StepHost::new(
            "noop",
            MountTable::default(),
            Arc::new(NullSink),
            CancelToken::default(),
            Instant::now() + Duration::from_secs(60),
        )
        .with_max_log_lines(1000),
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

    confinement();
}

/// p50/p99 of starting `/bin/true` plain, supervised and confined.
fn confinement() {
    use qodify_host::engine::confine::{Confinement, Mode, Policy};
    let landlock = Confinement::new(Mode::Landlock);
    let off = Confinement {
        mode: Mode::Off,
        ..landlock
    };
    // A policy like a backup step's: two mounts and a private home and temp folder.
    let dirs = tempfile::tempdir().unwrap();
    let folders: Vec<std::fs::File> = ["ro", "rw", "home", "tmp"]
        .iter()
        .map(|n| {
            std::fs::create_dir(dirs.path().join(n)).unwrap();
            std::fs::File::open(dirs.path().join(n)).unwrap()
        })
        .collect();
    use std::os::fd::AsFd;
    let policy = Policy {
        read: vec![folders[0].as_fd()],
        write: folders[1..].iter().map(|f| f.as_fd()).collect(),
        connect: vec![5432],
        ..Default::default()
    };
    let start = |c: Option<&Confinement>| {
        let t = Instant::now();
        let mut cmd = std::process::Command::new("/bin/true");
        let _lifeline = c.map(|c| c.prepare(&policy).unwrap().install(&mut cmd).unwrap());
        assert!(cmd.status().unwrap().success());
        t.elapsed()
    };
    let n = 1000;
    let (mut plain, mut supervised, mut confined) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..20 {
        start(None);
        start(Some(&off));
    }
    for _ in 0..n {
        plain.push(start(None));
        supervised.push(start(Some(&off)));
        if landlock.enforced() {
            confined.push(start(Some(&landlock)));
        }
    }
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    let base = pct(&mut plain.clone(), 0.5);
    let row = |name: &str, v: &mut Vec<Duration>| {
        let (p50, p99) = (pct(v, 0.5), pct(v, 0.99));
        println!(
            "  {name:<11} p50 {:>8.3} ms   p99 {:>8.3} ms   p50 ratio {:.2}×  (+{:.3} ms)",
            ms(p50),
            ms(p99),
            ms(p50) / ms(base),
            ms(p50) - ms(base)
        );
    };
    println!("\nstarting a granted program ({n} starts of /bin/true each, interleaved):");
    row("plain", &mut plain);
    row("supervised", &mut supervised);
    if confined.is_empty() {
        println!(
            "  confined    (this kernel has no Landlock: {})",
            landlock.describe()
        );
    } else {
        row("confined", &mut confined);
    }
}
