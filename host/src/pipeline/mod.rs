//! Pipeline loading, pure: parse TOML → validate → apply a tier overlay → resolve for one run.
//! No I/O beyond reading the files; every error is a [`Diagnostic`] with `file:line:col` and a hint.
//!
//! A pipeline has four step sections, in run order: `steps`; `on_success`, run only when every
//! step succeeded (after the backup folder was renamed into place); `on_failure`, run after a
//! failed step; and `finally`, always run last. Step ids are unique across all four.
//!
//! With `output = "backup"` ([`OutputKind::Backup`]) the run writes a new backup folder: the host
//! creates it as a hidden partial folder, mounts reach it with `from = "backup"`
//! ([`MountRoot::Backup`]), and the host renames it into place only when every step succeeded.
//! `from = "backup"` without `output = "backup"` is a validation error.

mod ceilings;
mod check;
mod diag;
mod expr;
mod overlay;
mod paths;
mod resolve;
mod spec;
mod template;
pub mod units;

#[cfg(test)]
mod tests;

use std::path::Path;
use std::sync::Arc;

use serde::Serialize;
use serde::de::DeserializeOwned;

pub use ceilings::{GrantCeilings, check_ceilings};
pub use diag::{Diagnostic, Diagnostics, Snippet};
pub use overlay::{Overlay, TierSchedule};
pub use resolve::{
    CommandGrant, CustomerDb, CustomerPaths, DbFacts, HttpGrant, Limits, NetGrant, ParamValue,
    Plan, PlannedMount, PlannedStep, ResolveError, RunInputs, ServicePaths, SkippedStep, Stage,
    check_params, resolve,
};
pub use spec::{
    Access, BackupSpec, CommandSpec, ConfigTable, ConfigValue, LimitsSpec, Located, MountRoot,
    MountSpec, OrderedMap, OutputKind, OverlaySpec, ParamPatch, ParamSpec, ParamType,
    PipelinePatch, PipelineSpec, Recover, SizeValue, StepPatch, StepSpec,
};
pub use template::{DbField, PathField};

use diag::Source;

/// A parsed pipeline, possibly with tier overlays applied.
#[derive(Debug, Clone)]
pub struct Pipeline {
    spec: PipelineSpec,
    /// The pipeline file first, then each overlay applied to it; [`Located`] values index this.
    sources: Vec<Arc<Source>>,
}

/// The four step lists of a pipeline.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Section {
    /// `[[steps]]`.
    Steps,
    /// `[[on_success]]`: run when every step succeeded, after the backup folder was finalised.
    OnSuccess,
    /// `[[on_failure]]`.
    OnFailure,
    /// `[[finally]]`.
    Finally,
}

impl Section {
    /// In run order (a run takes `on_success` or `on_failure`, never both).
    pub const ALL: [Section; 4] = [
        Section::Steps,
        Section::OnSuccess,
        Section::OnFailure,
        Section::Finally,
    ];

    /// The TOML key.
    pub fn key(self) -> &'static str {
        match self {
            Section::Steps => "steps",
            Section::OnSuccess => "on_success",
            Section::OnFailure => "on_failure",
            Section::Finally => "finally",
        }
    }
}

impl PipelineSpec {
    /// The steps of one section.
    pub fn section(&self, section: Section) -> &[StepSpec] {
        match section {
            Section::Steps => &self.steps,
            Section::OnSuccess => &self.on_success,
            Section::OnFailure => &self.on_failure,
            Section::Finally => &self.finally,
        }
    }

    /// Every step, mutably, in [`Section::ALL`] order.
    pub(crate) fn all_steps_mut(&mut self) -> impl Iterator<Item = &mut StepSpec> {
        (self.steps.iter_mut())
            .chain(self.on_success.iter_mut())
            .chain(self.on_failure.iter_mut())
            .chain(self.finally.iter_mut())
    }
}

impl Pipeline {
    /// The pipeline's name.
    pub fn name(&self) -> &str {
        self.spec.name.get()
    }

    /// The pipeline's description.
    pub fn description(&self) -> Option<&str> {
        self.spec.description.as_deref()
    }

