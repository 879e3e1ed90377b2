//! Tier overlays (`pipelines/tiers/<tier>.toml`): patch param defaults (of named pipelines, or of
//! every pipeline declaring the param), step config and step limits without copying them.

use std::path::Path;
use std::sync::Arc;

use super::Pipeline;
use super::check;
use super::diag::{Diagnostic, Diagnostics, Source, did_you_mean, list, to_result};
use super::spec::{Located, OverlaySpec, PipelinePatch};

/// A parsed tier overlay.
#[derive(Debug, Clone)]
pub struct Overlay {
    spec: OverlaySpec,
    source: Arc<Source>,
}

impl Overlay {
    pub(crate) fn new(spec: OverlaySpec, source: Arc<Source>) -> Self {
        Overlay { spec, source }
    }

    /// The overlay file.
    pub fn file(&self) -> &Path {
        &self.source.file
    }

    /// The overlay's description.
    pub fn description(&self) -> Option<&str> {
        self.spec.description.as_deref()
    }

    /// The parsed file.
    pub fn spec(&self) -> &OverlaySpec {
        &self.spec
    }

    /// Names of the pipelines the overlay patches.
    pub fn pipelines(&self) -> impl Iterator<Item = &str> {
        self.spec.pipelines.keys()
    }

    /// Checks that every pipeline the overlay names exists; `hint` lists them, e.g.
    /// "pipelines: backup, restore".
    pub fn check_pipeline_names(
        &self,
        known: &dyn Fn(&str) -> bool,
        hint: &str,
    ) -> Result<(), Diagnostics> {
        let diags = self
            .spec
            .pipelines
            .iter()
            .filter(|(name, _)| !known(name))
            .map(|(name, _)| {
                self.source
                    .error(name.span(), format!("unknown pipeline `{}`", name.get()))
                    .with_hint(hint)
            })
            .collect();
        to_result(diags)
    }

    /// Checks that every param of the overlay's top-level `[params]` is declared by at least one
    /// of `pipelines` (every pipeline of the folder): a misspelt name would otherwise change
    /// nothing, silently.
    pub fn check_shared_params(&self, pipelines: &[&Pipeline]) -> Result<(), Diagnostics> {
        let known: std::collections::BTreeSet<&str> = pipelines
            .iter()
            .flat_map(|p| p.spec.params.keys())
            .collect();
        let diags = self
            .spec
            .params
            .iter()
            .filter(|(name, _)| !known.contains(name.get().as_str()))
            .map(|(name, _)| {
                let all: Vec<&str> = known.iter().copied().collect();
                let hint = match did_you_mean(name, all.iter().copied()) {
                    Some(best) => format!(
                        "did you mean `{best}`? params of the pipelines: {}",
                        list(&all)
                    ),
                    None => format!("params of the pipelines: {}", list(&all)),
                };
                self.source
                    .error(
                        name.span(),
                        format!("no pipeline declares the param `{}`", name.get()),
                    )
                    .with_hint(hint)
            })
            .collect();
        to_result(diags)
    }

    /// Applies the patches for `p` (none when the overlay does not name it) and checks the
    /// result; errors in patched values point into the overlay file.
    pub fn apply(&self, p: &Pipeline) -> Result<Pipeline, Diagnostics> {
        let shared: Vec<_> = self
            .spec
            .params
            .iter()
            .filter(|(name, _)| p.spec.params.get(name).is_some())
            .collect();
        let patch = self.spec.pipelines.get(p.name());
        if patch.is_none() && shared.is_empty() {
            check::check(p, None)?;
            return Ok(p.clone());
        }
        let mut merged = p.clone();
        let src = merged.sources.len();
        merged.sources.push(self.source.clone());
        let mut unknown = Vec::new();
        // The overlay's shared params first: a pipeline's own patch overrides them.
        for (name, patch) in shared {
            if let Some(spec) = merged.spec.params.get_mut(name) {
                let mut default = patch.default.clone();
                default.set_src(src);
                spec.default = Some(default);
            }
        }
        if let Some(patch) = patch {
            self.patch(&mut merged, patch.clone(), src, &mut unknown);
        }
        let checked = check::check(&merged, None)
            .err()
            .map(Diagnostics::into_vec)
            .unwrap_or_default();
        // Pipeline-file errors first, then the overlay's in file order.
        let (mut diags, mut ours): (Vec<_>, Vec<_>) = checked
            .into_iter()
            .partition(|d| d.file != self.source.file);
        ours.extend(unknown);
        ours.sort_by_key(|d| (d.line, d.col));
        diags.extend(ours);
        match Diagnostics::from_vec(diags) {
            Some(diags) => Err(diags),
            None => Ok(merged),
        }
    }

