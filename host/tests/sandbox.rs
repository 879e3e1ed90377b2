//! The sandbox under attack: a fixture plugin tries every escape it can think of against its
//! grants; infinite loops and memory bombs are stopped; and the same host process then runs the
//! next pipeline normally. Needs the test plugins built by `cargo xtask build`.

mod common;

use common::snapshot;
use std::os::unix::fs::PermissionsExt as _;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use qodify_host::customer::Customer;
use qodify_host::engine::caps::CancelToken;
use qodify_host::engine::executor::{self, RunOutcome, RunRequest};
use qodify_host::engine::plugins::Catalog;
use qodify_host::engine::runtime::Runtime;
use qodify_host::events::{MemorySink, RunStatus};
use qodify_host::pipeline::{self, RunInputs};
use qodify_host::settings::{Ceilings, Settings};

fn target_dir() -> PathBuf {
    if let Some(t) = std::env::var_os("QODIFY_TEST_TARGET_DIR") {
        return t.into();
    }
    // <target>/debug/deps/sandbox-<hash>
    let exe = std::env::current_exe().unwrap();
    exe.ancestors().nth(3).unwrap().to_path_buf()
}

struct Fixture {
    _tmp: tempfile::TempDir,
    root: PathBuf,
    settings: Settings,
    catalog: Catalog,
}

fn fixture() -> Fixture {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().to_path_buf();
    let target = target_dir();
    let plugin_dirs = vec![target.join("plugins"), target.join("test-plugins")];
    let catalog = Catalog::scan(&plugin_dirs);
    assert!(
        catalog.contains("sandbox-probe")
            && catalog.contains("noop")
            && catalog.contains("archive"),
        "test plugins missing in {:?}: run `cargo xtask build` first ({})",
        plugin_dirs,
        catalog.hint()
    );
    let settings = Settings {
        customers_root: root.join("customers"),
        data_dir: root.join("data"),
        store: Default::default(),
        node: "test".into(),
        advertise_url: None,
        plugin_dirs,
        pipelines_dir: root.join("pipelines"),
        releases_dir: root.join("releases"),
        secrets_dir: root.join("secrets"),
        listen: "127.0.0.1:0".into(),
        api_token: None,
        ceilings: Ceilings {
            default_memory_bytes: 64 << 20,
            ..Ceilings::default()
        },
        config_file: None,
        commands: Default::default(),
        grants: Default::default(),
        runs: Default::default(),
        console: Default::default(),
        schedule: Default::default(),
    };
    let cust = root.join("customers/shop.example.com");
    std::fs::create_dir_all(cust.join("data/sub")).unwrap();
    std::fs::create_dir_all(cust.join("out")).unwrap();
    std::fs::write(cust.join("data/ok.txt"), "hello").unwrap();
    std::fs::write(cust.join("data/inside.txt"), "read-only content").unwrap();
    // The neighbour whose secret must stay out of reach, and host canaries.
    std::fs::create_dir_all(root.join("customers/other-customer")).unwrap();
    std::fs::write(
        root.join("customers/other-customer/secret"),
        "neighbour secret",
    )
    .unwrap();
    std::fs::write(root.join("canary.txt"), "canary").unwrap();
    std::fs::set_permissions(
        root.join("canary.txt"),
        std::fs::Permissions::from_mode(0o640),
    )
    .unwrap();
    std::os::unix::fs::symlink(root.join("canary.txt"), cust.join("data/escape-abs")).unwrap();
    std::os::unix::fs::symlink("../../other-customer/secret", cust.join("data/escape-rel"))
        .unwrap();
    Fixture {
        _tmp: tmp,
        root,
        settings,
        catalog,
    }
}

fn run(
    rt: &Runtime,
    fx: &Fixture,
    toml: &str,
    params: &[(&str, &str)],
) -> (RunOutcome, Arc<MemorySink>) {
    run_with(rt, fx, toml, params, CancelToken::default())
}

fn run_with(
    rt: &Runtime,
    fx: &Fixture,
    toml: &str,
    params: &[(&str, &str)],
    cancel: CancelToken,
) -> (RunOutcome, Arc<MemorySink>) {
    let path = fx.root.join("pipelines/test.toml");
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(&path, toml).unwrap();
    let p = pipeline::load_pipeline(&path).unwrap_or_else(|d| panic!("{d}"));
    pipeline::validate(&p, &|id| fx.catalog.contains(id), &fx.catalog.hint())
        .unwrap_or_else(|d| panic!("{d}"));
    let customer = Customer::new("shop.example.com", Some("42")).unwrap();
    let inputs = RunInputs {
        customer_id: "42".into(),
        customer_domain: "shop.example.com".into(),
        run_id: executor::new_run_id(),
        timestamp: executor::timestamp_now(),
        params: params
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        database: Default::default(),
        paths: Default::default(),
    };
    let plan = pipeline::resolve(&p, &inputs).unwrap();
    let sink = Arc::new(MemorySink::default());
    let outcome = executor::execute(
        rt,
        RunRequest {
            plan: &plan,
            customer: &customer,
            run_id: inputs.run_id.clone(),
            timestamp: inputs.timestamp.clone(),
            catalog: &fx.catalog,
            settings: &fx.settings,
            events: sink.clone(),
            cancel,
            recovery: None,
            approvals: None,
        },
    )
    .unwrap();
    (outcome, sink)
}