    /// What a run produces: `Some(OutputKind::Backup)` for a new backup folder, `None` for
    /// nothing.
    pub fn output(&self) -> Option<OutputKind> {
        self.spec.output.as_deref().copied()
    }

    /// The pipeline file (as given to the loader).
    pub fn file(&self) -> &Path {
        &self.sources[0].file
    }

    /// The overlay files applied, in order.
    pub fn overlays(&self) -> impl Iterator<Item = &Path> {
        self.sources[1..].iter().map(|s| s.file.as_path())
    }

    /// The parsed file (after overlays).
    pub fn spec(&self) -> &PipelineSpec {
        &self.spec
    }

    /// Params in file order.
    pub fn params(&self) -> impl Iterator<Item = (&str, &ParamSpec)> {
        self.spec.params.iter().map(|(k, v)| (k.get().as_str(), v))
    }

    /// One param.
    pub fn param(&self, name: &str) -> Option<&ParamSpec> {
        self.spec.params.get(name)
    }

    /// The steps of one section.
    pub fn section(&self, section: Section) -> &[StepSpec] {
        self.spec.section(section)
    }

    /// Every step: `steps`, then `on_success`, then `on_failure`, then `finally`.
    pub fn all_steps(&self) -> impl Iterator<Item = &StepSpec> {
        Section::ALL
            .into_iter()
            .flat_map(|s| self.spec.section(s).iter())
    }
}

/// Reads TOML into `T`: every syntax error (one per line), else the first structural error.
fn deserialize<T: DeserializeOwned>(src: &Source, extra_hint: &str) -> Result<T, Diagnostics> {
    let (table, mut errors) = toml::de::DeTable::parse_recoverable(&src.text);
    if !errors.is_empty() {
        errors.sort_by_key(|e| e.span().map(|s| s.start));
        let mut diags: Vec<Diagnostic> = Vec::new();
        for e in &errors {
            let d = diag::from_toml_error(src, e);
            if diags.last().is_none_or(|last| last.line != d.line) {
                diags.push(d);
            }
        }
        return Err(Diagnostics::from_vec(diags).expect("errors is not empty"));
    }
    T::deserialize(toml::de::Deserializer::from(table)).map_err(|e| {
        let mut d = diag::from_toml_error(src, &e);
        if e.message().starts_with("unknown field") && !extra_hint.is_empty() {
            d.hint = Some(match d.hint {
                Some(h) => format!("{h} ({extra_hint})"),
                None => extra_hint.to_owned(),
            });
        }
        d.into()
    })
}

/// Parses a pipeline file: TOML syntax and structure only (see [`validate`] for the rest).
pub fn parse_pipeline(file: &Path, source: &str) -> Result<Pipeline, Diagnostics> {
    let src = Source::new(file, source);
    let spec = deserialize(&src, "")?;
    Ok(Pipeline {
        spec,
        sources: vec![Arc::new(src)],
    })
}

/// Reads and parses a pipeline file.
pub fn load_pipeline(file: &Path) -> Result<Pipeline, Diagnostics> {
    parse_pipeline(file, &read(file, "pipeline")?)
}

fn read(file: &Path, what: &str) -> Result<String, Diagnostics> {
    std::fs::read_to_string(file).map_err(|e| {
        Diagnostic::new(file, 1, 1, format!("cannot read {what} file: {e}"))
            .with_hint("check that the file exists, is readable and is UTF-8")
            .into()
    })
}

/// Checks everything [`parse_pipeline`] does not: names, params and defaults, `when`
/// conditions, templates, grants (`from = "backup"` needs `output = "backup"`), limits, groups,
/// and that each plugin is known.
/// `plugin_hint` is shown for unknown plugins, e.g. "known plugins: archive, manifest".
pub fn validate(
    p: &Pipeline,
    known_plugins: &dyn Fn(&str) -> bool,
    plugin_hint: &str,
) -> Result<(), Diagnostics> {
    check::check(p, Some((known_plugins, plugin_hint))).map(|_| ())
}

