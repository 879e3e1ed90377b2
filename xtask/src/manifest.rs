//! Capability manifests: a plugin folder's `qodify-plugin.toml` (what the plugin expects to be
//! granted), appended verbatim to its component as the top-level custom section
//! `qodify-manifest`, where the host reads it (host `engine::manifest`). The section goes at the
//! end, so the component itself is unchanged and the manifest is covered by the file's sha256.
//! The TypeScript build (`sdk/ts/build.mjs`) appends the same section the same way.

use std::path::Path;

use anyhow::{Context as _, Result};
use wasm_encoder::{CustomSection, Section as _};

/// The manifest's file name in a plugin folder.
pub const FILE: &str = "qodify-plugin.toml";
/// The custom section's name (the host's `engine::manifest::SECTION`).
pub const SECTION: &str = "qodify-manifest";

/// `component` with `<plugin_dir>/qodify-plugin.toml` appended as the `qodify-manifest` custom
/// section, or unchanged when the folder has none.
pub fn embed(mut component: Vec<u8>, plugin_dir: &Path) -> Result<Vec<u8>> {
    let path = plugin_dir.join(FILE);
    let payload = match std::fs::read(&path) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(component),
        Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
    };
    anyhow::ensure!(
        std::str::from_utf8(&payload).is_ok(),
        "{} is not UTF-8 text",
        path.display()
    );
    append(&mut component, &payload);
    Ok(component)
}

/// Appends a `qodify-manifest` custom section holding `payload` to a component's bytes: a
/// custom section may follow any other at the top level of a component, and its id (0) is the
/// same in components and modules.
pub fn append(component: &mut Vec<u8>, payload: &[u8]) {
    CustomSection {
        name: SECTION.into(),
        data: payload.into(),
    }
    .append_to(component);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_section_is_id_zero_size_name_then_the_payload_verbatim() {
        let mut bytes = b"\0asm\x0d\0\x01\0".to_vec();
        let header = bytes.len();
        let payload = b"schema = 1\n";
        append(&mut bytes, payload);
        let section = &bytes[header..];
        // id 0; size = 1 (name length) + 15 (name) + payload; all below 128, so one LEB byte each.
        assert_eq!(section[0], 0);
        assert_eq!(section[1] as usize, 1 + SECTION.len() + payload.len());
        assert_eq!(section[2] as usize, SECTION.len());
        assert_eq!(&section[3..3 + SECTION.len()], SECTION.as_bytes());
        assert_eq!(&section[3 + SECTION.len()..], payload);
    }

    #[test]
    fn a_folder_without_a_manifest_leaves_the_component_as_it_was() {
        let dir = std::env::temp_dir().join(format!("xtask-manifest-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        assert_eq!(embed(vec![1, 2, 3], &dir).unwrap(), [1, 2, 3]);
        std::fs::write(dir.join(FILE), "x".repeat(300)).unwrap();
        let out = embed(vec![1, 2, 3], &dir).unwrap();
        // 300 + 16 bytes of body take two LEB128 bytes: 316 = 0xbc 0x02.
        assert_eq!(&out[3..6], &[0, 0xbc, 0x02]);
        assert!(out.ends_with(&[b'x'; 300]));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
