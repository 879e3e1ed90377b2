//! `manifest` step plugin: writes a JSON manifest of the artifacts earlier steps produced (as the
//! host checked them) next to them, and returns it as the artifact `manifest`.
//!
//! Config: `output` (guest path of the JSON file, required) and `steps` (ids of the earlier steps
//! whose artifacts to list; default all). The document is built by [`Manifest::build`], a pure
//! function, so the layout is unit-tested natively and easy to extend.

use std::collections::BTreeMap;
use std::fs::File;

use qodify_plugin_sdk::prelude::*;
use qodify_plugin_sdk::{ParamValue, StepOutputs};
use serde::Serialize;

/// The step's config.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Guest path of the manifest to write, e.g. `/backup/backup.json`.
    pub output: String,
    /// Earlier steps whose artifacts are listed; all when absent.
    #[serde(default)]
    pub steps: Option<Vec<String>>,
}

/// The manifest document.
#[derive(Debug, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Manifest {
    /// Who the run is for.
    pub customer: CustomerInfo,
    /// Which run wrote it.
    pub run: RunInfo,
    /// The id of the step that wrote it.
    pub step: String,
    /// The run's params, by name, with their JSON types.
    pub params: BTreeMap<String, serde_json::Value>,
    /// The listed artifacts, in step order.
    pub artifacts: Vec<ArtifactInfo>,
    /// Totals over `artifacts`.
    pub stats: Stats,
}

/// `customer` section.
#[derive(Debug, Serialize, PartialEq)]
pub struct CustomerInfo {
    /// installer-api's id.
    pub id: String,
    /// The customer's domain.
    pub domain: String,
}

/// `run` section.
#[derive(Debug, Serialize, PartialEq)]
pub struct RunInfo {
    /// The run's id.
    pub id: String,
    /// `YYYYMMDD-HHMMSS` (UTC).
    pub timestamp: String,
}

/// One listed artifact.
#[derive(Debug, Serialize, PartialEq)]
pub struct ArtifactInfo {
    /// The artifact's label, e.g. `backend`.
    pub name: String,
    /// Path relative to the manifest's folder when it lies inside it, else the file name.
    pub file: String,
    /// The step that produced it.
    pub step: String,
    /// Size in bytes.
    pub size: u64,
    /// Lowercase hex SHA-256.
    pub sha256: String,
}

/// `stats` section.
#[derive(Debug, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Stats {
    /// Sum of the artifacts' sizes.
    pub total_bytes: u64,
    /// Number of artifacts.
    pub artifact_count: usize,
}

impl Manifest {
    /// Builds the manifest for a manifest file at guest path `output` (pure: no host calls).
    pub fn build(ctx: &Context, output: &str, steps: Option<&[String]>) -> Manifest {
        let dir = output.rsplit_once('/').map_or("", |(dir, _)| dir);
        let wanted = |s: &StepOutputs| steps.is_none_or(|ids| ids.contains(&s.step));
        let artifacts: Vec<ArtifactInfo> = ctx
            .previous()
            .iter()
            .filter(|s| wanted(s))
            .flat_map(|s| {
                s.artifacts.iter().map(|a| ArtifactInfo {
                    name: a.name.clone(),
                    file: relative_file(dir, &a.path),
                    step: s.step.clone(),
                    size: a.size,
                    sha256: a.sha256.clone(),
                })
            })
            .collect();
        let params = ctx
            .params()
            .iter()
            .map(|(name, value)| {
                let value = match value {
                    ParamValue::Bool(b) => serde_json::Value::from(*b),
                    ParamValue::Int(i) => serde_json::Value::from(*i),
                    ParamValue::Text(s) => serde_json::Value::from(s.as_str()),
                };
                (name.clone(), value)
            })
            .collect();
        Manifest {
            customer: CustomerInfo {
                id: ctx.customer_id().to_string(),
                domain: ctx.customer_domain().to_string(),
            },
            run: RunInfo {
                id: ctx.run_id().to_string(),
                timestamp: ctx.run_timestamp().to_string(),
            },
            step: ctx.step_id().to_string(),
            params,
            stats: Stats {
                total_bytes: artifacts.iter().map(|a| a.size).sum(),
                artifact_count: artifacts.len(),
            },
            artifacts,
        }
    }
}

/// `path` relative to folder `dir` when it lies inside it, else its file name: the manifest
/// names files the way a reader of its folder finds them.
fn relative_file(dir: &str, path: &str) -> String {
    let path = normalize(path);
    let dir = normalize(dir);
    let inside = if dir == "/" {
        path.strip_prefix('/')
    } else {
        path.strip_prefix(&format!("{dir}/"))
    };
    match inside {
        Some(rel) if !rel.is_empty() => rel.to_string(),
        _ => path.rsplit('/').next().unwrap_or_default().to_string(),
    }
}

