//! The plugin catalog: `<plugin-id>.wasm` files in the plugin folders, identified by id (the file
//! stem) and pinned by the sha256 of their content.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

/// Why a plugin could not be used.
#[derive(Debug, thiserror::Error)]
pub enum PluginError {
    /// No `.wasm` file with that id.
    #[error("unknown plugin `{id}`; {hint}")]
    Unknown {
        /// The id asked for.
        id: String,
        /// Which ids exist and where they were looked for.
        hint: String,
    },
    /// The file's content does not match the pipeline's pin.
    #[error(
        "plugin `{id}` at {path} has sha256 {actual} but the pipeline pins {pinned}; replace the plugin with the pinned build or update `sha256` in the pipeline"
    )]
    PinMismatch {
        /// Plugin id.
        id: String,
        /// Its file.
        path: PathBuf,
        /// What the file hashes to.
        actual: String,
        /// What the pipeline wants.
        pinned: String,
    },
    /// Reading the file failed.
    #[error("reading plugin {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
}

/// One plugin file.
#[derive(Debug, Clone)]
pub struct PluginFile {
    /// Plugin id (`archive`).
    pub id: String,
    /// Where it is.
    pub path: PathBuf,
}

/// A plugin file's bytes with their hash.
pub struct PluginBytes {
    /// Content.
    pub bytes: Vec<u8>,
    /// Lowercase hex sha256 of `bytes`.
    pub sha256: String,
}

/// Plugins found in the plugin folders; the first folder that has an id wins.
#[derive(Debug, Clone, Default)]
pub struct Catalog {
    plugins: BTreeMap<String, PluginFile>,
    dirs: Vec<PathBuf>,
}

/// Is `id` a valid plugin id (also the `.wasm` file stem and the crate name)?
pub fn valid_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 63
        && id
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !id.starts_with('-')
}

impl Catalog {
    /// Scans the folders (missing ones are skipped).
    pub fn scan(dirs: &[PathBuf]) -> Self {
        let mut plugins = BTreeMap::new();
        for dir in dirs {
            let Ok(entries) = std::fs::read_dir(dir) else {
                continue;
            };
            let mut found: Vec<PathBuf> =
                entries.filter_map(|e| e.ok().map(|e| e.path())).collect();
            found.sort();
            for path in found {
                if path.extension().is_some_and(|e| e == "wasm")
                    && let Some(id) = path.file_stem().and_then(|s| s.to_str())
                    && valid_id(id)
                    && path.is_file()
                {
                    plugins.entry(id.to_owned()).or_insert(PluginFile {
                        id: id.to_owned(),
                        path,
                    });
                }
            }
        }
        Self {
            plugins,
            dirs: dirs.to_vec(),
        }
    }

    /// All plugins, by id.
    pub fn iter(&self) -> impl Iterator<Item = &PluginFile> {
        self.plugins.values()
    }

    /// Is there a plugin with this id?
    pub fn contains(&self, id: &str) -> bool {
        self.plugins.contains_key(id)
    }

    /// One line naming the known plugins, for error hints.
    pub fn hint(&self) -> String {
        if self.plugins.is_empty() {
            format!(
                "no plugins found in {} (build them with `cargo xtask build`, or set plugin_dirs in qodify-host.toml / --plugins-dir)",
                self.dirs
                    .iter()
                    .map(|d| d.display().to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        } else {
            format!(
                "known plugins: {}",
                self.plugins.keys().cloned().collect::<Vec<_>>().join(", ")
            )
        }
    }

    /// The plugin with this id.
    pub fn get(&self, id: &str) -> Result<&PluginFile, PluginError> {
        self.plugins.get(id).ok_or_else(|| PluginError::Unknown {
            id: id.to_owned(),
            hint: self.hint(),
        })
    }

    /// Reads a plugin and checks its pin.
    pub fn read(
        &self,
        id: &str,
        pin: Option<&str>,
    ) -> Result<(PluginFile, PluginBytes), PluginError> {
        let file = self.get(id)?.clone();
        let bytes = read_hashed(&file.path)?;
        if let Some(pin) = pin
            && !pin.eq_ignore_ascii_case(&bytes.sha256)
        {
            return Err(PluginError::PinMismatch {
                id: id.to_owned(),
                path: file.path.clone(),
                actual: bytes.sha256,
                pinned: pin.to_owned(),
            });
        }
        Ok((file, bytes))
    }
}

/// Reads a file and hashes it.
pub fn read_hashed(path: &Path) -> Result<PluginBytes, PluginError> {
    let io = |source| PluginError::Io {
        path: path.to_owned(),
        source,
    };
    let mut bytes = Vec::new();
    std::fs::File::open(path)
        .and_then(|mut f| f.read_to_end(&mut bytes))
        .map_err(io)?;
    let sha256 = hex::encode(Sha256::digest(&bytes));
    Ok(PluginBytes { bytes, sha256 })
}

/// The interfaces a component imports (top level only), e.g. `qodify:pipeline/files@0.1.0` or
/// `wasi:filesystem/types@0.2.6`: what the plugin can ask for at most, before grants narrow it.
pub fn imports(bytes: &[u8]) -> Result<Vec<String>, String> {
    let mut out = Vec::new();
    let mut depth = 0usize;
    for payload in wasmparser::Parser::new(0).parse_all(bytes) {
        match payload.map_err(|e| format!("not a valid component: {e}"))? {
            wasmparser::Payload::Version { .. } => depth += 1,
            wasmparser::Payload::End(_) => depth = depth.saturating_sub(1),
            wasmparser::Payload::ComponentImportSection(reader) if depth == 1 => {
                for import in reader {
                    let import = import.map_err(|e| format!("not a valid component: {e}"))?;
                    out.push(import.name.name.to_owned());
                }
            }
            _ => {}
        }
    }
    out.sort();
    out.dedup();
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_file_stems_of_plain_names() {
        assert!(valid_id("archive") && valid_id("db-dump"));
        assert!(!valid_id("Archive") && !valid_id("../x") && !valid_id("-x") && !valid_id(""));
    }

    #[test]
    fn a_pin_mismatch_names_both_hashes_and_what_to_do() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("p.wasm"), b"not really wasm").unwrap();
        let cat = Catalog::scan(&[dir.path().to_path_buf()]);
        let actual = read_hashed(&dir.path().join("p.wasm")).unwrap().sha256;
        assert!(cat.read("p", Some(&actual)).is_ok());
        let err = cat
            .read("p", Some(&"0".repeat(64)))
            .err()
            .unwrap()
            .to_string();
        assert!(
            err.contains(&actual) && err.contains("update `sha256`"),
            "{err}"
        );
        let err = cat.read("q", None).err().unwrap().to_string();
        assert!(
            err.contains("unknown plugin `q`; known plugins: p"),
            "{err}"
        );
    }

    #[test]
    fn garbage_is_not_a_component() {
        assert!(imports(b"garbage").is_err());
    }
}
