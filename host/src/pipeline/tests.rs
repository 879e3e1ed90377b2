//! Data-driven tests over `tests/fixtures/pipelines/` (expected outputs are reviewed files next to
//! the fixtures; `UPDATE_EXPECT=1` rewrites them), and resolve tests.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use super::*;

const KNOWN_PLUGINS: [&str; 4] = ["archive", "manifest", "sandbox-probe", "noop"];

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/pipelines")
}

fn updating() -> bool {
    std::env::var_os("UPDATE_EXPECT").is_some_and(|v| v == "1")
}

/// `*.toml` files of a fixture folder, as paths relative to the fixtures root.
fn toml_files(dir: &str) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(fixtures().join(dir))
        .unwrap_or_else(|e| panic!("reading fixtures {dir}: {e}"))
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "toml"))
        .map(|path| Path::new(dir).join(path.file_name().unwrap()))
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no fixtures in {dir}");
    files
}

fn read(rel: &Path) -> String {
    std::fs::read_to_string(fixtures().join(rel)).unwrap()
}

/// Compares `actual` with the expected file (or rewrites it under `UPDATE_EXPECT=1`).
struct Expect {
    failures: Vec<String>,
}

impl Expect {
    fn new() -> Self {
        Expect {
            failures: Vec::new(),
        }
    }

    fn file(&mut self, rel: &Path, actual: &str) {
        let path = fixtures().join(rel);
        if updating() {
            std::fs::write(&path, actual).unwrap();
            return;
        }
        match std::fs::read_to_string(&path) {
            Ok(expected) if expected == actual => {}
            Ok(expected) => self.failures.push(format!(
                "{} differs\n--- expected\n{expected}\n--- actual\n{actual}",
                rel.display()
            )),
            Err(_) => self.failures.push(format!(
                "{} is missing (run with UPDATE_EXPECT=1 and review it)\n--- actual\n{actual}",
                rel.display()
            )),
        }
    }

    fn fail(&mut self, message: String) {
        self.failures.push(message);
    }

    fn finish(self) {
        assert!(
            self.failures.is_empty(),
            "{} fixture(s) failed:\n\n{}",
            self.failures.len(),
            self.failures.join("\n\n")
        );
    }
}

fn known_plugin(id: &str) -> bool {
    KNOWN_PLUGINS.contains(&id)
}

const PLUGIN_HINT: &str = "known plugins: archive, manifest, noop, sandbox-probe";

/// Parse, validate and check the name, as `qodify-host validate` does.
fn load_checked(rel: &Path) -> Result<Pipeline, Diagnostics> {
    let p = parse_pipeline(rel, &read(rel))?;
    let mut all: Vec<Diagnostic> = Vec::new();
    if let Err(d) = validate(&p, &known_plugin, PLUGIN_HINT) {
        all.extend(d);
    }
    if let Err(d) = check_name_matches_file(&p) {
        all.extend(d);
    }
    all.sort_by_key(|d| (d.line, d.col));
    match Diagnostics::from_vec(all) {
        Some(d) => Err(d),
        None => Ok(p),
    }
}

fn inputs(params: &[(&str, &str)]) -> RunInputs {
    RunInputs {
        customer_id: "42".to_owned(),
        customer_domain: "shop.example.com".to_owned(),
        run_id: "run-test".to_owned(),
        timestamp: "20261126-101500".to_owned(),
        params: params
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        database: CustomerDb::Known(DbFacts {
            host: "127.0.0.1".into(),
            port: 5432,
            name: "shop".into(),
            user: "shop".into(),
        }),
        paths: CustomerPaths::default(),
    }
}

fn plan_json(plan: &Plan) -> String {
    serde_json::to_string_pretty(plan).unwrap() + "\n"
}

fn with_extension(rel: &Path, ext: &str) -> PathBuf {
    rel.with_extension(ext)
}

#[test]
fn valid_pipelines_resolve_to_their_expected_plans() {
    let mut expect = Expect::new();
    for rel in toml_files("valid") {
        match load_checked(&rel).map(|p| resolve(&p, &inputs(&[]))) {
            Ok(Ok(plan)) => expect.file(&with_extension(&rel, "plan.json"), &plan_json(&plan)),
            Ok(Err(e)) => expect.fail(format!("{}: resolve failed: {e}", rel.display())),
            Err(d) => expect.fail(format!("{}: expected valid, got:\n{d}", rel.display())),
        }
    }
    expect.finish();
}

