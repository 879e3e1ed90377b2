//! The release catalog check of `qodify-host validate`: `releases.json` against the JSON Schema
//! shipped as `templates/releases.schema.json` (embedded here), then what a schema cannot say:
//! versions unique, `upgradeFrom` naming versions the catalog knows (or lists under
//! `externalVersions`), Node and PostgreSQL ranges that parse under the plugins' lenient rules,
//! and every package present inside the catalog's folder with the sha256 the catalog gives.
//! Errors are `file:line:col` diagnostics with a hint, like the pipeline loader's.
//!
//! [`read`] reads the catalog for the upgrade targets a customer is shown
//! (`ops::customers::upgrades`), judged by the rule the upgrade's `release-check` step applies
//! ([`release_rules`]).

use std::collections::{BTreeMap, HashMap};
use std::io::Read as _;
use std::ops::Range;
use std::path::{Component, Path, PathBuf};
use std::sync::OnceLock;

use serde::Deserialize;
use serde_json::Value;
use sha2::{Digest as _, Sha256};

use crate::pipeline::{Diagnostic, Diagnostics, Snippet};

/// The catalog's file name inside the releases folder.
pub const FILE_NAME: &str = "releases.json";

/// The JSON Schema (draft 2020-12) of `releases.json`.
pub const SCHEMA: &str = include_str!("../../templates/releases.schema.json");

/// True for a file the `validate` command treats as a release catalog.
pub fn is_catalog(path: &Path) -> bool {
    path.file_name().is_some_and(|n| n == FILE_NAME)
}

/// Checks the catalog at `path`; package paths are relative to its folder.
pub fn check_file(path: &Path) -> Result<(), Diagnostics> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        Diagnostic::new(path, 1, 1, format!("cannot read the release catalog: {e}")).with_hint(
            "point --releases-dir (or `releases_dir` in qodify-host.toml) at the folder holding \
             releases.json",
        )
    })?;
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    Diagnostics::from_vec(check(path, &text, &dir)).map_or(Ok(()), Err)
}

/// Checks catalog `text` (read from `file`, for messages); packages resolve against `dir`.
pub fn check(file: &Path, text: &str, dir: &Path) -> Vec<Diagnostic> {
    let doc: Value = match serde_json::from_str(text) {
        Ok(v) => v,
        Err(e) => {
            return vec![
                at_line_col(file, text, e.line(), e.column(), syntax_message(&e)).with_hint(
                    "releases.json must be JSON: look for a missing comma, quote or bracket here \
                     or just before",
                ),
            ];
        }
    };
    let spans = Spans::scan(text);
    let mut out: Vec<Diagnostic> = validator()
        .iter_errors(&doc)
        .flat_map(|e| schema_diagnostics(file, text, &spans, &e))
        .collect();
    if out.is_empty() {
        match serde_json::from_value::<Catalog>(doc) {
            Ok(catalog) => out = semantic(file, text, &spans, &catalog, dir),
            // The schema admits nothing serde refuses; should they drift apart, say so.
            Err(e) => out.push(
                Diagnostic::new(file, 1, 1, format!("cannot read the catalog: {e}"))
                    .with_hint("the schema and the catalog reader disagree; report this as a bug"),
            ),
        }
    }
    out.sort_by_key(|d| (d.line, d.col));
    out.dedup();
    out
}

/// The compiled schema. The schema is part of the binary: a broken one is a bug, caught by tests.
fn validator() -> &'static jsonschema::Validator {
    static VALIDATOR: OnceLock<jsonschema::Validator> = OnceLock::new();
    VALIDATOR.get_or_init(|| {
        jsonschema::draft202012::new(schema()).expect("templates/releases.schema.json compiles")
    })
}

/// A release version name as the catalog's schema defines it (`$defs/version`): also the name of
/// the release folder, so the API refuses anything else before it queues an upgrade.
pub fn is_version_name(v: &str) -> bool {
    static VERSION: OnceLock<jsonschema::Validator> = OnceLock::new();
    VERSION
        .get_or_init(|| {
            let def = schema()
                .pointer("/$defs/version")
                .expect("templates/releases.schema.json defines $defs/version");
            jsonschema::draft202012::new(def).expect("$defs/version compiles")
        })
        .is_valid(&Value::String(v.to_owned()))
}

