//! The plugins a host can run: what each asks for (`plugins list`), and adding a built plugin
//! to the plugin folder (`plugins add`) after checking it is a step plugin this host can run.

use std::path::{Path, PathBuf};

use anyhow::{Context as _, bail};
use serde::Serialize;

use crate::engine::manifest::Manifest;
use crate::engine::plugins::{self, Catalog, PluginBytes};
use crate::engine::runtime::Runtime;
use crate::settings::Settings;

/// One plugin file and what it asks for.
#[derive(Debug, Clone, Serialize)]
pub struct PluginInfo {
    /// Its id (the file stem).
    pub id: String,
    /// sha256 of the file, for pinning.
    pub sha256: String,
    /// Bytes.
    pub size: u64,
    /// The file.
    pub path: PathBuf,
    /// The host interfaces it imports (`commands`, `http`, …), without versions.
    pub host_interfaces: Vec<String>,
    /// Every interface it imports.
    pub imports: Vec<String>,
    /// What it declares it needs granted; absent when it has no manifest.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub declares: Option<Manifest>,
    /// Why its manifest (or its imports) cannot be read.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub problem: Option<String>,
}

fn describe(id: &str, path: &Path, bytes: &PluginBytes) -> PluginInfo {
    let mut problem = None;
    let imports = plugins::imports(&bytes.bytes).unwrap_or_else(|e| {
        problem = Some(e);
        Vec::new()
    });
    let declares = Manifest::of_component(&bytes.bytes).unwrap_or_else(|e| {
        problem.get_or_insert(e.to_string());
        None
    });
    PluginInfo {
        id: id.to_owned(),
        sha256: bytes.sha256.clone(),
        size: bytes.bytes.len() as u64,
        path: path.to_path_buf(),
        host_interfaces: host_interfaces(&imports),
        imports,
        declares,
        problem,
    }
}

/// The `qodify:pipeline` interfaces among `imports`, by bare name (`types` left out).
fn host_interfaces(imports: &[String]) -> Vec<String> {
    imports
        .iter()
        .filter_map(|i| i.strip_prefix("qodify:pipeline/"))
        .map(|i| i.split('@').next().unwrap_or(i).to_owned())
        .filter(|i| i != "types")
        .collect()
}

/// Every plugin of the catalog.
pub fn list(catalog: &Catalog) -> anyhow::Result<Vec<PluginInfo>> {
    catalog
        .iter()
        .map(|p| {
            let bytes = plugins::read_hashed(&p.path)?;
            Ok(describe(&p.id, &p.path, &bytes))
        })
        .collect()
}

/// What `add` did.
#[derive(Debug, Clone, Serialize)]
pub struct Added {
    /// The plugin as it now is in the folder.
    pub plugin: PluginInfo,
    /// False when the same file was there already.
    pub changed: bool,
    /// The sha256 of the file it replaced, if any.
    pub replaced: Option<String>,
}

