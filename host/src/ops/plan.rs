//! Planning a run: the one way a pipeline name (or file), a customer, a tier and params become a
//! resolved [`Plan`], for the CLI and the service alike.
//!
//! Policy, in order: the pipeline file (by name from the pipelines folder, or a path); the tier's
//! overlay `tiers/<tier>.toml`, which must exist when a tier is named (a customer registered
//! with a tier nobody wrote is an error, never a silent run of the base pipeline); validation
//! against the plugin catalog; the host's grant ceilings; then the run's inputs: the customer's
//! layout and database as found on disk, and a timestamp that is never the id of a backup the
//! customer already has.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{Context as _, Result, bail};

use crate::customer::Customer;
use crate::engine::plugins::Catalog;
use crate::pipeline::{self, Pipeline, Plan, RunInputs};
use crate::settings::Settings;

/// What to run, as a caller names it.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct RunSpec {
    /// Pipeline name (from the pipelines folder) or path to a `.toml` file.
    pub pipeline: String,
    /// Tier whose overlay applies.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tier: Option<String>,
    /// Param values as given (`"true"`, `"12"`, `"fast"`).
    #[serde(default)]
    pub params: BTreeMap<String, String>,
}

/// A resolved run.
#[derive(Debug)]
pub struct Planned {
    /// The plan.
    pub plan: Plan,
    /// The run's timestamp (`YYYYMMDD-HHMMSS`, UTC), also the id of a backup it takes.
    pub timestamp: String,
    /// The pipeline file.
    pub file: PathBuf,
}

/// Finds a pipeline by name in the pipelines folder, or by path.
pub fn pipeline_path(settings: &Settings, name: &str) -> Result<PathBuf> {
    let as_path = Path::new(name);
    if name.ends_with(".toml") || name.contains('/') {
        anyhow::ensure!(as_path.is_file(), "pipeline file {name} does not exist");
        return Ok(as_path.to_path_buf());
    }
    let path = settings.pipelines_dir.join(format!("{name}.toml"));
    if path.is_file() {
        return Ok(path);
    }
    let known: Vec<String> = list_toml(&settings.pipelines_dir)
        .iter()
        .filter_map(|p| p.file_stem().map(|s| s.to_string_lossy().into_owned()))
        .collect();
    bail!(
        "no pipeline `{name}` in {} (known: {}); pass a path to a .toml file or set --pipelines-dir",
        settings.pipelines_dir.display(),
        if known.is_empty() {
            "none".into()
        } else {
            known.join(", ")
        }
    )
}

/// The `.toml` files of a folder, sorted.
pub fn list_toml(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "toml") && p.is_file())
        .collect();
    files.sort();
    files
}

/// The pipeline `name` with `tier`'s overlay, validated and within the host's ceilings.
pub fn load_pipeline(
    settings: &Settings,
    catalog: &Catalog,
    name: &str,
    tier: Option<&str>,
) -> Result<(Pipeline, PathBuf)> {
    let path = pipeline_path(settings, name)?;
    let mut p = pipeline::load_pipeline(&path).map_err(|d| anyhow::anyhow!("{d}"))?;
    if let Some(tier) = tier {
        anyhow::ensure!(
            crate::engine::plugins::valid_id(tier),
            "tier `{tier}` is not a valid tier name (lowercase letters, digits and `-`)"
        );
        let overlay = settings
            .pipelines_dir
            .join("tiers")
            .join(format!("{tier}.toml"));
        anyhow::ensure!(
            overlay.is_file(),
            "no tier overlay {} for tier `{tier}`: write it, or give the customer another tier",
            overlay.display()
        );
        let o = pipeline::load_overlay(&overlay).map_err(|d| anyhow::anyhow!("{d}"))?;
        p = o.apply(&p).map_err(|d| anyhow::anyhow!("{d}"))?;
    }
    pipeline::validate(&p, &|id| catalog.contains(id), &catalog.hint())
        .map_err(|d| anyhow::anyhow!("{d}"))?;
    pipeline::check_ceilings(&p, &settings.grants).map_err(|d| anyhow::anyhow!("{d}"))?;
    Ok((p, path))
}

/// Plans `spec` for `customer` as run `run_id`. `timestamp`: the run's, when it is fixed (a
/// recovery re-plans an interrupted run with its own); else the customer's next free backup id.
pub fn plan_run(
    settings: &Settings,
    catalog: &Catalog,
    customer: &Customer,
    spec: &RunSpec,
    run_id: &str,
    timestamp: Option<String>,
) -> Result<Planned> {
    let (p, file) = load_pipeline(settings, catalog, &spec.pipeline, spec.tier.as_deref())?;
    let customer_dir = settings.customers_root.join(customer.domain.as_str());
    let timestamp = timestamp
        .unwrap_or_else(|| crate::backups::next_id(&customer_dir, time::OffsetDateTime::now_utc()));
    let inputs = RunInputs {
        customer_id: customer.id.clone(),
        customer_domain: customer.domain.to_string(),
        run_id: run_id.to_owned(),
        timestamp: timestamp.clone(),
        params: spec.params.clone(),
        database: crate::customer::database(&customer_dir),
        paths: crate::customer::service_paths(&customer_dir),
    };
    let plan =
        pipeline::resolve(&p, &inputs).with_context(|| format!("pipeline {}", file.display()))?;
    pipeline::check_plan_ceilings(&plan, &settings.grants)
        .map_err(|e| anyhow::anyhow!("pipeline {}: {e}", file.display()))?;
    Ok(Planned {
        plan,
        timestamp,
        file,
    })
}
