//! `cargo xtask new-plugin <id> --ts [--dir <parent>]`: a TypeScript plugin folder that builds
//! with the SDK (`sdk/ts`) and passes its own generated tests: `src/index.ts` (the step),
//! `src/summary.ts` (its logic, which Node tests without the host: `test/summary.test.ts`),
//! `test/fixture/` with `test/step.test.ts` and `test/step.expected.json` (the built plugin run
//! on the fixture by `qodify-host step`), `tsconfig.json` and `qodify-plugin.toml`.

use std::path::{Component, Path, PathBuf};

use anyhow::{Context as _, Result};

use crate::root;

/// Creates `<parent>/<id>/` (default parent: `plugins-ts/`); returns the folder.
pub fn create(id: &str, parent: Option<&Path>) -> Result<PathBuf> {
    crate::scaffold::check_id(id)?;
    let parent = match parent {
        Some(p) if p.is_absolute() => p.to_path_buf(),
        Some(p) => std::env::current_dir()?.join(p),
        None => root().join("plugins-ts"),
    };
    let dir = parent.join(id);
    anyhow::ensure!(!dir.exists(), "{} already exists", dir.display());
    for sub in ["src", "test/fixture/sub"] {
        std::fs::create_dir_all(dir.join(sub))
            .with_context(|| format!("creating {}", dir.join(sub).display()))?;
    }
    let sdk = relative(&dir, &root().join("sdk/ts/tsconfig.base.json"));
    let files = [
        ("src/index.ts", index(id)),
        ("src/summary.ts", SUMMARY.to_owned()),
        ("test/summary.test.ts", TEST.to_owned()),
        ("test/step.test.ts", step_test(id)),
        ("test/step.expected.json", step_expected(id)),
        ("test/fixture/hello.txt", "hello\n".to_owned()),
        (
            "test/fixture/sub/data.json",
            "{\"items\": [1, 2, 3]}\n".to_owned(),
        ),
        (
            "tsconfig.json",
            format!("{{\n  \"extends\": \"{sdk}\",\n  \"include\": [\"src\", \"test\"]\n}}\n"),
        ),
        ("qodify-plugin.toml", manifest(id)),
    ];
    for (name, text) in files {
        std::fs::write(dir.join(name), text)?;
    }
    Ok(dir)
}

/// `to` relative to the folder `from`, `/`-separated (both absolute).
fn relative(from: &Path, to: &Path) -> String {
    let from: Vec<Component<'_>> = from.components().collect();
    let to: Vec<Component<'_>> = to.components().collect();
    let common = from.iter().zip(&to).take_while(|(a, b)| a == b).count();
    let mut parts: Vec<String> = vec!["..".into(); from.len() - common];
    parts.extend(
        to[common..]
            .iter()
            .map(|c| c.as_os_str().to_string_lossy().into_owned()),
    );
    parts.join("/")
}

fn index(id: &str) -> String {
    format!(
        r#"// `{id}` step plugin: describe what this step does.
//
// Config: `source`, the guest path of a folder the pipeline mounts for this step.
// Outputs: `entries`, `files` and `bytes` of that folder (not recursive).
import {{ defineStep, files, t }} from '@qodify/plugin-sdk';

import {{ summarize }} from './summary';

const config = t.object({{
  source: t.string(),
}});

export const run = defineStep(config, (ctx, {{ source }}) => {{
  const entries = files.listDir(source).map((e) => ({{ name: e.name, kind: e.metadata.kind, size: e.metadata.size }}));
  const summary = summarize(entries);
  ctx.info(`${{source}} has ${{summary.entries}} entries`);
  return {{ values: summary }};
}});
"#
    )
}

const SUMMARY: &str = r#"// The step's logic, apart from the host calls, so Node can test it (test/summary.test.ts).

/** A folder entry as `files.listDir` describes it. */
export interface Entry {
  name: string;
  kind: 'file' | 'directory' | 'symlink' | 'other';
  size: bigint;
}

/** What the step reports about a folder (a type, not an interface: it is returned as `values`). */
export type Summary = {
  entries: number;
  files: number;
  bytes: bigint;
};

/** Counts a folder's entries, and the files among them with their bytes. */
export function summarize(entries: readonly Entry[]): Summary {
  const files = entries.filter((e) => e.kind === 'file');
  return {
    entries: entries.length,
    files: files.length,
    bytes: files.reduce((sum, e) => sum + e.size, 0n),
  };
}
"#;

const TEST: &str = r#"// Runs under Node: `node sdk/ts/build.mjs test <this plugin's folder>` (or `cargo xtask test`).
import assert from 'node:assert/strict';
import { test } from 'node:test';

import { summarize } from '../src/summary';

test('counts entries, and files with their bytes', () => {
  const summary = summarize([
    { name: 'hello.txt', kind: 'file', size: 6n },
    { name: 'sub', kind: 'directory', size: 4096n },
    { name: 'link', kind: 'symlink', size: 9n },
  ]);
  assert.deepEqual(summary, { entries: 3, files: 1, bytes: 6n });
});

test('an empty folder', () => {
  assert.deepEqual(summarize([]), { entries: 0, files: 0, bytes: 0n });
});
"#;