#[test]
fn invalid_pipelines_report_their_expected_diagnostics() {
    let mut expect = Expect::new();
    for rel in toml_files("invalid") {
        match load_checked(&rel) {
            Ok(_) => expect.fail(format!(
                "{}: expected errors, but it is valid",
                rel.display()
            )),
            Err(d) => expect.file(&with_extension(&rel, "err"), &format!("{d}\n")),
        }
    }
    expect.finish();
}

/// Applies an overlay to the `valid/` pipelines it names: a plan per pipeline, or the errors.
fn apply_overlay(rel: &Path) -> Result<Vec<(String, Plan)>, Diagnostics> {
    let overlay = parse_overlay(rel, &read(rel))?;
    let exists = |name: &str| {
        fixtures()
            .join("valid")
            .join(format!("{name}.toml"))
            .is_file()
    };
    overlay.check_pipeline_names(&exists, "pipelines: see tests/fixtures/pipelines/valid")?;
    let folder: Vec<Pipeline> = toml_files("valid")
        .iter()
        .map(|rel| load_checked(rel).unwrap())
        .collect();
    overlay.check_shared_params(&folder.iter().collect::<Vec<_>>())?;
    let mut plans = Vec::new();
    let mut errors: Option<Diagnostics> = None;
    for name in overlay.pipelines() {
        let base = load_checked(Path::new(&format!("valid/{name}.toml")))?;
        match overlay.apply(&base) {
            Ok(patched) => plans.push((name.to_owned(), resolve(&patched, &inputs(&[])).unwrap())),
            Err(d) => match &mut errors {
                Some(all) => all.extend(d),
                None => errors = Some(d),
            },
        }
    }
    let load = |name: &str| {
        let rel = format!("valid/{name}.toml");
        fixtures()
            .join(&rel)
            .is_file()
            .then(|| load_checked(Path::new(&rel)).ok())?
    };
    if let Err(d) = overlay.schedules(&load, "pipelines: see tests/fixtures/pipelines/valid") {
        match &mut errors {
            Some(all) => all.extend(d),
            None => errors = Some(d),
        }
    }
    errors.map_or(Ok(plans), Err)
}

#[test]
fn a_tier_schedules_pipelines_with_options_and_params() {
    let rel = Path::new("tiers/paid.toml");
    let overlay = parse_overlay(rel, &read(rel)).unwrap();
    let load = |name: &str| load_checked(Path::new(&format!("valid/{name}.toml"))).ok();
    let got = overlay.schedules(&load, "").unwrap();
    let shown: Vec<String> = got
        .iter()
        .map(|t| {
            let s = t.schedule.as_ref().map(|s| {
                format!(
                    "{s} window={} jitter={} catch_up={}",
                    super::units::format_duration(s.window),
                    super::units::format_duration(s.jitter),
                    s.catch_up
                )
            });
            format!(
                "{} {} {:?}",
                t.pipeline,
                s.unwrap_or_else(|| "off".into()),
                t.params
            )
        })
        .collect();
    assert_eq!(
        shown,
        [
            "backup daily 03:00 +03:00 window=2h jitter=30m catch_up=true {}",
            "minimal every 6h window=1h jitter=0s catch_up=false {}",
        ]
    );
}

#[test]
fn tier_overlays_patch_the_plans_of_their_pipelines() {
    let mut expect = Expect::new();
    for rel in toml_files("tiers") {
        match apply_overlay(&rel) {
            Ok(plans) => {
                for (name, plan) in plans {
                    expect.file(
                        &with_extension(&rel, &format!("{name}.plan.json")),
                        &plan_json(&plan),
                    );
                }
            }
            Err(d) => expect.fail(format!("{}: expected valid, got:\n{d}", rel.display())),
        }
    }
    expect.finish();
}

#[test]
fn invalid_tier_overlays_report_their_expected_diagnostics() {
    let mut expect = Expect::new();
    for rel in toml_files("tiers/invalid") {
        match apply_overlay(&rel) {
            Ok(_) => expect.fail(format!(
                "{}: expected errors, but it is valid",
                rel.display()
            )),
            Err(d) => expect.file(&with_extension(&rel, "err"), &format!("{d}\n")),
        }
    }
    expect.finish();
}

#[test]
fn schemas_match_their_reviewed_files() {
    let mut expect = Expect::new();
    for (name, schema) in [
        ("pipeline", pipeline_schema()),
        ("overlay", overlay_schema()),
    ] {
        let text = serde_json::to_string_pretty(&schema).unwrap() + "\n";
        expect.file(Path::new(&format!("schema/{name}.schema.json")), &text);
    }
    expect.finish();
}