const PROBE: &str = r#"
name = "test"
[params.mode]
type = "string"
default = "escape"
[[steps]]
id = "probe"
plugin = "sandbox-probe"
[steps.config]
mode = "{{params.mode}}"
data = "/data"
out = "/out"
[[steps.mounts]]
guest = "/data"
path = "data"
[[steps.mounts]]
guest = "/out"
path = "out"
access = "rw"
[steps.limits]
memory = "64MiB"
timeout = "3s"
"#;

const NOOP: &str = r#"
name = "test"
[[steps]]
id = "noop"
plugin = "noop"
[steps.config]
echo = "still serving"
"#;

#[test]
fn escape_attempts_all_fail_and_touch_nothing_outside_the_grants() {
    let fx = fixture();
    let rt = Runtime::new(&fx.settings.data_dir).unwrap();
    let outside_before = snapshot(&fx.root.join("customers/other-customer"));
    let canary_before = std::fs::metadata(fx.root.join("canary.txt"))
        .unwrap()
        .permissions()
        .mode();
    let data_before = snapshot(&fx.root.join("customers/shop.example.com/data"));

    let (outcome, _) = run(&rt, &fx, PROBE, &[]);
    assert_eq!(outcome.status, RunStatus::Succeeded, "{:?}", outcome.error);
    let outputs = &outcome.steps[0].outputs;
    let get = |k: &str| {
        outputs
            .iter()
            .find(|(key, _)| key == k)
            .map(|(_, v)| v.clone())
    };
    // The controls prove the probe really can read and write where it was granted.
    assert_eq!(get("control-read").as_deref(), Some("ok:hello"));
    assert_eq!(get("control-write").as_deref(), Some("ok"));
    let attempts: Vec<_> = outputs
        .iter()
        .filter(|(k, _)| !k.starts_with("control-"))
        .collect();
    assert!(
        attempts.len() >= 20,
        "too few attempts reported: {attempts:?}"
    );
    let escaped: Vec<_> = attempts
        .iter()
        .filter(|(_, v)| !v.starts_with("denied"))
        .collect();
    assert!(escaped.is_empty(), "escapes succeeded: {escaped:#?}");

    assert_eq!(
        snapshot(&fx.root.join("customers/other-customer")),
        outside_before
    );
    assert_eq!(
        std::fs::read_to_string(fx.root.join("canary.txt")).unwrap(),
        "canary"
    );
    assert_eq!(
        std::fs::metadata(fx.root.join("canary.txt"))
            .unwrap()
            .permissions()
            .mode(),
        canary_before
    );
    assert_eq!(
        snapshot(&fx.root.join("customers/shop.example.com/data")),
        data_before,
        "read-only mount changed"
    );
    let out = fx.root.join("customers/shop.example.com/out");
    assert!(!out.join("stolen.txt").exists() && !out.join("hardlink.txt").exists());
}

#[test]
fn runaway_plugins_are_stopped_with_their_cause_and_the_host_goes_on() {
    let fx = fixture();
    let rt = Runtime::new(&fx.settings.data_dir).unwrap();

    let started = Instant::now();
    let (outcome, _) = run(&rt, &fx, PROBE, &[("mode", "loop")]);
    assert_eq!(outcome.status, RunStatus::Failed);
    let err = outcome.error.unwrap();
    assert!(
        err.contains("step probe ran past its 3s time limit"),
        "{err}"
    );
    assert!(started.elapsed() < Duration::from_secs(20));

    let (outcome, _) = run(&rt, &fx, PROBE, &[("mode", "memory-bomb")]);
    assert_eq!(outcome.status, RunStatus::Failed);
    let err = outcome.error.unwrap();
    assert!(
        err.contains("step probe exceeded its 64 MiB memory limit"),
        "{err}"
    );

    let (outcome, _) = run(&rt, &fx, PROBE, &[("mode", "huge-output")]);
    assert_eq!(
        outcome.status,
        RunStatus::Failed,
        "a million outputs must be refused"
    );

    // A second loop proves the deadline is reset per call, not only armed once.
    let (outcome, _) = run(&rt, &fx, PROBE, &[("mode", "loop")]);
    assert!(outcome.error.unwrap().contains("time limit"));

    let (outcome, _) = run(&rt, &fx, NOOP, &[]);
    assert_eq!(outcome.status, RunStatus::Succeeded, "{:?}", outcome.error);
    assert_eq!(
        outcome.steps[0].outputs,
        vec![("echo".to_string(), "still serving".to_string())]
    );
}

