//! `cargo xtask bench --plugins-only`: the TypeScript example plugin (`disk-usage`, built by
//! componentize-js) against its Rust twin (`disk-usage-rs`) on the same engine: component size,
//! compile time with the cache cleared, load from the disk cache, warm instantiation p50/p99 and
//! the run time of measuring one folder (10 000 files), with TS/Rust ratios. The measuring is
//! `host/benches/plugins.rs`, which links the host's engine as the host does.

use std::path::Path;
use std::process::Command;

use anyhow::Result;

/// Runs the comparison on the components `cargo xtask build` made.
pub fn run(target: &Path) -> Result<()> {
    let ts = target.join("plugins/disk-usage.wasm");
    let rs = target.join("test-plugins/disk-usage-rs.wasm");
    for p in [&ts, &rs] {
        anyhow::ensure!(
            p.is_file(),
            "{} is missing: the TypeScript plugins need Node.js and npm (`cargo xtask build` builds them)",
            p.display()
        );
    }
    crate::run(
        Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
            .args(["bench", "-p", "qodify-host", "--bench", "plugins", "--"])
            .arg(ts)
            .arg(rs),
    )
}