#[test]
fn overlay_without_the_pipeline_changes_nothing() {
    let base = load_checked(Path::new("valid/minimal.toml")).unwrap();
    let overlay = parse_overlay(
        Path::new("t.toml"),
        "[pipelines.other.params.x]\ndefault = 1\n",
    )
    .unwrap();
    let applied = overlay.apply(&base).unwrap();
    assert_eq!(
        resolve(&applied, &inputs(&[])).unwrap(),
        resolve(&base, &inputs(&[])).unwrap()
    );
    assert_eq!(overlay.pipelines().collect::<Vec<_>>(), ["other"]);
}

const RESOLVE_SRC: &str = r#"
name = "r"

[params.type]
type = "enum"
values = ["fast", "custom"]
default = "fast"

[params."include.logs"]
type = "bool"
default = false

[params.heapMB]
type = "int"
default = 4096

[params.dir]
type = "string"
default = "backend"

[params.backup]
type = "string"

[[steps]]
id = "always"
plugin = "noop"

[[steps]]
id = "logs"
plugin = "archive"
when = "include.logs && type == 'custom'"
group = "g"

[[steps]]
id = "big"
plugin = "archive"
when = "heapMB != 4096"
group = "g"

[[steps]]
id = "copy"
plugin = "archive"
group = "g"
[[steps.mounts]]
guest = "/src"
path = "{{params.dir}}/{{params.backup}}"
"#;

fn resolve_src(params: &[(&str, &str)]) -> Result<Plan, ResolveError> {
    let p = parse_pipeline(Path::new("r.toml"), RESOLVE_SRC).unwrap();
    validate(&p, &known_plugin, "").unwrap();
    resolve(&p, &inputs(params))
}

fn planned<'p>(plan: &'p Plan, id: &str) -> &'p PlannedStep {
    plan.stages
        .iter()
        .flat_map(|s| &s.steps)
        .find(|s| s.id == id)
        .unwrap_or_else(|| panic!("step {id} is not planned"))
}

fn stage_ids(stages: &[Stage]) -> Vec<Vec<&str>> {
    stages
        .iter()
        .map(|s| s.steps.iter().map(|s| s.id.as_str()).collect())
        .collect()
}

#[test]
fn resolve_parses_param_values_by_type() {
    let plan = resolve_src(&[
        ("backup", "20261126-101500"),
        ("heapMB", "-3"),
        ("include.logs", "true"),
    ])
    .unwrap();
    assert_eq!(plan.params["heapMB"], ParamValue::Int(-3));
    assert_eq!(plan.params["include.logs"], ParamValue::Bool(true));
    assert_eq!(plan.params["type"], ParamValue::String("fast".into()));
    assert_eq!(
        planned(&plan, "copy").mounts[0].path,
        PathBuf::from("backend/20261126-101500")
    );
}

#[test]
fn resolve_rejects_bad_param_values_with_what_to_do() {
    let err = |params: &[(&str, &str)]| resolve_src(params).unwrap_err().to_string();
    assert_eq!(
        err(&[("backup", "b"), ("x", "1")]),
        "unknown param `x` (known: type, include.logs, heapMB, dir, backup)"
    );
    assert_eq!(
        err(&[("backup", "b"), ("include.logs", "yes")]),
        "`include.logs` expects true or false, got `yes`"
    );
    assert_eq!(
        err(&[("backup", "b"), ("heapMB", "4k")]),
        "`heapMB` expects an integer, got `4k`"
    );
    assert_eq!(
        err(&[("backup", "b"), ("type", "slow")]),
        "`type` expects one of fast, custom, got `slow`"
    );
    assert_eq!(
        err(&[]),
        "missing required param `backup` (string, no default): set it for this run"
    );
}

#[test]
fn a_param_value_cannot_make_a_mount_leave_its_folder() {
    let err = |params: &[(&str, &str)]| resolve_src(params).unwrap_err();
    assert_eq!(
        err(&[("backup", "../../etc")]).to_string(),
        "mount /src of step copy: path `backend/../../etc` leaves the customer folder"
    );
    assert!(matches!(
        err(&[("backup", "")]),
        ResolveError::MountPath { .. }
    ));
    assert!(matches!(
        err(&[("dir", "/etc"), ("backup", "x")]),
        ResolveError::MountPath { .. }
    ));
    assert!(matches!(
        err(&[("dir", "a\\..\\..\\b"), ("backup", "x")]),
        ResolveError::MountPath { .. }
    ));
    assert!(matches!(
        err(&[("dir", "."), ("backup", "x")]),
        ResolveError::MountPath { .. }
    ));
    // A param may add components, as long as each is a normal name.
    let plan = resolve_src(&[("dir", "backend/uploads"), ("backup", "x")]).unwrap();
    assert_eq!(
        planned(&plan, "copy").mounts[0].path,
        PathBuf::from("backend/uploads/x")
    );
}

