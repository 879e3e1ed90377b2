//! `cargo xtask new-plugin <id> [--dir <parent>]`: a Rust step plugin that builds, passes its
//! own test, and runs under `qodify-host step` as generated. In `plugins/` it is a workspace
//! member (`cargo xtask build` builds and embeds it); with `--dir` it is a crate of its own that
//! depends on this checkout's SDK by path, for teams that keep plugins in their own repository.

use std::path::{Path, PathBuf};

use anyhow::{Context as _, Result};

use crate::root;

/// Refuses an id that cannot be a plugin id: the id is the folder, the crate or package name
/// and the `.wasm` file stem (the host's `plugins::valid_id`).
pub fn check_id(id: &str) -> Result<()> {
    anyhow::ensure!(
        !id.is_empty()
            && id.len() <= 63
            && !id.starts_with('-')
            && id
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-'),
        "plugin id `{id}` must use lowercase letters, digits and `-` (it is the folder, the package name and the .wasm name)"
    );
    Ok(())
}

/// Writes the plugin `id` under `parent` (default `plugins/`); returns its folder.
pub fn rust(id: &str, parent: Option<&Path>) -> Result<PathBuf> {
    check_id(id)?;
    let in_workspace = parent.is_none();
    let parent = parent.map_or_else(|| root().join("plugins"), Path::to_path_buf);
    let dir = parent.join(id);
    anyhow::ensure!(!dir.exists(), "{} already exists", dir.display());
    let files = rust_files(id, in_workspace)?;
    for (rel, text) in &files {
        let path = dir.join(rel);
        std::fs::create_dir_all(path.parent().expect("a file in the plugin folder"))?;
        std::fs::write(&path, text).with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(dir)
}

/// The files of a new Rust plugin, by path in its folder.
fn rust_files(id: &str, in_workspace: bool) -> Result<Vec<(&'static str, String)>> {
    let krate = id.replace('-', "_");
    let cargo = if in_workspace {
        format!(
            r#"[package]
name = "{id}"
description = "qodify-host step plugin `{id}`"
version.workspace = true
edition.workspace = true
rust-version.workspace = true
license.workspace = true
publish.workspace = true

[lib]
crate-type = ["cdylib", "rlib"]

[dependencies]
qodify-plugin-sdk.workspace = true
serde.workspace = true

[lints]
workspace = true
"#
        )
    } else {
        let sdk = root().join("plugins/qodify-plugin-sdk");
        let sdk = sdk
            .canonicalize()
            .with_context(|| format!("finding the SDK at {}", sdk.display()))?;
        format!(
            r#"[package]
name = "{id}"
description = "qodify-host step plugin `{id}`"
version = "0.1.0"
edition = "2024"
publish = false

[lib]
crate-type = ["cdylib", "rlib"]

[dependencies]
qodify-plugin-sdk = {{ path = "{}" }}
serde = {{ version = "1", features = ["derive"] }}

# A workspace of its own, not a member of the one it was generated from.
[workspace]

[profile.release]
opt-level = "s"
"#,
            sdk.display()
        )
    };
    let lib = format!(
        r#"//! `{id}`: counts the entries of a mounted folder. Replace this with what your step does.

use qodify_plugin_sdk::prelude::*;

/// The step's `config` table from the pipeline (`[steps.config]`).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {{
    /// A folder the pipeline mounts for this step, as the plugin sees it, e.g. `/customer`.
    pub source: String,
}}

/// The step.
pub struct Plugin;

impl Step for Plugin {{
    type Config = Config;

    fn run(ctx: &Context, config: Config) -> Result<Output, Error> {{
        let entries = count_entries(&config.source)
            .with_context(|| format!("listing {{}}", config.source))?;
        ctx.info(format!("{{}} has {{entries}} entries", config.source));
        Ok(Output::new().value("entries", entries))
    }}
}}

/// The entries of a folder (plain `std::fs`: inside a step it works on the step's mounts,
/// natively on any folder, which the test below uses).
pub fn count_entries(path: &str) -> std::io::Result<usize> {{
    Ok(std::fs::read_dir(path)?.count())
}}

export_step!(Plugin);

#[cfg(test)]
mod tests {{
    use super::*;

    #[test]
    fn counts_the_entries_of_the_fixture() {{
        let fixture = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixture");
        let ctx = Context::builder().build();
        let out = Plugin::run(&ctx, Config {{ source: fixture.into() }}).unwrap();
        assert_eq!(out.values(), [("entries".to_owned(), "2".to_owned())]);
    }}

    #[test]
    fn a_missing_folder_is_an_error_naming_it() {{
        let ctx = Context::builder().build();
        let err = Plugin::run(&ctx, Config {{ source: "/nonexistent".into() }}).unwrap_err();
        assert!(err.to_string().contains("listing /nonexistent"), "{{err}}");
    }}
}}
"#
    );
    let manifest = format!(
        r#"# What `{id}` expects its pipeline step to grant (docs/plugins.md, "Capability manifests").
schema = 1
description = "counts the entries of a mounted folder"
programs = []
origins = []

[[mounts]]
role = "source"
access = "ro"
reason = "the folder whose entries it counts"
"#
    );
    let readme = format!(
        r#"# {id}

A qodify-host step plugin (Rust). See docs/plugins.md in qodify-host for the whole walkthrough.

```sh
cargo test                                          # the logic, natively
cargo build --release --target wasm32-wasip2        # → target/wasm32-wasip2/release/{krate}.wasm
qodify-host plugins add target/wasm32-wasip2/release/{krate}.wasm --id {id} \
    --manifest qodify-plugin.toml --plugins-dir ./built
qodify-host --plugins-dir ./built step {id} --fixture tests/fixture \
    --step-config tests/step.toml --json           # compare with tests/expected.json
```

In a pipeline:

```toml
[[steps]]
id = "count"
plugin = "{id}"
[steps.config]
source = "/customer"
[[steps.mounts]]
guest = "/customer"
path = ""
reason = "count the customer's top-level entries"
```
"#
    );
    Ok(vec![
        ("Cargo.toml", cargo),
        ("src/lib.rs", lib),
        ("qodify-plugin.toml", manifest),
        ("README.md", readme),
        ("tests/fixture/a.txt", "a\n".into()),
        ("tests/fixture/b.txt", "b\n".into()),
        (
            "tests/step.toml",
            "# The step's config for `qodify-host step` on tests/fixture (mounted at /customer).\nsource = \"/customer\"\n".into(),
        ),
        (
            "tests/expected.json",
            "{\n  \"status\": \"succeeded\",\n  \"outputs\": [[\"entries\", \"2\"]]\n}\n".into(),
        ),
    ])
}