#[test]
fn log_floods_are_capped() {
    let fx = fixture();
    let rt = Runtime::new(&fx.settings.data_dir).unwrap();
    let (outcome, sink) = run(
        &rt,
        &fx,
        &PROBE.replace("timeout = \"3s\"", "timeout = \"60s\""),
        &[("mode", "log-flood")],
    );
    assert_eq!(outcome.status, RunStatus::Succeeded, "{:?}", outcome.error);
    let n = sink.0.lock().unwrap().len() as u64;
    assert!(
        n <= fx.settings.ceilings.max_log_lines + 20,
        "{n} events kept"
    );
}

#[test]
fn a_pinned_sha256_that_does_not_match_refuses_to_run() {
    let fx = fixture();
    let rt = Runtime::new(&fx.settings.data_dir).unwrap();
    let pinned = NOOP.replace(
        "plugin = \"noop\"",
        &format!("plugin = \"noop\"\nsha256 = \"{}\"", "ab".repeat(32)),
    );
    let path = fx.root.join("pipelines/test.toml");
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(&path, pinned).unwrap();
    let p = pipeline::load_pipeline(&path).unwrap();
    let inputs = RunInputs {
        customer_id: "42".into(),
        customer_domain: "shop.example.com".into(),
        run_id: executor::new_run_id(),
        timestamp: executor::timestamp_now(),
        params: Default::default(),
        database: Default::default(),
        paths: Default::default(),
    };
    let plan = pipeline::resolve(&p, &inputs).unwrap();
    let customer = Customer::new("shop.example.com", None).unwrap();
    let err = executor::execute(
        &rt,
        RunRequest {
            plan: &plan,
            customer: &customer,
            run_id: inputs.run_id.clone(),
            timestamp: inputs.timestamp.clone(),
            catalog: &fx.catalog,
            settings: &fx.settings,
            events: Arc::new(MemorySink::default()),
            cancel: CancelToken::default(),
            recovery: None,
            approvals: None,
        },
    )
    .unwrap_err();
    let msg = format!("{err:#}");
    assert!(
        msg.contains("pipeline pins abab") && msg.contains("update `sha256`"),
        "{msg}"
    );
}

#[test]
fn artifacts_are_rechecked_by_the_host_and_never_followed_out() {
    let fx = fixture();
    let rt = Runtime::new(&fx.settings.data_dir).unwrap();
    let (o, _) = run(&rt, &fx, PROBE, &[("mode", "lying-artifact")]);
    let err = o.error.unwrap();
    assert!(
        err.contains("returned an invalid result") && err.contains("hashes to ba7816bf"),
        "{err}"
    );

    let (o, _) = run(&rt, &fx, PROBE, &[("mode", "artifact-through-link")]);
    let err = o.error.unwrap();
    assert!(err.contains("is a symlink"), "{err}");

    let (o, _) = run(&rt, &fx, PROBE, &[("mode", "artifact-outside")]);
    let err = o.error.unwrap();
    assert!(err.contains("outside the step's mounts"), "{err}");
}

/// A backup run whose first step asks to link an earlier backup's archive into the new backup
/// (`files.hard-link`) and then attacks the name, and whose second step, granted only the new
/// backup, attacks it too.
fn link_pipeline(size: u64, sha: &str) -> String {
    format!(
        r#"
name = "test"
output = "backup"
[params.write]
type = "bool"
default = false
[[steps]]
id = "link"
plugin = "sandbox-probe"
[steps.config]
mode = "link-backup"
path = "/backups/20260101-000000/uploads.tar.gz"
out = "/out"
to = "uploads.tar.gz"
link = true
write = "{{{{ write }}}}"
artifact = ["uploads", {size}, "{sha}"]
manifest_id = "{{{{run.timestamp}}}}"
[[steps.mounts]]
guest = "/backups"
path = "backups"
[[steps.mounts]]
guest = "/out"
from = "backup"
path = ""
access = "rw"
[[steps]]
id = "other"
plugin = "sandbox-probe"
[steps.config]
mode = "link-backup"
out = "/out"
to = "uploads.tar.gz"
[[steps.mounts]]
guest = "/out"
from = "backup"
path = ""
access = "rw"
"#
    )
}