#[test]
fn when_conditions_decide_which_steps_run() {
    let plan = resolve_src(&[("backup", "b")]).unwrap();
    assert_eq!(stage_ids(&plan.stages), [vec!["always"], vec!["copy"]]);
    let skipped: Vec<(&str, &str)> = plan
        .skipped
        .iter()
        .map(|s| (s.id.as_str(), s.reason.as_str()))
        .collect();
    assert_eq!(
        skipped,
        [
            ("logs", "when `include.logs && type == 'custom'` is false"),
            ("big", "when `heapMB != 4096` is false"),
        ]
    );
    let plan = resolve_src(&[
        ("backup", "b"),
        ("include.logs", "true"),
        ("type", "custom"),
        ("heapMB", "1"),
    ])
    .unwrap();
    assert!(plan.skipped.is_empty());
}

#[test]
fn a_group_becomes_one_stage() {
    let plan = resolve_src(&[
        ("backup", "b"),
        ("include.logs", "true"),
        ("type", "custom"),
        ("heapMB", "1"),
    ])
    .unwrap();
    assert_eq!(
        stage_ids(&plan.stages),
        [vec!["always"], vec!["logs", "big", "copy"]]
    );
    assert_eq!(plan.stages[0].group, None);
    assert_eq!(plan.stages[1].group.as_deref(), Some("g"));
}

#[test]
fn resolving_an_invalid_pipeline_reports_its_diagnostics() {
    let p = parse_pipeline(
        Path::new("bad.toml"),
        "name = \"bad\"\n[[steps]]\nid = \"a\"\nplugin = \"noop\"\nwhen = \"nope\"\n",
    )
    .unwrap();
    let err = resolve(&p, &inputs(&[])).unwrap_err();
    let ResolveError::Invalid { diagnostics, .. } = &err else {
        panic!("{err}");
    };
    assert_eq!((diagnostics[0].line, diagnostics[0].col), (5, 9));
}

#[test]
fn params_help_lists_type_default_and_values() {
    let p = parse_pipeline(Path::new("r.toml"), RESOLVE_SRC).unwrap();
    let help = params_help(&p);
    assert_eq!(help[0].name, "type");
    assert_eq!(help[0].kind, ParamType::Enum);
    assert_eq!(help[0].values, ["fast", "custom"]);
    assert_eq!(help[0].default, Some(ParamValue::String("fast".into())));
    assert!(help[4].required());
}

#[test]
fn loading_a_missing_file_is_a_diagnostic() {
    let err = load_pipeline(Path::new("/nonexistent/backup.toml")).unwrap_err();
    assert_eq!((err[0].line, err[0].col), (1, 1));
    assert!(err[0].message.starts_with("cannot read pipeline file"));
}

#[test]
fn all_steps_lists_every_section() {
    let p = load_checked(Path::new("valid/backup.toml")).unwrap();
    let ids: BTreeMap<&str, &str> = p
        .all_steps()
        .map(|s| (s.id.as_str(), s.plugin.as_str()))
        .collect();
    assert!(ids.len() >= p.section(Section::Steps).len() + p.section(Section::Finally).len());
}

#[test]
fn overlays_stack_and_errors_point_into_the_overlay_that_caused_them() {
    let base = load_checked(Path::new("valid/backup.toml")).unwrap();
    let paid = parse_overlay(
        Path::new("tiers/paid.toml"),
        &read(Path::new("tiers/paid.toml")),
    )
    .unwrap();
    let patched = paid.apply(&base).unwrap();
    let bad = parse_overlay(
        Path::new("late.toml"),
        "[pipelines.backup.steps.archive-backend.limits]\ntimeout = \"1d\"\n",
    )
    .unwrap();
    let err = bad.apply(&patched).unwrap_err();
    assert_eq!(err.len(), 1);
    assert_eq!(err[0].file, Path::new("late.toml"));
    assert_eq!(
        (err[0].line, err[0].col, err[0].message.as_str()),
        (2, 11, "unknown duration unit `d`")
    );
    let fine = parse_overlay(
        Path::new("late.toml"),
        "[pipelines.backup.steps.archive-backend.limits]\ntimeout = \"2h\"\n",
    )
    .unwrap();
    let twice = fine.apply(&patched).unwrap();
    assert_eq!(
        twice.overlays().collect::<Vec<_>>(),
        [Path::new("tiers/paid.toml"), Path::new("late.toml")]
    );
    let plan = resolve(&twice, &inputs(&[])).unwrap();
    let step = planned(&plan, "archive-backend");
    assert_eq!(
        step.limits.timeout,
        Some(std::time::Duration::from_secs(7200))
    );
    assert_eq!(step.config["gzip"]["level"], 9);
}