/// Copies the component at `file` into the first plugin folder as `<id>.wasm` (`id`: the file
/// stem unless given), after checking that this host can run it as a step: it compiles, it
/// imports only what the host provides (`qodify:pipeline@0.1.x` and WASI 0.2), and it exports
/// the step world's `run`. An existing different `<id>.wasm` is replaced only with `replace`.
/// The copy is written beside the target and renamed over it, so a running host never sees
/// half a file.
pub fn add(
    settings: &Settings,
    runtime: &Runtime,
    file: &Path,
    id: Option<&str>,
    manifest: Option<&Path>,
    replace: bool,
) -> anyhow::Result<Added> {
    let id = match id {
        Some(id) => id.to_owned(),
        None => file
            .file_stem()
            .and_then(|s| s.to_str())
            .map(str::to_owned)
            .with_context(|| {
                format!(
                    "{} has no file name to take the id from; pass --id",
                    file.display()
                )
            })?,
    };
    anyhow::ensure!(
        plugins::valid_id(&id),
        "`{id}` is not a plugin id (lowercase letters, digits and `-`, up to 63); pass --id"
    );
    let mut bytes = plugins::read_hashed(file).map_err(anyhow::Error::from)?;
    if let Some(path) = manifest {
        bytes = with_manifest(&bytes, path)?;
    }
    check_world(runtime, &bytes).with_context(|| format!("{} cannot be added", file.display()))?;
    let dir = settings.plugin_dirs.first().with_context(
        || "no plugin folder is configured (plugin_dirs in qodify-host.toml, or --plugins-dir)",
    )?;
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let dest = dir.join(format!("{id}.wasm"));
    let replaced = match plugins::read_hashed(&dest) {
        Ok(old) if old.sha256 == bytes.sha256 => {
            return Ok(Added {
                plugin: describe(&id, &dest, &bytes),
                changed: false,
                replaced: None,
            });
        }
        Ok(old) if !replace => bail!(
            "{} exists with sha256 {}: pass --replace to replace it (pipelines that pin the old sha256 then refuse to run until their pin is updated)",
            dest.display(),
            old.sha256
        ),
        Ok(old) => Some(old.sha256),
        Err(_) => None,
    };
    let tmp = dir.join(format!(".{id}.wasm.{}.tmp", std::process::id()));
    let written = std::fs::write(&tmp, &bytes.bytes)
        .and_then(|()| std::fs::File::open(&tmp)?.sync_all())
        .and_then(|()| std::fs::rename(&tmp, &dest));
    if let Err(e) = written {
        let _ = std::fs::remove_file(&tmp);
        return Err(e).with_context(|| format!("writing {}", dest.display()));
    }
    Ok(Added {
        plugin: describe(&id, &dest, &bytes),
        changed: true,
        replaced,
    })
}

/// The component with the manifest file at `path` embedded (a plugin built outside
/// `cargo xtask build` and `sdk/ts/build.mjs`, which embed it themselves). The manifest is
/// checked first; a component that has one already is refused.
fn with_manifest(bytes: &PluginBytes, path: &Path) -> anyhow::Result<PluginBytes> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("reading the manifest {}", path.display()))?;
    Manifest::parse(&text).with_context(|| format!("{}", path.display()))?;
    if Manifest::of_component(&bytes.bytes)
        .map_err(anyhow::Error::from)?
        .is_some()
    {
        bail!("the component has a manifest already; leave out --manifest");
    }
    let out = crate::engine::manifest::embed(&bytes.bytes, &text);
    Ok(PluginBytes {
        sha256: hex::encode(<sha2::Sha256 as sha2::Digest>::digest(&out)),
        bytes: out,
    })
}

/// Refuses a component this host cannot run as a step, naming why.
fn check_world(runtime: &Runtime, bytes: &PluginBytes) -> anyhow::Result<()> {
    let imports = plugins::imports(&bytes.bytes).map_err(anyhow::Error::msg)?;
    // Interfaces are named `ns:pkg/iface@version`; plain names are the world's types.
    let foreign: Vec<&String> = imports
        .iter()
        .filter(|i| i.contains(':'))
        .filter(|i| !(i.starts_with("qodify:pipeline/") || i.starts_with("wasi:")))
        .collect();
    if !foreign.is_empty() {
        bail!(
            "it imports {} which is not part of qodify:pipeline's step world; build it against wit/pipeline.wit",
            join(&foreign)
        );
    }
    let http: Vec<&String> = imports
        .iter()
        .filter(|i| i.starts_with("wasi:http/"))
        .collect();
    if !http.is_empty() {
        bail!(
            "it imports {}, which this host does not provide: steps reach HTTP only through qodify:pipeline/http (for componentize-js, build with disableFeatures [\"http\", \"fetch-event\"], as sdk/ts/build.mjs does)",
            join(&http)
        );
    }
    if let Some(newer) = imports.iter().find(|i| {
        i.strip_prefix("qodify:pipeline/")
            .and_then(|i| i.split_once('@'))
            .is_some_and(|(_, v)| !v.starts_with("0.1."))
    }) {
        bail!(
            "it imports {newer}, a qodify:pipeline version this host does not provide (it provides 0.1.x)"
        );
    }
    runtime.prepare(bytes).map(|_| ())
}

fn join(items: &[&String]) -> String {
    items
        .iter()
        .map(|s| format!("`{s}`"))
        .collect::<Vec<_>>()
        .join(", ")
}