fn schema() -> &'static Value {
    static SCHEMA_VALUE: OnceLock<Value> = OnceLock::new();
    SCHEMA_VALUE.get_or_init(|| {
        serde_json::from_str(SCHEMA).expect("templates/releases.schema.json parses")
    })
}

/// `releases.json` as the host reads it: for the semantic checks of `validate` (after the schema
/// checked the shape) and for the upgrade targets a customer is shown ([`read`]).
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Catalog {
    /// The releases, in the catalog's order.
    pub releases: Vec<Release>,
    /// Versions customers may run that have no package here, each with a note.
    #[serde(default)]
    pub external_versions: BTreeMap<String, String>,
}

/// One release of the catalog.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Release {
    /// The version, also the release folder's name, e.g. `v1.1.0`.
    pub version: String,
    /// Its package.
    pub package: Package,
    /// What it runs on and what may upgrade to it.
    pub compat: Compat,
    /// The `.env` changes it makes on purpose, per service (`backend`, `admin`, `store`).
    #[serde(default)]
    pub env: BTreeMap<String, EnvChanges>,
    /// Release notes for people.
    #[serde(default)]
    pub notes: Option<String>,
}

/// A release's package.
#[derive(Debug, Clone, Deserialize)]
pub struct Package {
    /// Path of the `.tar.gz`, relative to the catalog's folder.
    pub path: String,
    /// Its sha256, lowercase hex.
    pub sha256: String,
}

/// A release's compatibility matrix.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Compat {
    /// Node.js versions it runs on, e.g. `>=18.17 <23`.
    pub node: String,
    /// PostgreSQL server versions it supports.
    pub postgres: String,
    /// Versions that may upgrade to it directly.
    pub upgrade_from: Vec<String>,
}

/// The deliberate `.env` changes of one service.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct EnvChanges {
    /// Keys whose value the release sets.
    #[serde(default)]
    pub set: BTreeMap<String, String>,
    /// Keys the release removes.
    #[serde(default)]
    pub remove: Vec<String>,
}

impl Catalog {
    /// The releases as the upgrade rule reads them ([`release_rules::check`]).
    pub fn upgrade_entries(&self) -> Vec<release_rules::Entry<'_>> {
        self.releases
            .iter()
            .map(|r| release_rules::Entry {
                version: &r.version,
                upgrade_from: &r.compat.upgrade_from,
            })
            .collect()
    }
}

/// Why the catalog could not be read.
#[derive(Debug, thiserror::Error)]
pub enum CatalogError {
    /// The file cannot be read.
    #[error(
        "cannot read the release catalog {}: {source}; point --releases-dir (or `releases_dir` in qodify-host.toml) at the folder holding releases.json",
        path.display()
    )]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The file is not a catalog.
    #[error("the release catalog {}: {source}; check it with `qodify-host validate`", path.display())]
    Parse {
        /// The file.
        path: PathBuf,
        /// What is wrong, and where.
        source: serde_json::Error,
    },
}

/// Largest catalog [`read`] takes: a catalog lists releases, not packages.
const MAX_CATALOG: u64 = 16 << 20;

/// Reads the catalog in the releases folder `dir`; `None` when the folder holds none (a host
/// without releases to offer).
pub fn read(dir: &Path) -> Result<Option<Catalog>, CatalogError> {
    let path = dir.join(FILE_NAME);
    let read_error = |source| CatalogError::Read {
        path: path.clone(),
        source,
    };
    let file = match std::fs::File::open(&path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(read_error(e)),
    };
    let mut bytes = Vec::new();
    file.take(MAX_CATALOG + 1)
        .read_to_end(&mut bytes)
        .map_err(read_error)?;
    if bytes.len() as u64 > MAX_CATALOG {
        return Err(read_error(std::io::Error::other(format!(
            "larger than {} MiB",
            MAX_CATALOG >> 20
        ))));
    }
    serde_json::from_slice(&bytes)
        .map(Some)
        .map_err(|source| CatalogError::Parse {
            path: path.clone(),
            source,
        })
}