#[test]
fn when_columns_point_inside_escaped_and_multiline_strings() {
    let src = "name = \"w\"\n[params.t]\ntype = \"enum\"\nvalues = [\"a\"]\ndefault = \"a\"\n[[steps]]\nid = \"s\"\nplugin = \"noop\"\nwhen = \"\"\"\nt == 'b'\"\"\"\n";
    let p = parse_pipeline(Path::new("w.toml"), src).unwrap();
    let err = validate(&p, &known_plugin, "").unwrap_err();
    assert_eq!((err[0].line, err[0].col), (10, 6));
    let src = "name = \"w\"\n[params.t]\ntype = \"enum\"\nvalues = [\"a\"]\ndefault = \"a\"\n[[steps]]\nid = \"s\"\nplugin = \"noop\"\nwhen = \"t == \\\"b\\\"\"\n";
    let p = parse_pipeline(Path::new("w.toml"), src).unwrap();
    let err = validate(&p, &known_plugin, "").unwrap_err();
    // Escapes make the column approximate, but it stays inside the string.
    assert_eq!(err[0].line, 9);
    assert!((9..=20).contains(&err[0].col), "{}", err[0]);
}

#[test]
fn the_shipped_backup_pipeline_keeps_what_its_params_choose() {
    let file = Path::new(env!("CARGO_MANIFEST_DIR")).join("../pipelines/backup.toml");
    let p = load_pipeline(&file).unwrap_or_else(|d| panic!("{d}"));
    // The shipped plugins are the crates under plugins/ (the SDK is none).
    let plugins = Path::new(env!("CARGO_MANIFEST_DIR")).join("../plugins");
    let shipped = |id: &str| id != "qodify-plugin-sdk" && plugins.join(id).is_dir();
    validate(&p, &shipped, "shipped plugins: see plugins/").unwrap_or_else(|d| panic!("{d}"));
    check_name_matches_file(&p).unwrap_or_else(|d| panic!("{d}"));
    let keep = |params: &[(&str, &str)], logs: bool| {
        let plan = resolve(&p, &inputs(params)).unwrap();
        let expected = serde_json::json!({
            "**/logs/**": logs,
            "**/node_modules/**": false,
            "**/.next/**": false,
            "**/dist/**": false,
        });
        for id in ["archive-backend", "archive-admin", "archive-store"] {
            assert_eq!(
                planned(&plan, id).config["keep"],
                expected,
                "{id} with {params:?}"
            );
        }
    };
    keep(&[], false);
    // The include flags count only for custom backups.
    keep(&[("include.logs", "true")], false);
    keep(&[("type", "custom"), ("include.logs", "true")], true);
    keep(&[("type", "custom")], false);
}

#[test]
fn a_lone_template_keeps_its_type_and_a_longer_string_renders_text() {
    let src = "name = \"t\"\n[params.n]\ntype = \"int\"\ndefault = 3\n[params.on]\ntype = \"bool\"\ndefault = false\n[[steps]]\nid = \"s\"\nplugin = \"noop\"\n[steps.config]\nn = \"{{params.n}}\"\non = \"{{ on }}\"\noff = \"{{ !on && n == 3 }}\"\ntext = \"n={{params.n}} on={{ on }}\"\nspaced = \"{{ on }} \"\n";
    let p = parse_pipeline(Path::new("t.toml"), src).unwrap();
    validate(&p, &known_plugin, "").unwrap_or_else(|d| panic!("{d}"));
    let config = |params: &[(&str, &str)]| {
        planned(&resolve(&p, &inputs(params)).unwrap(), "s")
            .config
            .clone()
    };
    assert_eq!(
        config(&[]),
        serde_json::json!({"n": 3, "on": false, "off": true, "text": "n=3 on=false", "spaced": "false "})
    );
    assert_eq!(
        config(&[("on", "true"), ("n", "-1")]),
        serde_json::json!({"n": -1, "on": true, "off": false, "text": "n=-1 on=true", "spaced": "true "})
    );
}

