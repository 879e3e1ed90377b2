//! What a run may do, step by step, and how that changed since the customer's last run of the
//! same pipeline: the plugin each step runs (by sha256), its mounts, programs, origins and limits.
//! A recorded run writes the audit entry `run.capabilities` when this differs from the last one
//! recorded for the customer and pipeline (or none was), with the changes; `qodify-host plan
//! --diff` shows the same changes before anything runs.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use crate::engine::manifest::{Declared, Manifest};
use crate::engine::plugins::Catalog;
use crate::pipeline::{Plan, PlannedStep};
use crate::store::{AuditEntry, AuditQuery, Store, StoreResult};

/// The audit action.
pub const ACTION: &str = "run.capabilities";

/// How many of a customer's `run.capabilities` entries are searched for a pipeline's last one.
const SEARCH: usize = 200;

/// One step's capabilities, each as one line of text so changes read as added and removed lines.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StepCaps {
    /// Plugin id and the sha256 of its file (`archive@ab12…`).
    pub plugin: String,
    /// `ro /src = customer:backend`.
    pub mounts: BTreeSet<String>,
    /// `pg_dump args [-Fc, *] env [PGPASSWORD]`.
    pub programs: BTreeSet<String>,
    /// `http://127.0.0.1:*`.
    pub origins: BTreeSet<String>,
    /// `memory 512 MiB`, `timeout 10m`.
    pub limits: BTreeSet<String>,
}

/// A plan's capabilities by step id (every stage: main, on_success, on_failure, finally).
pub type Snapshot = BTreeMap<String, StepCaps>;

/// One change.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Change {
    /// The step.
    pub step: String,
    /// `added` or `removed`.
    pub change: String,
    /// `step`, `plugin`, `mount`, `program`, `origin` or `limit`.
    pub what: String,
    /// The line.
    pub value: String,
}

impl std::fmt::Display for Change {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let sign = if self.change == "added" { '+' } else { '-' };
        write!(f, "{sign} {} {}: {}", self.step, self.what, self.value)
    }
}

fn step_caps(step: &PlannedStep, sha256: Option<String>) -> StepCaps {
    let sha = sha256.or_else(|| step.sha256.clone()).unwrap_or_default();
    StepCaps {
        plugin: format!("{}@{}", step.plugin, sha),
        mounts: step
            .mounts
            .iter()
            .map(|m| {
                format!(
                    "{} {} = {}:{}",
                    if m.writable { "rw" } else { "ro" },
                    m.guest,
                    serde_json::to_value(m.from)
                        .ok()
                        .and_then(|v| v.as_str().map(str::to_owned))
                        .unwrap_or_default(),
                    m.path.display()
                )
            })
            .collect(),
        programs: step
            .commands
            .iter()
            .map(|c| {
                let mut line = format!("{} args [{}]", c.program, c.args.join(", "));
                for (name, list) in [
                    ("env", c.env.clone()),
                    ("inherit", c.inherit.clone()),
                    // Secret names only: the values are the host's.
                    (
                        "secrets",
                        c.secrets.iter().map(|(k, v)| format!("{k}={v}")).collect(),
                    ),
                ] {
                    if !list.is_empty() {
                        line.push_str(&format!(" {name} [{}]", list.join(", ")));
                    }
                }
                for (name, list) in [("net", &c.net), ("bind", &c.bind)] {
                    if !list.is_empty() {
                        let l: Vec<String> = list.iter().map(ToString::to_string).collect();
                        line.push_str(&format!(" {name} [{}]", l.join(", ")));
                    }
                }
                line
            })
            .collect(),
        origins: step.http.iter().map(|h| h.origin.clone()).collect(),
        limits: [
            step.limits
                .memory_bytes
                .map(|b| format!("memory {}", crate::pipeline::units::human_bytes(b))),
            step.limits
                .timeout
                .map(|t| format!("timeout {}", crate::pipeline::units::human_duration(t))),
        ]
        .into_iter()
        .flatten()
        .collect(),
    }
}