    fn patch(
        &self,
        p: &mut Pipeline,
        patch: PipelinePatch,
        src: usize,
        unknown: &mut Vec<Diagnostic>,
    ) {
        let name = p.name().to_owned();
        for (param, mut patch) in patch.params.0 {
            let known: Vec<String> = p.spec.params.keys().map(str::to_owned).collect();
            match p.spec.params.get_mut(&param) {
                Some(spec) => {
                    patch.default.set_src(src);
                    spec.default = Some(patch.default);
                }
                None => unknown.push(self.unknown(&param, "param", &name, &known)),
            }
        }
        for (id, mut patch) in patch.steps.0 {
            let known: Vec<String> = p.all_steps().map(|s| s.id.get().clone()).collect();
            let step = p.spec.all_steps_mut().find(|s| s.id.get() == id.get());
            let Some(step) = step else {
                unknown.push(self.unknown(&id, "step", &name, &known));
                continue;
            };
            if let Some(mut config) = patch.config.take() {
                config.set_src(src);
                match &mut step.config {
                    Some(base) => base.merge(config),
                    None => step.config = Some(config),
                }
            }
            if let Some(mut limits) = patch.limits.take() {
                limits.set_src(src);
                let base = step.limits.get_or_insert_with(Default::default);
                if limits.memory.is_some() {
                    base.memory = limits.memory;
                }
                if limits.timeout.is_some() {
                    base.timeout = limits.timeout;
                }
            }
        }
    }

    fn unknown(
        &self,
        key: &Located<String>,
        what: &str,
        pipeline: &str,
        known: &[String],
    ) -> Diagnostic {
        let hint = match did_you_mean(key, known.iter().map(String::as_str)) {
            Some(best) => format!(
                "did you mean `{best}`? {what}s of `{pipeline}`: {}",
                list(known)
            ),
            None => format!("{what}s of `{pipeline}`: {}", list(known)),
        };
        self.source
            .error(
                key.span(),
                format!("unknown {what} `{}` in pipeline `{pipeline}`", key.get()),
            )
            .with_hint(hint)
    }
}

/// A pipeline a tier schedules, checked (see [`Overlay::schedules`]).
#[derive(Debug, Clone, PartialEq)]
pub struct TierSchedule {
    /// The pipeline's name.
    pub pipeline: String,
    /// When; `None` when the tier says `"off"`.
    pub schedule: Option<crate::schedule::Schedule>,
    /// Params of the scheduled runs.
    pub params: std::collections::BTreeMap<String, String>,
}

