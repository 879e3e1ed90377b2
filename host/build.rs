//! Embeds the web console when it is built: `cargo xtask build` runs the Vite build into
//! `console/dist/` before compiling the host; a host compiled without it serves a page that says
//! how to build it (`cfg(qodify_console)` tells which).

use std::path::Path;

fn main() {
    println!("cargo::rustc-check-cfg=cfg(qodify_console)");
    let dist = Path::new(env!("CARGO_MANIFEST_DIR")).join("../console/dist");
    // A directory: cargo reruns when anything under it changes.
    println!("cargo::rerun-if-changed={}", dist.display());
    if dist.join("index.html").is_file() {
        println!("cargo::rustc-cfg=qodify_console");
    }
}
