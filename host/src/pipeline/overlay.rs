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