#[test]
fn no_step_can_change_an_earlier_backup_through_a_link_into_the_new_one() {
    use sha2::Digest as _;
    use std::os::unix::fs::MetadataExt as _;
    let fx = fixture();
    let rt = Runtime::new(&fx.settings.data_dir).unwrap();
    let backups = fx.root.join("customers/shop.example.com/backups");
    let earlier = backups.join("20260101-000000/uploads.tar.gz");
    std::fs::create_dir_all(earlier.parent().unwrap()).unwrap();
    std::fs::write(&earlier, "the earlier backup's archive").unwrap();
    let content = std::fs::read(&earlier).unwrap();
    let sha = hex::encode(sha2::Sha256::digest(&content));
    let toml = link_pipeline(content.len() as u64, &sha);
    let value = |o: &RunOutcome, step: usize, k: &str| {
        o.steps[step]
            .outputs
            .iter()
            .find(|(key, _)| key == k)
            .map(|(_, v)| v.clone())
            .unwrap_or_else(|| panic!("no output {k} in {:?}", o.steps[step].outputs))
    };

    // A step that only links: neither it nor the next step finds the name before the backup
    // completes, so neither can write the earlier file; then the new backup shares it.
    let (o, _) = run(&rt, &fx, &toml, &[]);
    assert_eq!(o.status, RunStatus::Succeeded, "{:?}", o.error);
    assert_eq!(value(&o, 0, "link"), "ALLOWED:noted");
    for step in [0, 1] {
        for k in ["stat-linked", "append-linked"] {
            let v = value(&o, step, k);
            assert!(v.starts_with("denied:"), "step {step} {k}: {v}");
        }
    }
    let id = o.backup.clone().unwrap();
    let linked = backups.join(&id).join("uploads.tar.gz");
    assert_eq!(
        std::fs::metadata(&linked).unwrap().ino(),
        std::fs::metadata(&earlier).unwrap().ino()
    );
    assert_eq!(std::fs::read(&earlier).unwrap(), content);

    // A step that links and then writes a file of that name fails the backup, and the earlier
    // archive is untouched.
    std::fs::remove_dir_all(backups.join(&id)).unwrap();
    std::thread::sleep(Duration::from_millis(1100));
    let (o, _) = run(&rt, &fx, &toml, &[("write", "true")]);
    assert_eq!(o.status, RunStatus::Failed);
    let err = o.error.unwrap();
    assert!(err.contains("a backup holds one or the other"), "{err}");
    assert_eq!(std::fs::read(&earlier).unwrap(), content);
    let left: Vec<_> = std::fs::read_dir(&backups)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    assert_eq!(
        left,
        ["20260101-000000"],
        "no partial or new backup is left"
    );
}

#[test]
fn a_panic_is_reported_as_a_crash_of_that_step() {
    let fx = fixture();
    let rt = Runtime::new(&fx.settings.data_dir).unwrap();
    let (o, _) = run(&rt, &fx, PROBE, &[("mode", "panic")]);
    let err = o.error.unwrap();
    assert!(
        err.starts_with("step probe crashed: panicked at")
            && err.contains("probe panicked on purpose"),
        "{err}"
    );
}

const COMMANDS: &str = r#"
name = "test"
[params.mode]
type = "string"
[[steps]]
id = "probe"
plugin = "sandbox-probe"
[steps.config]
mode = "{{params.mode}}"
[[steps.mounts]]
guest = "/out"
path = "out"
access = "rw"
[[steps.commands]]
program = "sleep"
args = ["30"]
reason = "prove timeouts kill the child"
[[steps.commands]]
program = "sh"
args = ["-c", "echo token is $SECRET_TOKEN"]
env = ["SECRET_TOKEN"]
reason = "prove secrets are redacted"
"#;

#[test]
fn granted_commands_time_out_and_their_secrets_stay_out_of_logs() {
    let fx = fixture();
    let rt = Runtime::new(&fx.settings.data_dir).unwrap();
    let started = Instant::now();
    let (o, _) = run(&rt, &fx, COMMANDS, &[("mode", "sleep-granted")]);
    assert_eq!(o.status, RunStatus::Succeeded, "{:?}", o.error);
    let value = &o.steps[0].outputs[0].1;
    assert!(
        value.starts_with("denied") && value.contains("timed out"),
        "{value}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(15),
        "sleep 30 was not killed"
    );

    let (o, sink) = run(&rt, &fx, COMMANDS, &[("mode", "echo-secret")]);
    assert_eq!(o.status, RunStatus::Succeeded, "{:?}", o.error);
    let events = format!("{:?}", sink.0.lock().unwrap());
    assert!(events.contains("token is ***"), "{events}");
    assert!(!events.contains("hunter2"), "secret leaked: {events}");
}

#[test]
fn a_grant_through_a_symlink_that_leads_out_is_refused() {
    let fx = fixture();
    let rt = Runtime::new(&fx.settings.data_dir).unwrap();
    let cust = fx.root.join("customers/shop.example.com");
    std::os::unix::fs::symlink("../other-customer", cust.join("neighbour")).unwrap();
    let toml = NOOP.to_owned() + "[[steps.mounts]]\nguest = \"/n\"\npath = \"neighbour\"\n";
    let (o, _) = run(&rt, &fx, &toml, &[]);
    let err = o.error.unwrap();
    assert!(err.contains("leads outside the customer folder"), "{err}");
}

