//! `cargo xtask bench`: measures the archive plugin against native `tar -czf` on one generated
//! tree, and the per-step overhead of the runtime.

use anyhow::Result;

pub fn run(_args: &[&str]) -> Result<()> {
    anyhow::bail!("bench is not written yet")
}