/// Orders release versions as versions (`v1.10.0` after `v1.9.0`), read leniently like the
/// plugins read engine versions (a leading `v` dropped, a missing minor or patch 0); a version
/// that does not read so sorts before every one that does, and such versions by their text.
pub fn compare_versions(a: &str, b: &str) -> std::cmp::Ordering {
    fn lenient(v: &str) -> Option<semver::Version> {
        let v = v.trim_start_matches(['v', 'V']);
        let mut parts: Vec<&str> = v.splitn(3, '.').collect();
        while parts.len() < 3 {
            parts.push("0");
        }
        semver::Version::parse(&parts.join(".")).ok()
    }
    match (lenient(a), lenient(b)) {
        (Some(x), Some(y)) => x.cmp(&y).then_with(|| a.cmp(b)),
        (x, y) => x.is_some().cmp(&y.is_some()).then_with(|| a.cmp(b)),
    }
}

/// Parses a compatibility range with the plugins' rules (`upgrade_kit::catalog::satisfies`):
/// spaces or commas separate comparators.
pub fn parse_range(range: &str) -> Result<semver::VersionReq, String> {
    let normalised = range
        .split([',', ' '])
        .filter(|p| !p.is_empty())
        .collect::<Vec<_>>()
        .join(", ");
    semver::VersionReq::parse(&normalised).map_err(|e| e.to_string())
}