/// Where `p` grants a step more than its plugin declares in its manifest: one warning per grant,
/// at the grant. `declared(plugin)` gives a plugin's manifest and imported interfaces, `None`
/// when it has no manifest (such steps are not compared).
pub fn check_declared(
    p: &Pipeline,
    declared: &dyn Fn(&str) -> Option<crate::engine::manifest::Declared>,
) -> Vec<Diagnostic> {
    use crate::engine::manifest::DeclaredAccess;
    let mut out = Vec::new();
    let at = |loc_src: usize, span: std::ops::Range<usize>, message: String, hint: &str| {
        p.sources[loc_src]
            .error(span, message)
            .with_hint(hint)
            .into_warning()
    };
    let fix =
        "remove the grant, or declare it in the plugin's qodify-plugin.toml if the plugin needs it";
    for step in p.all_steps() {
        let Some(crate::engine::manifest::Declared {
            manifest: m,
            imports,
        }) = declared(step.plugin.get())
        else {
            continue;
        };
        let (id, plugin) = (step.id.get(), step.plugin.get());
        let imports_iface = |name: &str| {
            imports
                .iter()
                .any(|i| i.starts_with(&format!("qodify:pipeline/{name}@")))
        };
        for c in &step.commands {
            let message = if !imports_iface("commands") {
                format!(
                    "step `{id}` grants program `{}`, but plugin `{plugin}` cannot run programs (it does not import `commands`)",
                    c.program.get()
                )
            } else if !m.programs.iter().any(|d| d == c.program.get()) {
                format!(
                    "step `{id}` grants program `{}`, which plugin `{plugin}` does not declare",
                    c.program.get()
                )
            } else {
                continue;
            };
            out.push(at(c.program.src(), c.program.span(), message, fix));
        }
        for h in &step.http {
            let granted = HttpGrant::parse(h.origin.get()).ok();
            let covered = granted.as_ref().is_some_and(|(host, port)| {
                m.origins.iter().any(|d| {
                    HttpGrant::parse(d)
                        .is_ok_and(|(dh, dp)| dh == *host && (dp.is_none() || dp == *port))
                })
            });
            let message = if !imports_iface("http") {
                format!(
                    "step `{id}` grants origin `{}`, but plugin `{plugin}` cannot send requests (it does not import `http`)",
                    h.origin.get()
                )
            } else if !covered {
                format!(
                    "step `{id}` grants origin `{}`, which plugin `{plugin}` does not declare",
                    h.origin.get()
                )
            } else {
                continue;
            };
            out.push(at(h.origin.src(), h.origin.span(), message, fix));
        }
        let declared_rw = m
            .mounts
            .iter()
            .filter(|d| d.access == DeclaredAccess::Rw)
            .count();
        let mut rw = 0;
        for (i, mount) in step.mounts.iter().enumerate() {
            if mount.access == spec::Access::Rw {
                rw += 1;
            }
            let message = if i >= m.mounts.len() {
                format!(
                    "step `{id}` grants {} mounts, but plugin `{plugin}` declares {}",
                    step.mounts.len(),
                    m.mounts.len()
                )
            } else if mount.access == spec::Access::Rw && rw > declared_rw {
                format!(
                    "step `{id}` grants mount `{}` read-write, but plugin `{plugin}` declares {declared_rw} writable mount(s)",
                    mount.guest.get()
                )
            } else {
                continue;
            };
            out.push(at(mount.guest.src(), mount.guest.span(), message, fix));
        }
    }
    out
}

/// Checks that the pipeline's `name` equals its file stem, as it must in a pipelines folder.
pub fn check_name_matches_file(p: &Pipeline) -> Result<(), Diagnostics> {
    let stem = p.file().file_stem().and_then(|s| s.to_str()).unwrap_or("");
    if stem == p.name() {
        return Ok(());
    }
    let name = &p.spec.name;
    let file_name = p
        .file()
        .file_name()
        .map(|f| f.to_string_lossy())
        .unwrap_or_default();
    Err(p.sources[0]
        .error(
            name.span(),
            format!(
                "pipeline name `{}` does not match its file name `{file_name}`",
                name.get()
            ),
        )
        .with_hint(format!(
            "set name = \"{stem}\", or rename the file to `{}.toml`",
            name.get()
        ))
        .into())
}