#[test]
fn output_and_on_success_are_exposed() {
    let p = load_checked(Path::new("valid/new-backup.toml")).unwrap();
    assert_eq!(p.output(), Some(OutputKind::Backup));
    let ids = |s: Section| -> Vec<&str> { p.section(s).iter().map(|s| s.id.as_str()).collect() };
    assert_eq!(ids(Section::OnSuccess), ["prune", "notify"]);
    assert_eq!(Section::OnSuccess.key(), "on_success");
    let all: Vec<&str> = p.all_steps().map(|s| s.id.as_str()).collect();
    assert_eq!(
        all,
        [
            "archive-backend",
            "archive-uploads",
            "manifest",
            "prune",
            "notify",
            "report",
            "cleanup"
        ]
    );
    let plan = resolve(&p, &inputs(&[("notify", "true")])).unwrap();
    assert_eq!(plan.output, Some(OutputKind::Backup));
    assert_eq!(stage_ids(&plan.on_success), [vec!["prune"], vec!["notify"]]);
    assert!(plan.skipped.is_empty());
    let minimal = load_checked(Path::new("valid/minimal.toml")).unwrap();
    assert_eq!(minimal.output(), None);
    let plan = resolve(&minimal, &inputs(&[])).unwrap();
    assert_eq!((plan.output, plan.on_success.len()), (None, 0));
    let json = serde_json::to_value(&plan).unwrap();
    assert!(json.get("output").is_none() && json.get("on_success").is_none());
}

#[test]
fn on_success_step_ids_are_unique_with_the_other_sections() {
    let src = "name = \"d\"\noutput = \"backup\"\n[[steps]]\nid = \"a\"\nplugin = \"noop\"\n[[on_success]]\nid = \"a\"\nplugin = \"noop\"\n";
    let p = parse_pipeline(Path::new("d.toml"), src).unwrap();
    let err = validate(&p, &known_plugin, "").unwrap_err();
    assert_eq!(err.len(), 1);
    assert_eq!((err[0].line, err[0].col), (7, 6));
    assert_eq!(
        err[0].hint.as_deref(),
        Some(
            "step ids must be unique across steps, on_success, on_failure and finally; it is first used at line 4"
        )
    );
}

#[test]
fn overlays_patch_on_success_steps() {
    let base = load_checked(Path::new("valid/new-backup.toml")).unwrap();
    let overlay = parse_overlay(
        Path::new("t.toml"),
        "[pipelines.new-backup.steps.prune.config]\nkeep = 30\n[pipelines.new-backup.steps.prune.limits]\ntimeout = \"5m\"\n",
    )
    .unwrap();
    let plan = resolve(&overlay.apply(&base).unwrap(), &inputs(&[])).unwrap();
    let prune = &plan.on_success[0].steps[0];
    assert_eq!(prune.config["keep"], 30);
    assert_eq!(prune.config["latest"], "backups/20261126-101500");
    assert_eq!(
        prune.limits.timeout,
        Some(std::time::Duration::from_secs(300))
    );
}

#[test]
fn a_param_value_cannot_make_a_backup_mount_leave_the_backup_folder() {
    let src = "name = \"b\"\noutput = \"backup\"\n[params.sub]\ntype = \"string\"\ndefault = \"db\"\n[[steps]]\nid = \"a\"\nplugin = \"noop\"\n[[steps.mounts]]\nguest = \"/out\"\nfrom = \"backup\"\npath = \"{{params.sub}}\"\naccess = \"rw\"\ncreate = true\n";
    let p = parse_pipeline(Path::new("b.toml"), src).unwrap();
    validate(&p, &known_plugin, "").unwrap_or_else(|d| panic!("{d}"));
    let plan = resolve(&p, &inputs(&[])).unwrap();
    let mount = &planned(&plan, "a").mounts[0];
    assert_eq!(
        (mount.from, mount.path.as_path()),
        (MountRoot::Backup, Path::new("db"))
    );
    assert_eq!(
        resolve(&p, &inputs(&[("sub", "..")]))
            .unwrap_err()
            .to_string(),
        "mount /out of step a: path `..` leaves the backup folder"
    );
}

#[test]
fn net_grants_parse_host_and_one_literal_port() {
    let ok = |s: &str| NetGrant::parse(s).map(|g| (g.host, g.port));
    assert_eq!(ok("DB.Internal:5432"), Ok(("db.internal".into(), 5432)));
    assert_eq!(ok("localhost:80"), Ok(("localhost".into(), 80)));
    assert_eq!(ok("10.0.0.1:65535"), Ok(("10.0.0.1".into(), 65535)));
    assert_eq!(ok("[::1]:1"), Ok(("[::1]".into(), 1)));
    assert_eq!(ok("[FE80::1]:3000"), Ok(("[fe80::1]".into(), 3000)));
    for bad in [
        "db",
        "db:",
        ":5432",
        "db:*",
        "db:0",
        "db:65536",
        "db:+80",
        "db:80 ",
        "::1:5432",
        "::1",
        "[::1]",
        "[::1:5432",
        "[db]:5432",
        "999.1.1.1:5432",
        "db_host:5432",
        "-db:5432",
        "db..internal:5432",
        "{{customer.domain}}:5432",
        "db:{{params.port}}",
    ] {
        assert!(NetGrant::parse(bad).is_err(), "{bad} was accepted");
    }
    assert_eq!(
        NetGrant::parse("::1:5432").unwrap_err(),
        "an IPv6 address goes in brackets: `[::1]:5432`"
    );
}