/// Lowercase hex SHA-256 of a file, read in 1 MiB pieces.
pub fn sha256_file(path: &Path) -> std::io::Result<String> {
    let mut file = std::fs::File::open(path)?;
    let mut buf = vec![0u8; 1 << 20];
    let mut hasher = Sha256::new();
    loop {
        let n = file.read(&mut buf)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Ok(hex::encode(hasher.finalize()))
}

/// The checks a schema cannot express.
fn semantic(file: &Path, text: &str, spans: &Spans, doc: &Catalog, dir: &Path) -> Vec<Diagnostic> {
    let mut out = Vec::new();
    let err = |pointer: &str, message: String, hint: &str| {
        at(file, text, spans.value(pointer), message).with_hint(hint)
    };
    let mut first: HashMap<&str, usize> = HashMap::new();
    for (i, r) in doc.releases.iter().enumerate() {
        if let Some(&j) = first.get(r.version.as_str()) {
            let line = spans.line_of(text, &format!("/releases/{j}/version"));
            out.push(err(
                &format!("/releases/{i}/version"),
                format!(
                    "version `{}` is listed twice (first on line {line})",
                    r.version
                ),
                "a version names one release folder: remove one entry or give it a new version",
            ));
        } else {
            first.insert(&r.version, i);
        }
    }
    for version in doc.external_versions.keys() {
        if first.contains_key(version.as_str()) {
            out.push(
                at(
                    file,
                    text,
                    spans.key(&format!("/externalVersions/{}", escape(version))),
                    format!(
                        "`{version}` is both a release of this catalog and an external version"
                    ),
                )
                .with_hint("remove it from externalVersions"),
            );
        }
    }
    let mut known: Vec<&str> = first.keys().copied().collect();
    known.sort_unstable();
    let mut hashed: HashMap<PathBuf, std::io::Result<String>> = HashMap::new();
    for (i, r) in doc.releases.iter().enumerate() {
        let base = format!("/releases/{i}");
        for (j, from) in r.compat.upgrade_from.iter().enumerate() {
            let pointer = format!("{base}/compat/upgradeFrom/{j}");
            if *from == r.version {
                out.push(err(
                    &pointer,
                    format!("release `{}` lists itself in upgradeFrom", r.version),
                    "remove it: an upgrade goes from one release to another",
                ));
            } else if !first.contains_key(from.as_str())
                && !doc.external_versions.contains_key(from)
            {
                out.push(err(
                    &pointer,
                    format!("upgradeFrom names `{from}`, which is not in this catalog"),
                    &format!(
                        "known versions: {}; fix the name, add that release, or, when customers \
                         run it but it has no package here, list it under externalVersions with \
                         a note",
                        known.join(", ")
                    ),
                ));
            }
        }
        for (field, range) in [("node", &r.compat.node), ("postgres", &r.compat.postgres)] {
            if let Err(e) = parse_range(range) {
                out.push(err(
                    &format!("{base}/compat/{field}"),
                    format!("invalid version range `{range}`: {e}"),
                    "write comparators such as `>=18.17 <23` or `^20`, separated by spaces or \
                     commas, with no space after an operator",
                ));
            }
        }
        out.extend(check_package(
            file,
            text,
            spans,
            dir,
            &base,
            &r.package,
            &mut hashed,
        ));
    }
    out
}

/// The package exists inside the catalog folder and has the catalog's sha256.
fn check_package(
    file: &Path,
    text: &str,
    spans: &Spans,
    dir: &Path,
    base: &str,
    package: &Package,
    hashed: &mut HashMap<PathBuf, std::io::Result<String>>,
) -> Option<Diagnostic> {
    let path_ptr = format!("{base}/package/path");
    let err = |pointer: &str, message: String, hint: String| {
        Some(at(file, text, spans.value(pointer), message).with_hint(hint))
    };
    let rel = Path::new(&package.path);
    if rel.is_absolute() || rel.components().any(|c| !matches!(c, Component::Normal(_))) {
        return err(
            &path_ptr,
            format!(
                "package path `{}` is not a plain relative path",
                package.path
            ),
            "give the path relative to the catalog folder, without `..`".into(),
        );
    }
    let full = dir.join(rel);
    let meta = match std::fs::metadata(&full) {
        Ok(m) => m,
        Err(e) => {
            return err(
                &path_ptr,
                format!("package `{}` cannot be read: {e}", full.display()),
                format!(
                    "copy the package into {} or fix the path (it is relative to the catalog's \
                     folder)",
                    dir.display()
                ),
            );
        }
    };
    if !meta.is_file() {
        return err(
            &path_ptr,
            format!("package `{}` is not a file", full.display()),
            "point the path at the release's .tar.gz".into(),
        );
    }
    // The upgrade reads packages through a mount of the catalog folder, which refuses symlinks
    // that lead out of it.
    if let (Ok(real), Ok(real_dir)) = (full.canonicalize(), dir.canonicalize())
        && !real.starts_with(&real_dir)
    {
        return err(
            &path_ptr,
            format!(
                "package `{}` is a symlink to {}, outside the catalog folder",
                package.path,
                real.display()
            ),
            format!(
                "upgrades read packages only inside {}: put the file itself there",
                dir.display()
            ),
        );
    }
    let actual = hashed
        .entry(full.clone())
        .or_insert_with(|| sha256_file(&full));
    match actual {
        Err(e) => err(
            &path_ptr,
            format!("package `{}` cannot be read: {e}", full.display()),
            "check the file's permissions".into(),
        ),
        Ok(actual) if *actual != package.sha256 => err(
            &format!("{base}/package/sha256"),
            format!(
                "sha256 mismatch: releases.json says {}, {} has {actual}",
                package.sha256, package.path
            ),
            format!(
                "if {} is the right package, put {actual} into releases.json; otherwise replace \
                 the file with the package the catalog describes",
                package.path
            ),
        ),
        Ok(_) => None,
    }
}

/// Diagnostics for one schema error.
fn schema_diagnostics(
    file: &Path,
    text: &str,
    spans: &Spans,
    error: &jsonschema::ValidationError<'_>,
) -> Vec<Diagnostic> {
    use jsonschema::error::ValidationErrorKind as K;
    let pointer = error.instance_path().as_str().to_owned();
    let here = |message: String, hint: String| {
        at(file, text, spans.value(&pointer), message).with_hint(hint)
    };
    let name = field_name(&pointer);
    match error.kind() {
        K::AdditionalProperties { unexpected } => {
            let allowed = allowed_fields(error.schema_path().as_str());
            unexpected
                .iter()
                .map(|key| {
                    at(
                        file,
                        text,
                        spans.key(&format!("{pointer}/{}", escape(key))),
                        format!("unknown field `{key}`{}", in_object(&pointer)),
                    )
                    .with_hint(if allowed.is_empty() {
                        "remove it".to_owned()
                    } else {
                        format!("remove it, or use one of: {}", allowed.join(", "))
                    })
                })
                .collect()
        }
        K::Required { property } => {
            let property = property.as_str().unwrap_or_default();
            let span = spans.value(&pointer);
            vec![
                at(
                    file,
                    text,
                    span.start..span.start + 1,
                    format!("missing field `{property}`{}", in_object(&pointer)),
                )
                .with_hint(format!(
                    "add `{property}`; see templates/releases.schema.json"
                )),
            ]
        }
        K::PropertyNames { error: inner } => {
            let key = inner.instance().as_str().unwrap_or_default().to_owned();
            let hint = if pointer.ends_with("/env") {
                "services are backend, admin and store".to_owned()
            } else if pointer.starts_with("/externalVersions") {
                VERSION_HINT.to_owned()
            } else {
                "environment variable names are letters, digits and `_`, not starting with a digit"
                    .to_owned()
            };
            vec![
                at(
                    file,
                    text,
                    spans.key(&format!("{pointer}/{}", escape(&key))),
                    format!("`{key}` is not allowed as a key{}", in_object(&pointer)),
                )
                .with_hint(hint),
            ]
        }
        K::Pattern { .. } => {
            let value = error.instance().as_str().unwrap_or_default();
            let (what, hint) = pattern_help(&pointer);
            vec![here(format!("`{value}` is not {what}"), hint.to_owned())]
        }
        K::Type { kind } => vec![here(
            format!("{name} must be {}", type_name(&format!("{kind:?}"))),
            "see templates/releases.schema.json for the catalog's shape".to_owned(),
        )],
        K::UniqueItems => vec![here(
            format!("{name} lists a value twice"),
            "list each value once".to_owned(),
        )],
        K::MinLength { .. } => vec![here(
            format!("{name} is empty"),
            "give a value, e.g. `>=18.17 <23` for a range".to_owned(),
        )],
        _ => vec![here(
            lowercase_first(&error.to_string()),
            "see templates/releases.schema.json".to_owned(),
        )],
    }
}

const VERSION_HINT: &str = "a version is also the release folder's name: letters, digits, `.`, \
                            `_`, `+`, `-`, not starting with `.`, at most 64 characters, e.g. \
                            v1.1.0";

/// What a pattern-checked value should be, by where it is.
fn pattern_help(pointer: &str) -> (&'static str, &'static str) {
    if pointer.ends_with("/sha256") {
        (
            "a sha256",
            "64 lowercase hex digits, as `sha256sum <package>` prints them",
        )
    } else if pointer.ends_with("/package/path") {
        (
            "a usable package path",
            "a path relative to the catalog folder ending in .tar.gz or .tgz, without `..` or \
             components starting with `.`, e.g. packages/qodify-v1.1.0.tar.gz",
        )
    } else if pointer.contains("/env/") {
        (
            "an environment variable name",
            "letters, digits and `_`, not starting with a digit",
        )
    } else {
        ("a release version name", VERSION_HINT)
    }
}

/// The fields the schema object owning an `additionalProperties` keyword allows.
fn allowed_fields(schema_path: &str) -> Vec<String> {
    // The schema path runs through `$ref`s; resolve it step by step against the schema.
    let mut node = schema();
    let segments: Vec<String> = schema_path
        .split('/')
        .skip(1)
        .map(|s| s.replace("~1", "/").replace("~0", "~"))
        .collect();
    let Some((_, parents)) = segments.split_last() else {
        return Vec::new();
    };
    for segment in parents {
        if segment == "$ref" {
            let Some(target) = node.get("$ref").and_then(Value::as_str) else {
                return Vec::new();
            };
            match target.strip_prefix('#').and_then(|p| schema().pointer(p)) {
                Some(n) => node = n,
                None => return Vec::new(),
            }
            continue;
        }
        let next = match node {
            Value::Object(map) => map.get(segment),
            Value::Array(list) => segment.parse::<usize>().ok().and_then(|i| list.get(i)),
            _ => None,
        };
        match next {
            Some(n) => node = n,
            None => return Vec::new(),
        }
    }
    node.get("properties")
        .and_then(Value::as_object)
        .map(|p| p.keys().cloned().collect())
        .unwrap_or_default()
}

fn in_object(pointer: &str) -> String {
    if pointer.is_empty() {
        " at the top level".to_owned()
    } else {
        format!(" in `{}`", display_pointer(pointer))
    }
}

/// `/releases/1/compat` → `releases[1].compat`.
fn display_pointer(pointer: &str) -> String {
    let mut out = String::new();
    for seg in pointer.split('/').skip(1) {
        let seg = seg.replace("~1", "/").replace("~0", "~");
        if seg.parse::<usize>().is_ok() {
            out.push_str(&format!("[{seg}]"));
        } else {
            if !out.is_empty() {
                out.push('.');
            }
            out.push_str(&seg);
        }
    }
    out
}

fn field_name(pointer: &str) -> String {
    if pointer.is_empty() {
        "the catalog".to_owned()
    } else {
        format!("`{}`", display_pointer(pointer))
    }
}

fn type_name(debug: &str) -> String {
    let lower = debug.to_lowercase();
    if lower.contains("object") {
        "an object".into()
    } else if lower.contains("array") {
        "an array".into()
    } else if lower.contains("string") {
        "a string".into()
    } else {
        format!("of type {debug}")
    }
}

fn lowercase_first(s: &str) -> String {
    let mut chars = s.chars();
    match chars.next() {
        Some(c) => c.to_lowercase().chain(chars).collect(),
        None => String::new(),
    }
}

fn syntax_message(e: &serde_json::Error) -> String {
    let raw = e.to_string();
    let raw = raw
        .rsplit_once(" at line ")
        .map_or(raw.as_str(), |(h, _)| h);
    format!("invalid JSON: {raw}")
}

/// RFC 6901 escaping of one pointer segment.
fn escape(segment: &str) -> String {
    segment.replace('~', "~0").replace('/', "~1")
}

/// A diagnostic at a byte span of `text`, with the line it falls on.
fn at(file: &Path, text: &str, span: Range<usize>, message: impl Into<String>) -> Diagnostic {
    let start = floor_boundary(text, span.start.min(text.len()));
    let end = floor_boundary(text, span.end.clamp(start, text.len()));
    let line_start = text[..start].rfind('\n').map_or(0, |i| i + 1);
    let line_end = text[start..].find('\n').map_or(text.len(), |i| start + i);
    let line_text = text[line_start..line_end].trim_end_matches('\r');
    let width = text[start..end.min(line_start + line_text.len()).max(start)]
        .chars()
        .count();
    Diagnostic {
        file: file.to_path_buf(),
        line: text[..start].matches('\n').count() + 1,
        col: text[line_start..start].chars().count() + 1,
        message: message.into(),
        hint: None,
        snippet: Some(Snippet {
            text: line_text.to_owned(),
            width: width.max(1),
        }),
        warning: false,
    }
}

/// A diagnostic at a 1-based line and column (serde_json's syntax errors).
fn at_line_col(file: &Path, text: &str, line: usize, col: usize, message: String) -> Diagnostic {
    let line_text = text.lines().nth(line.saturating_sub(1)).unwrap_or_default();
    Diagnostic {
        file: file.to_path_buf(),
        line: line.max(1),
        col: col.max(1),
        message,
        hint: None,
        snippet: Some(Snippet {
            text: line_text.trim_end_matches('\r').to_owned(),
            width: 1,
        }),
        warning: false,
    }
}

fn floor_boundary(s: &str, mut i: usize) -> usize {
    while !s.is_char_boundary(i) {
        i -= 1;
    }
    i
}

/// Byte spans of every value (and member key) of a JSON text, by JSON pointer.
#[derive(Debug, Default)]
struct Spans {
    values: HashMap<String, Range<usize>>,
    keys: HashMap<String, Range<usize>>,
}

impl Spans {
    /// Scans `text`, which serde_json already parsed (so it is valid JSON).
    fn scan(text: &str) -> Spans {
        let mut scanner = Scanner {
            text,
            i: 0,
            out: Spans::default(),
        };
        scanner.value(String::new());
        scanner.out
    }

    /// The span of the value at `pointer`, else of its nearest parent that has one.
    fn value(&self, pointer: &str) -> Range<usize> {
        let mut p = pointer;
        loop {
            if let Some(span) = self.values.get(p) {
                return span.clone();
            }
            match p.rfind('/') {
                Some(i) => p = &p[..i],
                None => return 0..1,
            }
        }
    }

    /// The span of the member key at `pointer`, else of its value.
    fn key(&self, pointer: &str) -> Range<usize> {
        self.keys
            .get(pointer)
            .cloned()
            .unwrap_or_else(|| self.value(pointer))
    }

    fn line_of(&self, text: &str, pointer: &str) -> usize {
        let start = self.value(pointer).start.min(text.len());
        text[..floor_boundary(text, start)].matches('\n').count() + 1
    }
}

struct Scanner<'a> {
    text: &'a str,
    i: usize,
    out: Spans,
}