#[test]
fn plugins_list_what_they_import() {
    let fx = fixture();
    let probe = fx.catalog.get("sandbox-probe").unwrap();
    let bytes = qodify_host::engine::plugins::read_hashed(&probe.path).unwrap();
    let imports = qodify_host::engine::plugins::imports(&bytes.bytes).unwrap();
    assert!(
        imports
            .iter()
            .any(|i| i == "qodify:pipeline/commands@0.1.2"),
        "{imports:?}"
    );
    let noop =
        qodify_host::engine::plugins::read_hashed(&fx.catalog.get("noop").unwrap().path).unwrap();
    let imports = qodify_host::engine::plugins::imports(&noop.bytes).unwrap();
    assert!(
        !imports
            .iter()
            .any(|i| i.contains("commands") || i.contains("files")),
        "{imports:?}"
    );
}

/// Runs the probe in `mode` under a 10 min limit, cancels it after 500 ms, and checks that the
/// run ends cancelled within 5 s.
fn assert_cancelled_promptly(rt: &Runtime, fx: &Fixture, mode: &str) {
    let cancel = CancelToken::default();
    let trigger = cancel.clone();
    let timer = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(500));
        trigger.cancel();
    });
    let started = Instant::now();
    let slow = PROBE.replace("timeout = \"3s\"", "timeout = \"10m\"");
    let (o, _) = run_with(rt, fx, &slow, &[("mode", mode)], cancel);
    timer.join().unwrap();
    assert_eq!(
        o.status,
        RunStatus::Cancelled,
        "{mode}: {:?} {:?}",
        o.error,
        o.steps
    );
    assert_eq!(o.error.as_deref(), Some("step probe was cancelled"));
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{mode}: took {:?}",
        started.elapsed()
    );
}

#[test]
fn cancelling_a_run_stops_a_spinning_step_at_once() {
    let fx = fixture();
    let rt = Runtime::new(&fx.settings.data_dir).unwrap();
    // Warm the compile cache so the cancel lands while the step spins.
    run(&rt, &fx, PROBE, &[]);
    assert_cancelled_promptly(&rt, &fx, "loop");
}

#[test]
fn a_step_asleep_inside_a_wasi_call_is_stopped_at_its_deadline() {
    let fx = fixture();
    let rt = Runtime::new(&fx.settings.data_dir).unwrap();
    let started = Instant::now();
    let (o, _) = run(&rt, &fx, PROBE, &[("mode", "wasi-sleep")]);
    assert_eq!(o.status, RunStatus::Failed, "{:?}", o.steps);
    let err = o.error.unwrap();
    assert!(
        err.contains("step probe ran past its 3s time limit"),
        "{err}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "a 25 s sleep under a 3 s limit took {:?}",
        started.elapsed()
    );
}

#[test]
fn cancelling_a_run_stops_a_step_asleep_inside_a_wasi_call() {
    let fx = fixture();
    let rt = Runtime::new(&fx.settings.data_dir).unwrap();
    // Warm the compile cache so the cancel lands while the step sleeps.
    run(&rt, &fx, PROBE, &[]);
    assert_cancelled_promptly(&rt, &fx, "wasi-sleep");
}

/// Makes `path` a FIFO that nobody ever writes to: opening it for reading blocks forever.
fn mkfifo(path: &Path) {
    use std::os::unix::ffi::OsStrExt as _;
    let c = std::ffi::CString::new(path.as_os_str().as_bytes()).unwrap();
    // SAFETY: a valid NUL-terminated path; mkfifo only creates the file.
    let rc = unsafe { libc::mkfifo(c.as_ptr(), 0o644) };
    assert_eq!(
        rc,
        0,
        "mkfifo {}: {}",
        path.display(),
        std::io::Error::last_os_error()
    );
}

#[test]
fn a_fifo_read_through_wasi_does_not_hold_the_step_past_its_deadline() {
    let fx = fixture();
    let rt = Runtime::new(&fx.settings.data_dir).unwrap();
    mkfifo(&fx.root.join("customers/shop.example.com/data/.env"));
    let started = Instant::now();
    let (o, _) = run(&rt, &fx, PROBE, &[("mode", "read-fifo")]);
    assert_eq!(o.status, RunStatus::Failed, "{:?}", o.steps);
    let err = o.error.unwrap();
    assert!(
        err.contains("step probe ran past its 3s time limit"),
        "{err}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "took {:?}",
        started.elapsed()
    );
    // The worker is free: the same runtime runs the next step at once.
    let (o, _) = run(&rt, &fx, NOOP, &[]);
    assert_eq!(o.status, RunStatus::Succeeded, "{:?}", o.error);

    // A cancel ends it as promptly, however long the step's own limit.
    assert_cancelled_promptly(&rt, &fx, "read-fifo");
}