#[test]
fn overlays_keep_the_network_grants_of_the_steps_they_patch() {
    let base = load_checked(Path::new("valid/network.toml")).unwrap();
    let overlay = parse_overlay(
        Path::new("t.toml"),
        "[pipelines.network.steps.start-app.limits]\ntimeout = \"5m\"\n",
    )
    .unwrap();
    let before = resolve(&base, &inputs(&[])).unwrap();
    let after = resolve(&overlay.apply(&base).unwrap(), &inputs(&[])).unwrap();
    let grants = |plan: &Plan| {
        let node = planned(plan, "start-app").commands[1].clone();
        (node.net, node.bind)
    };
    assert_eq!(grants(&after), grants(&before));
    let (net, bind) = grants(&after);
    assert_eq!(net[0].to_string(), "127.0.0.1:5432");
    assert_eq!(bind[1].to_string(), "[::]:3000");
}

#[test]
fn grants_past_the_host_ceilings_are_refused_at_their_place() {
    let mut expect = Expect::new();
    for rel in toml_files("ceilings") {
        let p = load_checked(&rel).unwrap_or_else(|d| panic!("{d}"));
        match check_ceilings(&p, &GrantCeilings::default()) {
            Ok(()) => expect.fail(format!("{} passed the ceilings", rel.display())),
            Err(d) => expect.file(&rel.with_extension("err"), &format!("{d}\n")),
        }
    }
    expect.finish();
    // Raised in the settings, the same grants pass.
    let p = load_checked(Path::new("ceilings/too-much.toml")).unwrap();
    let wide = GrantCeilings {
        programs: vec!["pg_dump".into(), "sh".into()],
        connect_ports: vec![5432, 6379],
        bind_ports: vec![3000],
        http: vec!["http://10.0.0.1:80".into(), "http://127.0.0.1:*".into()],
        origin: "qodify-host.toml".into(),
    };
    check_ceilings(&p, &wide).unwrap();
}

#[test]
fn the_shipped_pipelines_stay_inside_the_default_ceilings() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../pipelines");
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_none_or(|e| e != "toml") {
            continue;
        }
        let p = load_pipeline(&path).unwrap_or_else(|d| panic!("{d}"));
        check_ceilings(&p, &GrantCeilings::default()).unwrap_or_else(|d| panic!("{d}"));
    }
}

fn db_pipeline(extra: &str) -> Pipeline {
    let src = format!(
        r#"
name = "t"
[params.dump]
type = "bool"
default = true
[params.target]
type = "string"
default = ""
[[steps]]
id = "dump"
plugin = "noop"
when = "dump"
[[steps.commands]]
program = "pg_dump"
args = ["--host={{{{customer.db.host}}}}", "--port={{{{ customer.db.port }}}}", "--username={{{{customer.db.user}}}}", "--dbname={{{{customer.db.name}}}}", "--other={{{{params.target}}}}"]
{extra}
"#
    );
    parse_pipeline(Path::new("t.toml"), &src).unwrap_or_else(|d| panic!("{d}"))
}

#[test]
fn customer_db_references_fix_command_arguments_to_the_customers_database() {
    let p = db_pipeline("");
    validate(&p, &known_plugin, PLUGIN_HINT).unwrap();
    let mut inputs = inputs(&[("target", "x*")]);
    inputs.database = CustomerDb::Known(DbFacts {
        host: "127.0.0.1".into(),
        port: 5433,
        name: "shop[1]*".into(),
        user: "shop".into(),
    });
    let plan = resolve(&p, &inputs).unwrap();
    let args = &plan.stages[0].steps[0].commands[0].args;
    assert_eq!(
        args,
        &[
            "--host=127.0.0.1",
            "--port=5433",
            "--username=shop",
            // Glob characters in a value are escaped: it stands for itself only.
            "--dbname=shop[[]1[]][*]",
            "--other=x[*]",
        ]
    );

    // Unknown: a step that needs it cannot be planned, and says why.
    inputs.database = CustomerDb::Unavailable("backend/.env sets no DATABASE_URL".into());
    let err = resolve(&p, &inputs).unwrap_err().to_string();
    assert_eq!(
        err,
        "step dump: `{{customer.db.host}}` in a `pg_dump` grant needs the customer's database: backend/.env sets no DATABASE_URL"
    );
    // A step skipped by `when` does not need it.
    inputs.params.insert("dump".into(), "false".into());
    resolve(&p, &inputs).unwrap();
}