fn step_test(id: &str) -> String {
    format!(
        r#"// The built plugin on test/fixture through the real host and sandbox (`qodify-host step`).
// Runs when QODIFY_HOST and QODIFY_PLUGINS_DIR are set: `cargo xtask test` sets them for
// plugins-ts/; elsewhere build the plugin into a folder and set them yourself.
import assert from 'node:assert/strict';
import {{ join }} from 'node:path';
import {{ test }} from 'node:test';

import {{ hostSetup, pluginDir, readJson, runStep }} from '@qodify/plugin-sdk/testing';

const setup = hostSetup();

test('qodify-host step on the fixture gives the expected JSON', {{ skip: setup === undefined && 'QODIFY_HOST is not set' }}, () => {{
  const report = runStep(setup!, {{
    plugin: '{id}',
    fixture: join(pluginDir(), 'test/fixture'),
    config: {{ source: '/customer' }},
  }});
  assert.deepEqual(report, readJson(join(pluginDir(), 'test/step.expected.json')));
}});
"#
    )
}

/// What `qodify-host step --json` prints for the scaffold on its fixture, without `sha256` and
/// `durationMs`: `hello.txt` (6 bytes) and `sub/`, the fixture read-only at `/customer`.
fn step_expected(id: &str) -> String {
    format!(
        r#"{{
  "plugin": "{id}",
  "status": "succeeded",
  "error": null,
  "outputs": [["entries", "2"], ["files", "1"], ["bytes", "6"]],
  "artifacts": [],
  "logs": [{{ "level": "info", "message": "/customer has 2 entries" }}],
  "progress": [],
  "granted": {{
    "mounts": [{{ "guest": "/customer", "path": ".", "writable": false }}],
    "programs": [],
    "origins": []
  }},
  "used": {{ "programs": {{}}, "origins": {{}} }}
}}
"#
    )
}

fn manifest(id: &str) -> String {
    format!(
        r#"schema = 1
description = "{id}: describe what this step does"
programs = []
origins = []

[[mounts]]
role = "source"
access = "ro"
reason = "the folder it summarizes"
"#
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::Command;

    /// The scaffold, made where a team would make it (outside the repository), builds into a
    /// component that carries its manifest and passes its own tests: its logic under Node, and
    /// the built plugin on its fixture under `qodify-host step`. Needs Node.js and npm, and the
    /// host built by `cargo xtask build`; without them it is skipped, except under CI.
    #[test]
    fn a_typescript_scaffold_builds_and_passes_its_own_tests() {
        if !crate::ts_plugins::prepare_sdk("the TypeScript scaffold's test").unwrap() {
            return;
        }
        let host = crate::target_dir().unwrap().join("debug/qodify-host");
        let with_host = host.is_file();
        if !with_host {
            assert!(
                std::env::var("CI").as_deref() != Ok("true"),
                "{} is missing: run `cargo xtask build` first",
                host.display()
            );
            eprintln!(
                "{} is missing: the qodify-host step test is skipped",
                host.display()
            );
        }
        let tmp = std::env::temp_dir().join(format!("xtask-scaffold-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&tmp);
        let dir = create("hello-ts", Some(&tmp)).unwrap();
        let out_dir = tmp.join("out");
        let node = |args: &[&std::ffi::OsStr]| {
            let mut cmd = Command::new("node");
            cmd.arg(root().join("sdk/ts/build.mjs")).args(args);
            if with_host {
                cmd.env("QODIFY_HOST", &host)
                    .env("QODIFY_PLUGINS_DIR", &out_dir)
                    .env("QODIFY_DATA_DIR", tmp.join("data"));
            }
            let out = cmd.output().unwrap();
            let text = format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
            assert!(out.status.success(), "{args:?}:\n{text}");
            text
        };
        let wasm = out_dir.join("hello-ts.wasm");
        let mut job = dir.clone().into_os_string();
        job.push("=");
        job.push(&wasm);
        node(&["build".as_ref(), &job]);
        let bytes = std::fs::read(&wasm).unwrap();
        assert!(bytes.starts_with(b"\0asm"));
        let manifest = std::fs::read(dir.join("qodify-plugin.toml")).unwrap();
        assert!(
            bytes.ends_with(&manifest),
            "the manifest is the last section"
        );

        let tested = node(&["test".as_ref(), dir.as_os_str()]);
        let (pass, skipped) = if with_host { (3, 0) } else { (2, 1) };
        assert!(
            tested.contains(&format!("# pass {pass}"))
                && tested.contains(&format!("# skipped {skipped}"))
                && tested.contains("# fail 0"),
            "{tested}"
        );

        // Unchanged sources: the stamp makes the second build a no-op.
        let before = std::fs::metadata(&wasm).unwrap().modified().unwrap();
        node(&["build".as_ref(), &job]);
        assert_eq!(
            std::fs::metadata(&wasm).unwrap().modified().unwrap(),
            before
        );
        std::fs::remove_dir_all(&tmp).unwrap();
    }

    #[test]
    fn paths_to_the_sdk_are_relative_to_the_plugin_folder() {
        assert_eq!(
            relative(Path::new("/r/plugins-ts/x"), Path::new("/r/sdk/ts/b.json")),
            "../../sdk/ts/b.json"
        );
        assert_eq!(
            relative(Path::new("/tmp/p/x"), Path::new("/r/sdk/ts/b.json")),
            "../../../r/sdk/ts/b.json"
        );
    }
}