impl Scanner<'_> {
    fn peek(&self) -> Option<u8> {
        self.text.as_bytes().get(self.i).copied()
    }

    fn skip_ws(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t' | b'\r' | b'\n')) {
            self.i += 1;
        }
    }

    fn value(&mut self, pointer: String) {
        self.skip_ws();
        let start = self.i;
        match self.peek() {
            Some(b'{') => {
                self.i += 1;
                loop {
                    self.skip_ws();
                    match self.peek() {
                        Some(b'}') | None => {
                            self.i += 1;
                            break;
                        }
                        Some(b',') => self.i += 1,
                        Some(b'"') => {
                            let key_start = self.i;
                            let key = self.string();
                            let child = format!("{pointer}/{}", escape(&key));
                            self.out.keys.insert(child.clone(), key_start..self.i);
                            self.skip_ws();
                            if self.peek() == Some(b':') {
                                self.i += 1;
                            }
                            self.value(child);
                        }
                        Some(_) => self.i += 1,
                    }
                }
            }
            Some(b'[') => {
                self.i += 1;
                let mut n = 0usize;
                loop {
                    self.skip_ws();
                    match self.peek() {
                        Some(b']') | None => {
                            self.i += 1;
                            break;
                        }
                        Some(b',') => self.i += 1,
                        Some(_) => {
                            self.value(format!("{pointer}/{n}"));
                            n += 1;
                        }
                    }
                }
            }
            Some(b'"') => {
                self.string();
            }
            Some(_) => {
                while !matches!(
                    self.peek(),
                    None | Some(b',' | b'}' | b']' | b' ' | b'\t' | b'\r' | b'\n')
                ) {
                    self.i += 1;
                }
            }
            None => {}
        }
        let end = self.i.min(self.text.len());
        self.out.values.insert(pointer, start..end);
    }

    /// Reads a string literal starting at `"`; returns its decoded value.
    fn string(&mut self) -> String {
        let start = self.i;
        self.i += 1;
        while let Some(b) = self.peek() {
            self.i += 1;
            match b {
                b'\\' => self.i += 1,
                b'"' => break,
                _ => {}
            }
        }
        let end = self.i.min(self.text.len());
        serde_json::from_str(&self.text[start..end]).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests;