/// The capabilities of `plan`, each plugin named with the sha256 of the file the catalog has
/// (or the pipeline's pin when the file cannot be read).
pub fn snapshot(plan: &Plan, catalog: &Catalog) -> Snapshot {
    let mut hashes: BTreeMap<String, Option<String>> = BTreeMap::new();
    plan.all_steps()
        .map(|step| {
            let sha = hashes
                .entry(step.plugin.clone())
                .or_insert_with(|| {
                    catalog
                        .get(&step.plugin)
                        .ok()
                        .and_then(|f| crate::engine::plugins::read_hashed(&f.path).ok())
                        .map(|b| b.sha256)
                })
                .clone();
            (step.id.clone(), step_caps(step, sha))
        })
        .collect()
}

/// What changed from `old` to `new`, step by step in id order.
pub fn diff(old: &Snapshot, new: &Snapshot) -> Vec<Change> {
    let mut out = Vec::new();
    let change = |step: &str, added: bool, what: &str, value: &str| Change {
        step: step.to_owned(),
        change: if added { "added" } else { "removed" }.to_owned(),
        what: what.to_owned(),
        value: value.to_owned(),
    };
    let ids: BTreeSet<&String> = old.keys().chain(new.keys()).collect();
    for id in ids {
        match (old.get(id), new.get(id)) {
            (None, Some(n)) => out.push(change(id, true, "step", &n.plugin)),
            (Some(o), None) => out.push(change(id, false, "step", &o.plugin)),
            (Some(o), Some(n)) => {
                if o.plugin != n.plugin {
                    out.push(change(id, false, "plugin", &o.plugin));
                    out.push(change(id, true, "plugin", &n.plugin));
                }
                for (what, a, b) in [
                    ("mount", &o.mounts, &n.mounts),
                    ("program", &o.programs, &n.programs),
                    ("origin", &o.origins, &n.origins),
                    ("limit", &o.limits, &n.limits),
                ] {
                    for v in a.difference(b) {
                        out.push(change(id, false, what, v));
                    }
                    for v in b.difference(a) {
                        out.push(change(id, true, what, v));
                    }
                }
            }
            (None, None) => {}
        }
    }
    out
}

/// The snapshot of the customer's last recorded run of `pipeline`, with that run's id.
pub fn last_recorded(
    store: &dyn Store,
    customer_id: &str,
    pipeline: &str,
) -> StoreResult<Option<(Option<String>, Snapshot)>> {
    let rows = store.audit_page(&AuditQuery {
        customer_id: Some(customer_id.to_owned()),
        action: Some(ACTION.to_owned()),
        actor: None,
        before: None,
        limit: SEARCH,
    })?;
    Ok(rows
        .into_iter()
        .find(|r| r.entry.detail["pipeline"] == pipeline)
        .and_then(|r| {
            let snap = serde_json::from_value(r.entry.detail["capabilities"].clone()).ok()?;
            Some((r.entry.run_id, snap))
        }))
}

/// What `plan --diff last` compares with: the snapshot of `customer`'s last recorded run of
/// `pipeline`, and a line naming it. Fails, saying what to do instead, when the customer is not
/// registered or has no such run.
pub fn last_run_of(
    state: &crate::ops::AppState,
    customer: &crate::customer::Customer,
    explicit_id: bool,
    pipeline: &str,
) -> anyhow::Result<(String, Snapshot)> {
    use anyhow::Context as _;
    let record = state.registered(customer, explicit_id)?.with_context(|| {
        format!(
            "{} is not registered, so it has no recorded runs to compare with; pass an older pipeline file instead (--diff old.toml)",
            customer.domain
        )
    })?;
    match last_recorded(state.store.as_ref(), &record.id, pipeline)? {
        Some((run, snap)) => Ok((
            format!(
                "the last recorded {pipeline} run ({})",
                run.unwrap_or_default()
            ),
            snap,
        )),
        None => anyhow::bail!(
            "customer {} has no recorded {pipeline} run to compare with; pass an older pipeline file instead (--diff old.toml)",
            record.id
        ),
    }
}

