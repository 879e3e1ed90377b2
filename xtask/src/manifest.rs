//! Embeds a plugin's capability manifest (`qodify-plugin.toml` in its folder) into its built
//! component as the custom section `qodify-manifest`, which the host reads (host
//! `engine::manifest`). The section goes at the end of the component, so the component itself is
//! unchanged and the manifest is covered by the file's sha256.

use std::path::Path;

use anyhow::{Context as _, Result};

/// The custom section's name (the host's `engine::manifest::SECTION`).
const SECTION: &str = "qodify-manifest";

/// `component` with the manifest of `plugin_dir` appended, or unchanged when it has none.
pub fn embed(component: Vec<u8>, plugin_dir: &Path) -> Result<Vec<u8>> {
    let path = plugin_dir.join("qodify-plugin.toml");
    let text = match std::fs::read(&path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(component),
        Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
    };
    anyhow::ensure!(
        std::str::from_utf8(&text).is_ok(),
        "{} is not UTF-8 text",
        path.display()
    );
    let mut out = component;
    let section = wasm_encoder::CustomSection {
        name: SECTION.into(),
        data: text.into(),
    };
    out.push(0); // a custom section's id, in a component as in a module
    wasm_encoder::Encode::encode(&section, &mut out);
    Ok(out)
}