/// Lexical normalisation of a guest path (`.`, `..`, doubled slashes).
fn normalize(path: &str) -> String {
    let mut parts: Vec<&str> = Vec::new();
    for part in path.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            name => parts.push(name),
        }
    }
    format!("/{}", parts.join("/"))
}

struct ManifestStep;

impl Step for ManifestStep {
    type Config = Config;

    fn run(ctx: &Context, config: Config) -> Result<Output, Error> {
        if !config.output.starts_with('/') {
            return Err(Error::invalid_config(format!(
                "output `{}` must be an absolute guest path",
                config.output
            )));
        }
        if let Some(ids) = &config.steps {
            for id in ids.iter().filter(|id| ctx.previous_step(id).is_none()) {
                // A step skipped by its `when` condition is normal, not an error.
                ctx.debug(format!("step {id} produced nothing before the manifest"));
            }
        }
        let manifest = Manifest::build(ctx, &config.output, config.steps.as_deref());
        let mut json = serde_json::to_vec_pretty(&manifest)?;
        json.push(b'\n');
        let file = File::create(&config.output)
            .with_context(|| format!("creating the manifest {}", config.output))?;
        let mut out = HashingWriter::new(file);
        out.write_all(&json)
            .with_context(|| format!("writing {}", config.output))?;
        out.flush()?;
        let (_file, size, sha256) = out.finish();
        ctx.info(format!(
            "manifest lists {} artifacts, {} bytes",
            manifest.stats.artifact_count, manifest.stats.total_bytes
        ));
        Ok(Output::new().artifact("manifest", config.output, size, sha256))
    }
}

export_step!(ManifestStep);

#[cfg(test)]
mod tests {
    use super::*;
    use qodify_plugin_sdk::Artifact;

    fn artifact(name: &str, path: &str, size: u64) -> Artifact {
        Artifact {
            name: name.into(),
            path: path.into(),
            size,
            sha256: format!("{name}-sha"),
        }
    }

    fn ctx() -> Context {
        Context::builder()
            .customer("42", "shop.example.com")
            .run("run-7", "20250102-030405")
            .step_id("manifest")
            .param("type", ParamValue::Text("custom".into()))
            .param("include.logs", ParamValue::Bool(true))
            .param("heapMB", ParamValue::Int(512))
            .previous(StepOutputs {
                step: "dump-db".into(),
                artifacts: vec![artifact("db", "/backup/db.dump", 100)],
                values: vec![("pg-version".into(), "16".into())],
            })
            .previous(StepOutputs {
                step: "archive-backend".into(),
                artifacts: vec![
                    artifact("backend", "/backup/./archives/backend.tar.gz", 2000),
                    artifact("elsewhere", "/work/tmp/x.bin", 3),
                ],
                values: vec![],
            })
            .build()
    }

    #[test]
    fn manifest_lists_every_earlier_artifact_with_relative_files() {
        let m = Manifest::build(&ctx(), "/backup/backup.json", None);
        let json = serde_json::to_value(&m).unwrap();
        assert_eq!(
            json,
            serde_json::json!({
                "customer": { "id": "42", "domain": "shop.example.com" },
                "run": { "id": "run-7", "timestamp": "20250102-030405" },
                "step": "manifest",
                "params": { "type": "custom", "include.logs": true, "heapMB": 512 },
                "artifacts": [
                    { "name": "db", "file": "db.dump", "step": "dump-db", "size": 100,
                      "sha256": "db-sha" },
                    { "name": "backend", "file": "archives/backend.tar.gz",
                      "step": "archive-backend", "size": 2000, "sha256": "backend-sha" },
                    { "name": "elsewhere", "file": "x.bin", "step": "archive-backend", "size": 3,
                      "sha256": "elsewhere-sha" },
                ],
                "stats": { "totalBytes": 2103, "artifactCount": 3 },
            })
        );
    }

    #[test]
    fn steps_filter_limits_the_artifacts() {
        let steps = vec!["dump-db".to_string(), "skipped-step".to_string()];
        let m = Manifest::build(&ctx(), "/backup/backup.json", Some(&steps));
        assert_eq!(m.artifacts.len(), 1);
        assert_eq!(
            m.stats,
            Stats {
                total_bytes: 100,
                artifact_count: 1
            }
        );
    }

    #[test]
    fn relative_files() {
        assert_eq!(relative_file("/b", "/b/x/y"), "x/y");
        assert_eq!(relative_file("/b", "/bx/y"), "y");
        assert_eq!(relative_file("/b", "/b/../c/y"), "y");
        assert_eq!(relative_file("", "/x/y"), "x/y");
    }
}