/// Writes `run.capabilities` for `run_id` when `snapshot` differs from the customer's last one
/// for `pipeline` (or there was none), with the changes. Returns the changes (empty for a
/// first run or no change).
pub fn record(
    store: &dyn Store,
    customer_id: &str,
    run_id: &str,
    pipeline: &str,
    actor: Option<&str>,
    snapshot: &Snapshot,
) -> StoreResult<Vec<Change>> {
    let last = last_recorded(store, customer_id, pipeline)?;
    let changes = match &last {
        Some((_, old)) if old == snapshot => return Ok(Vec::new()),
        Some((_, old)) => diff(old, snapshot),
        None => Vec::new(),
    };
    store.audit(&AuditEntry {
        at: crate::ops::now(),
        actor: actor.map(str::to_owned),
        action: ACTION.to_owned(),
        customer_id: Some(customer_id.to_owned()),
        run_id: Some(run_id.to_owned()),
        detail: serde_json::json!({
            "pipeline": pipeline,
            "first": last.is_none(),
            "since": last.and_then(|(run, _)| run),
            "changes": changes,
            "capabilities": snapshot,
        }),
    })?;
    Ok(changes)
}

/// What one step of a plan is granted beyond its plugin's manifest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Excess {
    /// The step.
    pub step: String,
    /// Its plugin.
    pub plugin: String,
    /// One line per grant beyond the manifest; `None` when the plugin has no manifest (or it
    /// cannot be read: then `problem` says why).
    pub beyond: Option<Vec<String>>,
    /// Why the manifest could not be read.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub problem: Option<String>,
}

/// Every step of `plan` (all stages) against its plugin's manifest.
pub fn excess(plan: &Plan, catalog: &Catalog) -> Vec<Excess> {
    type Read = Result<Option<Declared>, String>;
    let mut read: BTreeMap<String, Read> = BTreeMap::new();
    plan.all_steps()
        .map(|step| {
            let got = read
                .entry(step.plugin.clone())
                .or_insert_with(|| declared(catalog, &step.plugin));
            let (beyond, problem) = match got {
                Ok(Some(d)) => (Some(d.manifest.excess(step, &d.imports)), None),
                Ok(None) => (None, None),
                Err(e) => (None, Some(e.clone())),
            };
            Excess {
                step: step.id.clone(),
                plugin: step.plugin.clone(),
                beyond,
                problem,
            }
        })
        .collect()
}

/// A plugin's manifest and imports, from the catalog's file; `None` without a manifest.
pub fn declared(catalog: &Catalog, plugin: &str) -> Result<Option<Declared>, String> {
    let file = catalog.get(plugin).map_err(|e| e.to_string())?;
    let bytes = crate::engine::plugins::read_hashed(&file.path).map_err(|e| e.to_string())?;
    let Some(manifest) = Manifest::of_component(&bytes.bytes).map_err(|e| e.to_string())? else {
        return Ok(None);
    };
    let imports = crate::engine::plugins::imports(&bytes.bytes)?;
    Ok(Some(Declared { manifest, imports }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn caps(plugin: &str, programs: &[&str]) -> StepCaps {
        StepCaps {
            plugin: plugin.into(),
            programs: programs.iter().map(|p| (*p).to_owned()).collect(),
            ..Default::default()
        }
    }

    #[test]
    fn changes_are_added_and_removed_lines_per_step() {
        let old: Snapshot = [
            ("dump".to_owned(), caps("db-dump@aa", &["pg_dump args [*]"])),
            ("gone".to_owned(), caps("noop@cc", &[])),
        ]
        .into();
        let new: Snapshot = [
            (
                "dump".to_owned(),
                caps("db-dump@bb", &["pg_dump args [*]", "rm args [-rf, *]"]),
            ),
            ("new".to_owned(), caps("noop@cc", &[])),
        ]
        .into();
        let lines: Vec<String> = diff(&old, &new).iter().map(ToString::to_string).collect();
        assert_eq!(
            lines,
            [
                "- dump plugin: db-dump@aa",
                "+ dump plugin: db-dump@bb",
                "+ dump program: rm args [-rf, *]",
                "- gone step: noop@cc",
                "+ new step: noop@cc",
            ]
        );
        assert!(diff(&new, &new).is_empty());
    }
}