#[test]
fn customer_db_references_are_only_for_command_patterns() {
    let p = db_pipeline("[steps.config]\nhost = \"{{customer.db.host}}\"\n");
    let err = validate(&p, &known_plugin, PLUGIN_HINT)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("`customer.db.host` is only allowed in command argument patterns"),
        "{err}"
    );
    let p = db_pipeline("[steps.config]\nhost = \"{{customer.db.password}}\"\n");
    let err = validate(&p, &known_plugin, PLUGIN_HINT)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("unknown template reference `customer.db.password`"),
        "{err}"
    );
}

#[test]
fn the_shipped_pipelines_reach_the_services_through_the_layout_the_host_found() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../pipelines");
    let bg = ServicePaths {
        uploads: "shared/uploads".into(),
        ..ServicePaths::under("releases/1.4.0")
    };
    for (name, params) in [
        ("backup", &[][..]),
        ("restore", &[("backup", "20261126-101500")][..]),
        ("upgrade", &[("targetVersion", "1.5.0")][..]),
    ] {
        let mut inputs = inputs(params);
        inputs.paths = CustomerPaths::Known(bg.clone());
        let p = load_pipeline(&dir.join(format!("{name}.toml"))).unwrap_or_else(|d| panic!("{d}"));
        let plan = resolve(&p, &inputs).unwrap_or_else(|e| panic!("{name}: {e}"));
        let steps = plan.stages.iter().flat_map(|s| &s.steps);
        let mut services = 0;
        for step in steps {
            for m in &step.mounts {
                // No mount names a service by its current-layout folder any more.
                assert!(
                    !["backend", "admin", "store", "backend/uploads"]
                        .contains(&m.path.to_str().unwrap()),
                    "{name}: step {} mounts {}",
                    step.id,
                    m.path.display()
                );
                services += usize::from(
                    m.path.starts_with("releases/1.4.0") || m.path.starts_with("shared/uploads"),
                );
            }
        }
        assert!(services >= 2, "{name}: {services} service mounts");
        // Nor does a plugin's config (restore targets, paths handed to plugins).
        let plan = resolve(&p, &inputs).unwrap();
        for step in plan
            .stages
            .iter()
            .chain(&plan.on_failure)
            .flat_map(|s| &s.steps)
        {
            let config = step.config.to_string();
            for fixed in ["backend", "admin", "store", "backend/uploads"] {
                assert!(
                    !config.contains(&format!("\"/customer/{fixed}\"")),
                    "{name}: step {} names /customer/{fixed}: {config}",
                    step.id
                );
            }
        }
    }
}

#[test]
fn a_layout_the_host_could_not_find_stops_only_the_steps_that_need_it() {
    let src = r#"
name = "t"
[params.files]
type = "bool"
default = true
[[steps]]
id = "first"
plugin = "noop"
[[steps]]
id = "uploads"
plugin = "noop"
when = "files"
[steps.config]
target = "/customer/{{customer.path.uploads}}"
"#;
    let p = parse_pipeline(Path::new("t.toml"), src).unwrap_or_else(|d| panic!("{d}"));
    validate(&p, &known_plugin, PLUGIN_HINT).unwrap();
    let mut inputs = inputs(&[]);
    inputs.paths = CustomerPaths::Unavailable(
        "`current` links to /srv/x, which is not a release folder inside /c".into(),
    );
    let err = resolve(&p, &inputs).unwrap_err().to_string();
    assert_eq!(
        err,
        "step uploads: `{{customer.path.uploads}}` needs the customer's layout: `current` links to /srv/x, which is not a release folder inside /c"
    );
    inputs.params.insert("files".into(), "false".into());
    resolve(&p, &inputs).unwrap();
    // Known: the value is the path, in config strings as in mount paths.
    inputs.params.clear();
    inputs.paths = CustomerPaths::default();
    let plan = resolve(&p, &inputs).unwrap();
    assert_eq!(
        planned(&plan, "uploads").config["target"],
        "/customer/backend/uploads"
    );
    // A misspelt reference is caught by validate, with the known ones listed.
    let bad = parse_pipeline(
        Path::new("t.toml"),
        &src.replace("customer.path.uploads", "customer.path.upload"),
    )
    .unwrap();
    let err = validate(&bad, &known_plugin, PLUGIN_HINT)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("did you mean `customer.path.uploads`"),
        "{err}"
    );
}