impl Overlay {
    /// The tier's `[schedule]`, each entry checked: the cadence and its options parse, the
    /// pipeline exists (`pipeline` loads it by name), and the params are the pipeline's, typed,
    /// and with the tier's defaults complete. Errors point into the overlay file.
    pub fn schedules(
        &self,
        pipeline: &dyn Fn(&str) -> Option<Pipeline>,
        hint: &str,
    ) -> Result<Vec<TierSchedule>, Diagnostics> {
        use super::spec::ScheduleSpec;
        let mut out = Vec::new();
        let mut diags = Vec::new();
        for (name, spec) in &self.spec.schedule.0 {
            let Some(base) = pipeline(name.get()) else {
                diags.push(
                    self.source
                        .error(
                            name.span(),
                            format!("unknown pipeline `{}` in [schedule]", name.get()),
                        )
                        .with_hint(hint),
                );
                continue;
            };
            let p = self.apply(&base).unwrap_or(base);
            let (at, window, jitter, catch_up, params) = match spec.get() {
                ScheduleSpec::Cadence(text) => (
                    Located::new(text.clone(), spec.span()),
                    None,
                    None,
                    None,
                    Default::default(),
                ),
                ScheduleSpec::Table(t) => (
                    t.at.clone(),
                    t.window.clone(),
                    t.jitter.clone(),
                    t.catch_up,
                    t.params.0.clone(),
                ),
            };
            let mut raw = std::collections::BTreeMap::new();
            for (key, value) in &params {
                match param_text(value.get()) {
                    Some(text) => {
                        raw.insert(key.get().clone(), text);
                    }
                    None => diags.push(self.source.error(
                        value.span(),
                        format!(
                            "param `{}` of a schedule must be a string, number or boolean",
                            key.get()
                        ),
                    )),
                }
            }
            if let Err(e) = super::resolve::check_params(&p, &raw) {
                // At the param the error names, else at the schedule.
                let named = match &e {
                    super::ResolveError::UnknownParam { name, .. } => params
                        .iter()
                        .find(|(k, _)| k.get() == name)
                        .map(|(k, _)| k.span()),
                    super::ResolveError::InvalidParam { name, .. } => params
                        .iter()
                        .find(|(k, _)| k.get() == name)
                        .map(|(_, v)| v.span()),
                    _ => None,
                };
                diags.push(
                    self.source
                        .error(
                            named.unwrap_or(spec.span()),
                            format!("schedule of `{}`: {e}", name.get()),
                        )
                        .with_hint(
                            "set the scheduled runs' params in the schedule's `params` table",
                        ),
                );
            }
            let (window_span, jitter_span) = (
                window.as_ref().map(Located::span),
                jitter.as_ref().map(Located::span),
            );
            let span_err = |s: &Option<Located<String>>| {
                s.as_ref()
                    .map(|l| crate::schedule::parse_span(l.get()).map_err(|e| (l.span(), e)))
            };
            let (window, jitter) =
                match (span_err(&window).transpose(), span_err(&jitter).transpose()) {
                    (Ok(w), Ok(j)) => (w, j),
                    (Err((span, e)), _) | (_, Err((span, e))) => {
                        diags.push(self.source.error(span, e));
                        continue;
                    }
                };
            if at.get() == "off" {
                out.push(TierSchedule {
                    pipeline: name.get().clone(),
                    schedule: None,
                    params: raw,
                });
                continue;
            }
            match crate::schedule::Schedule::new(at.get(), window, jitter, catch_up) {
                Ok(schedule) => out.push(TierSchedule {
                    pipeline: name.get().clone(),
                    schedule: Some(schedule),
                    params: raw,
                }),
                Err(e) => {
                    // An option's error at the option, when it was written.
                    let span = if e.message.starts_with("window") {
                        window_span.unwrap_or(at.span())
                    } else if e.message.starts_with("jitter") {
                        jitter_span.or(window_span).unwrap_or(at.span())
                    } else {
                        at.span()
                    };
                    diags.push(self.source.error(span, e.message).with_hint(e.hint));
                }
            }
        }
        to_result(diags).map(|()| out)
    }
}

/// A schedule's param value as a run takes it (`--param name=value`).
fn param_text(value: &toml::Value) -> Option<String> {
    match value {
        toml::Value::String(s) => Some(s.clone()),
        toml::Value::Integer(n) => Some(n.to_string()),
        toml::Value::Float(f) => Some(f.to_string()),
        toml::Value::Boolean(b) => Some(b.to_string()),
        _ => None,
    }
}