/// Parses a tier overlay file (syntax and structure; [`Overlay::apply`] checks the rest).
pub fn parse_overlay(file: &Path, source: &str) -> Result<Overlay, Diagnostics> {
    let src = Source::new(file, source);
    let spec = deserialize(
        &src,
        "an overlay can patch only param defaults, step config and step limits",
    )?;
    Ok(Overlay::new(spec, Arc::new(src)))
}

/// Reads and parses a tier overlay file.
pub fn load_overlay(file: &Path) -> Result<Overlay, Diagnostics> {
    parse_overlay(file, &read(file, "overlay")?)
}

/// A param as the CLI lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ParamInfo {
    /// The param's name.
    pub name: String,
    /// Its type.
    #[serde(rename = "type")]
    pub kind: ParamType,
    /// The allowed values of an enum param.
    pub values: Vec<String>,
    /// The default; `None` means the param is required.
    pub default: Option<ParamValue>,
    /// What it does.
    pub description: Option<String>,
}

impl ParamInfo {
    /// Whether a run must set it.
    pub fn required(&self) -> bool {
        self.default.is_none()
    }
}

/// The params of a pipeline with type, values, default and description, in file order.
pub fn params_help(p: &Pipeline) -> Vec<ParamInfo> {
    p.params()
        .map(|(name, spec)| ParamInfo {
            name: name.to_owned(),
            kind: *spec.kind.get(),
            values: spec
                .values
                .iter()
                .flat_map(|v| v.get().iter().map(|v| v.get().clone()))
                .collect(),
            default: spec.default.as_ref().and_then(|d| ParamValue::from_toml(d)),
            description: spec.description.clone(),
        })
        .collect()
}

fn schema_of<T: schemars::JsonSchema>(title: &str, description: &str) -> serde_json::Value {
    let mut schema = schemars::schema_for!(T).to_value();
    strip_nulls(&mut schema);
    if let Some(object) = schema.as_object_mut() {
        object.insert("title".into(), title.into());
        object.insert("description".into(), description.into());
    }
    schema
}

/// TOML has no null (an optional key is simply absent), so drop the null alternatives schemars
/// gives `Option` fields; editors would otherwise offer them.
fn strip_nulls(value: &mut serde_json::Value) {
    use serde_json::Value;
    match value {
        Value::Object(map) => {
            if map.get("default").is_some_and(Value::is_null) {
                map.remove("default");
            }
            if let Some(Value::Array(types)) = map.get_mut("type") {
                types.retain(|t| t != "null");
                if types.len() == 1 {
                    let only = types.remove(0);
                    map.insert("type".into(), only);
                }
            }
            if let Some(Value::Array(options)) = map.get_mut("anyOf") {
                options.retain(|o| o.get("type").is_none_or(|t| t != "null"));
                if options.len() == 1
                    && let Value::Object(only) = options.remove(0)
                {
                    map.remove("anyOf");
                    for (k, v) in only {
                        map.entry(k).or_insert(v);
                    }
                }
            }
            map.values_mut().for_each(strip_nulls);
        }
        Value::Array(items) => items.iter_mut().for_each(strip_nulls),
        _ => {}
    }
}

/// JSON Schema of pipeline files, for editors (taplo, Even Better TOML).
pub fn pipeline_schema() -> serde_json::Value {
    schema_of::<PipelineSpec>(
        "qodify pipeline",
        "A qodify pipeline: typed params and ordered steps, each one call of a WASM step plugin with its grants.",
    )
}

/// JSON Schema of tier overlay files (`pipelines/tiers/<tier>.toml`).
pub fn overlay_schema() -> serde_json::Value {
    schema_of::<OverlaySpec>(
        "qodify tier overlay",
        "Patches param defaults, step config and step limits of named pipelines for one tier.",
    )
}