#[test]
fn the_files_interface_refuses_a_fifo_at_once_naming_it() {
    let fx = fixture();
    let rt = Runtime::new(&fx.settings.data_dir).unwrap();
    mkfifo(&fx.root.join("customers/shop.example.com/out/.env"));
    let started = Instant::now();
    // `set-mode` needs a writable mount: aim the probe's `path` at `/out`.
    let toml = PROBE.replace("out = \"/out\"", "out = \"/out\"\npath = \"/out/.env\"");
    let (o, _) = run(&rt, &fx, &toml, &[("mode", "files-fifo")]);
    assert_eq!(o.status, RunStatus::Succeeded, "{:?}", o.error);
    let shown = &o.steps[0].outputs[0].1;
    assert!(
        shown.starts_with("denied:") && shown.contains("/out/.env: not a regular file"),
        "{shown}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "took {:?}",
        started.elapsed()
    );
}

#[test]
fn a_run_cancelled_before_its_first_step_ends_cancelled_not_succeeded() {
    let fx = fixture();
    let rt = Runtime::new(&fx.settings.data_dir).unwrap();
    let cancel = CancelToken::default();
    cancel.cancel();
    let (o, _) = run_with(&rt, &fx, NOOP, &[], cancel);
    assert_eq!(o.status, RunStatus::Cancelled);
    assert!(o.steps.is_empty());
}

/// Content, mode and mtime of a file, to prove it was not touched.
fn fingerprint(path: &Path) -> (Vec<u8>, u32, std::time::SystemTime) {
    let md = std::fs::symlink_metadata(path).unwrap();
    (
        std::fs::read(path).unwrap(),
        md.permissions().mode(),
        md.modified().unwrap(),
    )
}

fn postgres_up() -> bool {
    let up = std::process::Command::new("pg_isready")
        .args(["-q", "-h", "127.0.0.1", "-p", "5432"])
        .status()
        .is_ok_and(|s| s.success());
    assert!(
        up || std::env::var_os("CI").is_none(),
        "CI needs PostgreSQL on 127.0.0.1:5432"
    );
    up
}

/// A hostile step plants links to another customer's `.env`, the host's state file and a canary,
/// then runs the granted program shapes of the shipped pipelines on them, with argument patterns
/// as broad as a careless pipeline could write. The host refuses arguments through links; what
/// gets past that (absolute paths, scripts) meets the Landlock domain. Nothing outside changes.
#[test]
fn granted_programs_cannot_reach_outside_the_grants_through_links_or_paths() {
    let fx = fixture();
    if !qodify_host::engine::confine::Confinement::new(Default::default()).enforced() {
        assert!(std::env::var_os("CI").is_none(), "CI needs Landlock");
        return;
    }
    let root = &fx.root;
    let env = root.join("customers/other-customer/backend/.env");
    std::fs::create_dir_all(env.parent().unwrap()).unwrap();
    std::fs::write(&env, "DATABASE_URL=postgres://shop:s3cret@db/shop\n").unwrap();
    let state = fx.settings.data_dir.join("state.sqlite");
    std::fs::create_dir_all(&fx.settings.data_dir).unwrap();
    std::fs::write(&state, "host state").unwrap();
    let canary = root.join("canary.txt");
    let targets = [&env, &state, &canary];
    let before: Vec<_> = targets.iter().map(|p| fingerprint(p)).collect();
    let (env_s, state_s, canary_s) = (
        env.display().to_string(),
        state.display().to_string(),
        canary.display().to_string(),
    );
    let other = root.join("customers/other-customer").display().to_string();
    let pg = postgres_up();
    let conn = [
        "--no-password",
        "--host=127.0.0.1",
        "--port=5432",
        "--username=postgres",
        "--dbname=postgres",
    ];
    // (argv, what the refusal must say)
    let mut cases: Vec<(Vec<String>, &str)> = Vec::new();
    let mut case = |argv: &[&str], why: &'static str| {
        cases.push((argv.iter().map(|s| s.to_string()).collect(), why));
    };
    case(&["pg_dump", "-Fc", "-f", "state"], "symbolic link");
    case(&["pg_dump", "-Fc", "--file=abs-env"], "symbolic link");
    case(&["pg_restore", "--list", "rel-env"], "symbolic link");
    case(&["psql", "-f", "canary"], "symbolic link");
    case(&["cp", "-rL", "dir-other", "stolen"], "symbolic link");
    case(
        &["tar", "-cf", "x.tar", "-C", &other, "."],
        "Permission denied",
    );
    case(&["cp", &env_s, "stolen.env"], "Permission denied");
    case(&["cp", "ok.txt", &canary_s], "Permission denied");
    case(&["sh", "-c", "cat abs-env"], "Permission denied");
    case(&["sh", "-c", "cat rel-env"], "Permission denied");
    case(&["sh", "-c", "echo pwned > state"], "Permission denied");
    case(&["sh", "-c", "echo pwned >> canary"], "Permission denied");
    case(&["pg_restore", "--list", &env_s], "Permission denied");
    if pg {
        let mut dump = vec!["pg_dump", "-Fc", "-f", &state_s];
        dump.extend(conn);
        case(&dump, "Permission denied");
        let mut psql = vec!["psql", "-X", "-f", &env_s];
        psql.extend(conn);
        case(&psql, "Permission denied");
        // Another port (Redis listens there) is closed to it: it cannot talk elsewhere.
        let mut wrong_port = vec!["psql", "-X", "-c", "SELECT 1"];
        wrong_port.extend(conn);
        wrong_port[6] = "--port=6379";
        case(&wrong_port, "Permission denied");
    }
    std::fs::write(root.join("customers/shop.example.com/out/ok.txt"), "ok").unwrap();
    let quote = |v: &[String]| {
        v.iter()
            .map(|a| format!("{a:?}"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let commands = cases
        .iter()
        .map(|(argv, _)| format!("[{}]", quote(argv)))
        .collect::<Vec<_>>()
        .join(",\n  ");
    let grant = |program: &str, net: bool| {
        format!(
            "[[steps.commands]]\nprogram = \"{program}\"\nargs = [\"*\", \"/**\", \"-*\", \"cat *\", \"echo *\"]\n{}reason = \"a careless grant\"\n",
            if net {
                "net = [\"127.0.0.1:5432\"]\n"
            } else {
                ""
            }
        )
    };
    let toml = format!(
        r#"
name = "test"
[[steps]]
id = "probe"
plugin = "sandbox-probe"
[steps.config]
mode = "native"
out = "/out"
links = [["abs-env", "{env_s}"], ["rel-env", "../../other-customer/backend/.env"], ["state", "{state_s}"], ["canary", "{canary_s}"], ["dir-other", "{other}"]]
commands = [
  {commands}
]
[[steps.mounts]]
guest = "/out"
path = "out"
access = "rw"
{}{}{}{}{}{}
[steps.limits]
timeout = "2m"
"#,
        grant("pg_dump", true),
        grant("pg_restore", true),
        grant("psql", true),
        grant("tar", false),
        grant("cp", false),
        grant("sh", false),
    );
    let (o, _) = run(&rt_for(&fx), &fx, &toml, &[]);
    assert_eq!(o.status, RunStatus::Succeeded, "{:?}", o.error);
    let outputs: std::collections::HashMap<_, _> = o.steps[0].outputs.iter().cloned().collect();
    for name in ["abs-env", "rel-env", "state", "canary", "dir-other"] {
        assert_eq!(
            outputs[&format!("link-{name}")],
            "ALLOWED:planted",
            "{name}"
        );
    }
    for (i, (argv, why)) in cases.iter().enumerate() {
        let got = &outputs[&format!("cmd-{i}")];
        assert!(
            (got.starts_with("denied:")
                || (got.starts_with("exit ") && !got.starts_with("exit 0:")))
                && got.contains(why),
            "{argv:?} was not refused for `{why}`: {got}"
        );
    }
    let after: Vec<_> = targets.iter().map(|p| fingerprint(p)).collect();
    assert_eq!(before, after, "a target outside the grants changed");
    let out = root.join("customers/shop.example.com/out");
    assert!(!out.join("stolen.env").exists() && !out.join("stolen").exists());
}

fn rt_for(fx: &Fixture) -> Runtime {
    Runtime::new(&fx.settings.data_dir).unwrap()
}

fn tool(name: &str) -> bool {
    let found = std::process::Command::new(name)
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    assert!(
        found || std::env::var_os("CI").is_none(),
        "CI needs `{name}`"
    );
    found
}

/// A real `npm ci` of a release whose dependency's `postinstall` acts like a compromised package
/// (tests/fixtures/hostile-npm): reading another customer's `.env`, writing the host user's
/// `~/.ssh/authorized_keys` and the data folder, connecting to a port nobody granted. Each is
/// denied by the Landlock domain, and the install of the release itself succeeds.
#[test]
fn a_hostile_postinstall_script_is_confined_to_the_release_it_installs() {
    let fx = fixture();
    if !qodify_host::engine::confine::Confinement::new(Default::default()).enforced() {
        assert!(std::env::var_os("CI").is_none(), "CI needs Landlock");
        return;
    }
    if !tool("npm") || !tool("node") {
        return;
    }
    let root = &fx.root;
    let fixture_dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/hostile-npm");
    let app = root.join("customers/shop.example.com/releases/v9/backend");
    std::fs::create_dir_all(&app).unwrap();
    std::fs::copy(
        fixture_dir.join("app/package.json"),
        app.join("package.json"),
    )
    .unwrap();
    // Set-up, not under test: pack the dependency and lock it, offline.
    let packed = std::process::Command::new("npm")
        .args(["pack", "--silent", "--pack-destination"])
        .arg(&app)
        .current_dir(fixture_dir.join("evil"))
        .output()
        .unwrap();
    assert!(packed.status.success(), "{packed:?}");
    let locked = std::process::Command::new("npm")
        .args([
            "install",
            "--package-lock-only",
            "--offline",
            "--no-audit",
            "--no-fund",
        ])
        .current_dir(&app)
        .output()
        .unwrap();
    assert!(locked.status.success(), "{locked:?}");

    let env = root.join("customers/other-customer/backend/.env");
    std::fs::create_dir_all(env.parent().unwrap()).unwrap();
    std::fs::write(&env, "DATABASE_URL=postgres://shop:s3cret@db/shop\n").unwrap();
    let state = fx.settings.data_dir.join("state.sqlite");
    std::fs::create_dir_all(&fx.settings.data_dir).unwrap();
    std::fs::write(&state, "host state").unwrap();
    let (env_before, state_before) = (fingerprint(&env), fingerprint(&state));
    let targets = serde_json::json!({
        "otherEnv": env,
        "dataDir": fx.settings.data_dir,
        "state": state,
        "customersRoot": root.join("customers"),
        "port": 5432,
    });
    std::fs::write(app.join("targets.json"), targets.to_string()).unwrap();

    let toml = r#"
name = "test"
[[steps]]
id = "install"
plugin = "run-commands"
[[steps.config.commands]]
label = "npm ci"
program = "npm"
args = ["ci", "--no-audit", "--no-fund"]
cwd = "/releases/v9/backend"
[[steps.mounts]]
guest = "/releases"
path = "releases"
access = "rw"
[[steps.commands]]
program = "npm"
args = ["ci", "--no-audit", "--no-fund"]
reason = "install the release's locked dependencies"
[steps.limits]
timeout = "5m"
"#;
    let (o, _) = run(&rt_for(&fx), &fx, toml, &[]);
    assert_eq!(o.status, RunStatus::Succeeded, "{:?}", o.error);
    assert!(app.join("node_modules/evil/postinstall.js").is_file());
    let results: serde_json::Value =
        serde_json::from_slice(&std::fs::read(app.join("results.json")).unwrap()).unwrap();
    for attempt in [
        "read-other-env",
        "append-other-env",
        "write-data-dir",
        "append-state",
        "ssh-authorized-keys",
        "list-customers",
        "connect",
    ] {
        assert_eq!(results[attempt], "EACCES", "{attempt}: {results}");
    }
    assert_eq!(fingerprint(&env), env_before);
    assert_eq!(fingerprint(&state), state_before);
    assert!(!fx.settings.data_dir.join("pwned").exists());
}

/// `on_success` runs only after success, `on_failure` only after a failure, `finally` after
/// both, in that order, and a failed main step stops the ones after it.
#[test]
fn finally_runs_after_success_and_after_failure() {
    let fx = fixture();
    let rt = Runtime::new(&fx.settings.data_dir).unwrap();
    let toml = r#"
name = "hooks"
[params.fail]
type = "bool"
default = false
[[steps]]
id = "good"
plugin = "noop"
when = "!fail"
[[steps]]
id = "bad"
plugin = "noop"
when = "fail"
[steps.config]
no_such_key = 1
[[steps]]
id = "after"
plugin = "noop"
[[on_success]]
id = "success"
plugin = "noop"
[[on_failure]]
id = "failure"
plugin = "noop"
[[finally]]
id = "fin"
plugin = "noop"
[finally.config]
echo = "done"
"#;
    let ran = |outcome: &RunOutcome| -> Vec<(String, &'static str)> {
        outcome
            .steps
            .iter()
            .filter(|s| s.status != "skipped")
            .map(|s| (s.id.clone(), s.status))
            .collect()
    };
    let (ok, _) = run(&rt, &fx, toml, &[]);
    assert_eq!(ok.status, RunStatus::Succeeded, "{:?}", ok.error);
    assert_eq!(
        ran(&ok),
        [
            ("good".into(), "succeeded"),
            ("after".into(), "succeeded"),
            ("success".into(), "succeeded"),
            ("fin".into(), "succeeded"),
        ]
    );
    let fin = ok.steps.iter().find(|s| s.id == "fin").unwrap();
    assert_eq!(fin.outputs, [("echo".to_owned(), "done".to_owned())]);

    let (bad, _) = run(&rt, &fx, toml, &[("fail", "true")]);
    assert_eq!(bad.status, RunStatus::Failed);
    assert_eq!(bad.failed_step.as_deref(), Some("bad"));
    assert_eq!(
        ran(&bad),
        [
            ("bad".into(), "failed"),
            ("failure".into(), "succeeded"),
            ("fin".into(), "succeeded"),
        ]
    );
}
