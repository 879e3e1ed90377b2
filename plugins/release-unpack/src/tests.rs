//! Native tests: the unpack runs on the SDK's `StdFs` standing in for the host (renames can be
//! made to fail) and a native context that keeps the step's logs and progress, with packages
//! built here and a real upgrade journal.

use std::fs as stdfs;
use std::io::Write as _;
use std::os::unix::fs::MetadataExt as _;
use std::path::Path;

use flate2::Compression;
use flate2::write::GzEncoder;
use qodify_plugin_sdk::fs::StdFs;
use qodify_plugin_sdk::{Error, ErrorKind, LogLevel};
use sha2::{Digest as _, Sha256};
use upgrade_kit::journal::{DbPolicy, Migrate};
use upgrade_kit::marker::Status;

use super::install::*;
use super::*;

fn ctx() -> Context {
    Context::builder().build()
}

/// A tar entry: name, then `Some(content)` for a file or `None` for a folder.
type Entry<'a> = (&'a [u8], Option<&'a [u8]>);

fn package(path: &Path, entries: &[Entry<'_>]) -> String {
    let mut tar = tar::Builder::new(GzEncoder::new(Vec::new(), Compression::fast()));
    for (name, content) in entries {
        let mut h = tar::Header::new_gnu();
        h.as_gnu_mut().unwrap().name[..name.len()].copy_from_slice(name);
        match content {
            Some(data) => {
                h.set_entry_type(tar::EntryType::Regular);
                h.set_mode(0o644);
                h.set_size(data.len() as u64);
                h.set_cksum();
                tar.append(&h, *data).unwrap();
            }
            None => {
                h.set_entry_type(tar::EntryType::Directory);
                h.set_mode(0o755);
                h.set_size(0);
                h.set_cksum();
                tar.append(&h, &[][..]).unwrap();
            }
        }
    }
    let bytes = tar.into_inner().unwrap().finish().unwrap();
    stdfs::File::create(path)
        .unwrap()
        .write_all(&bytes)
        .unwrap();
    hex::encode(Sha256::digest(&bytes))
}

const GOOD: &[Entry<'static>] = &[
    (b"backend/", None),
    (b"backend/package.json", Some(b"{\"version\":\"1.1.0\"}")),
    (b"backend/migrations/002.sql", Some(b"select 1;")),
    (b"admin/", None),
    (b"admin/server.js", Some(b"// admin")),
    (b"store/server.js", Some(b"// store")),
];

/// The journal release-check writes for run `run-1`, from v1.0.0 to v1.1.0.
fn upgrade_journal() -> Journal {
    Journal {
        run: "run-1".into(),
        from: "v1.0.0".into(),
        to: "v1.1.0".into(),
        backup: None,
        db_policy: DbPolicy::Restore,
        unpacked: false,
        migrate: Migrate::None,
        swapped: false,
        started: "20261126-101500".into(),
    }
}

/// A customer folder `c/` with `releases/v1.0.0` and the journal of an upgrade to v1.1.0, and a
/// catalog folder `cat/`.
struct World {
    tmp: tempfile::TempDir,
}

impl World {
    fn new() -> World {
        let tmp = tempfile::tempdir().unwrap();
        stdfs::create_dir_all(tmp.path().join("c/releases/v1.0.0/backend")).unwrap();
        stdfs::create_dir_all(tmp.path().join("cat/packages")).unwrap();
        let w = World { tmp };
        upgrade_journal()
            .write(&StdFs::new(), &w.path("c/releases"))
            .unwrap();
        w
    }

    /// The upgrade journal as the unpack left it.
    fn journal(&self) -> Journal {
        Journal::read(&self.path("c/releases")).unwrap().unwrap()
    }

    fn path(&self, rel: &str) -> String {
        self.tmp.path().join(rel).to_str().unwrap().to_owned()
    }

    fn plan(&self) -> Plan {
        let config: Config = serde_json::from_value(serde_json::json!({
            "version": "v1.1.0",
            "catalog": self.path("cat/releases.json"),
            "catalog_dir": self.path("cat"),
            "releases": self.path("c/releases"),
        }))
        .unwrap();
        Plan::new(config, "run-1").unwrap()
    }

    fn marker(&self) -> Marker {
        Marker {
            version: "v1.1.0".into(),
            status: Status::Installing,
            from: Some("v1.0.0".into()),
            run: "run-1".into(),
            at: "20261126-101500".into(),
            pre_upgrade_backup: Some("20261126-101500".into()),
        }
    }

    /// Runs inspect + install the way the plugin does.
    fn unpack(&self, fs: &StdFs, ctx: &Context, package: &str) -> Result<Done, Error> {
        let plan = self.plan();
        let existing = inspect(fs, ctx, &plan, &["v1.0.0".to_owned()])?;
        install(
            fs,
            ctx,
            &Install {
                plan: &plan,
                package,
                marker: &self.marker(),
                existing,
            },
        )
    }

    fn exists(&self, rel: &str) -> bool {
        stdfs::symlink_metadata(self.path(rel)).is_ok()
    }

    /// Names in `c/releases`, sorted.
    fn releases(&self) -> Vec<String> {
        let mut names: Vec<String> = stdfs::read_dir(self.path("c/releases"))
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        names.sort();
        names
    }
}

fn plan_of(json: serde_json::Value) -> Result<Plan, Error> {
    let config: Config = qodify_plugin_sdk::__private::parse_config(&json.to_string())?;
    Plan::new(config, "run-9")
}

#[test]
fn config_defaults_and_checks() {
    let p = plan_of(serde_json::json!({"version": "v1.1.0"})).unwrap();
    assert_eq!(p.catalog, "/releases/releases.json");
    assert_eq!(p.catalog_dir, "/releases");
    assert_eq!(p.releases, "/customer/releases");
    assert_eq!(p.staging, "/customer/releases/.staging-run-9");
    assert_eq!(p.target, "/customer/releases/v1.1.0");
    assert_eq!(p.limits.max_entries, 2_000_000);
    let p =
        plan_of(serde_json::json!({"version": "v2", "staging": "/customer/releases/.x/"})).unwrap();
    assert_eq!(p.staging, "/customer/releases/.x");

    for (json, needle) in [
        (serde_json::json!({"version": ""}), "version is empty"),
        (
            serde_json::json!({"version": ".hidden"}),
            "not a release version name",
        ),
        (
            serde_json::json!({"version": "a/b"}),
            "not a release version name",
        ),
        (
            serde_json::json!({"version": "v1", "staging": "/customer/.staging-x"}),
            "directly in",
        ),
        (
            serde_json::json!({"version": "v1", "staging": "/customer/releases/staging"}),
            "directly in",
        ),
        (
            serde_json::json!({"version": "v1", "staging": "/customer/releases/.a/b"}),
            "directly in",
        ),
        (
            serde_json::json!({"version": "v1", "staging": "/customer/releases"}),
            "directly in",
        ),
        (
            serde_json::json!({"version": "v1", "releases": "/"}),
            "releases/ folder",
        ),
        (
            serde_json::json!({"version": "v1", "catalog": "x.json"}),
            "absolute",
        ),
        (
            serde_json::json!({"version": "v1", "max_entries": 0}),
            "max_entries is 0",
        ),
        (
            serde_json::json!({"version": "v1", "target": "x"}),
            "target",
        ),
    ] {
        let err = plan_of(json.clone()).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::InvalidConfig, "{json}");
        assert!(err.message().contains(needle), "{json}: {err}");
    }
}

#[test]
fn package_paths_stay_in_the_catalog_folder() {
    let p = plan_of(serde_json::json!({"version": "v1.1.0"})).unwrap();
    assert_eq!(
        p.package_path("packages/a.tar.gz").unwrap(),
        "/releases/packages/a.tar.gz"
    );
    for bad in [
        "",
        "/etc/x.tar.gz",
        "../x.tar.gz",
        "a/../../x",
        "a//b",
        "./a",
    ] {
        let err = p.package_path(bad).unwrap_err();
        assert!(err.message().contains("not a plain path"), "{bad}: {err}");
    }
}

#[test]
fn the_journal_must_be_this_runs_and_name_this_version() {
    let j = upgrade_journal();
    assert_eq!(
        check_journal(Some(j.clone()), "run-1", "v1.1.0").unwrap(),
        j
    );
    let err = check_journal(None, "run-1", "v1.1.0").unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NotFound);
    assert!(err.message().contains("after release-check"), "{err}");
    let err = check_journal(Some(j.clone()), "run-2", "v1.1.0").unwrap_err();
    assert!(
        err.message()
            .starts_with("the upgrade journal belongs to run run-1"),
        "{err}"
    );
    let err = check_journal(Some(j), "run-1", "v2").unwrap_err();
    assert!(
        err.message().starts_with("this upgrade goes to v1.1.0"),
        "{err}"
    );
}

#[test]
fn existing_release_folders_are_replaced_unless_live() {
    let live = ["v1.0.0".to_owned()];
    assert_eq!(
        decide("v1.1.0", false, None, &live).unwrap(),
        Existing::Absent
    );
    assert_eq!(
        decide("v1.1.0", true, None, &live).unwrap(),
        Existing::Leftover
    );
    assert_eq!(
        decide("v1.1.0", true, Some(Status::Installing), &live).unwrap(),
        Existing::Leftover
    );
    assert_eq!(
        decide("v1.1.0", true, Some(Status::Failed), &live).unwrap(),
        Existing::Leftover
    );
    assert_eq!(
        decide("v1.1.0", true, Some(Status::Succeeded), &live).unwrap(),
        Existing::OlderRelease
    );
    let err = decide("v1.0.0", true, Some(Status::Succeeded), &live).unwrap_err();
    assert!(
        err.message()
            .starts_with("releases/v1.0.0 is the live release"),
        "{err}"
    );
}

#[test]
fn the_package_is_hashed_before_anything_is_unpacked() {
    let w = World::new();
    let pkg = w.path("cat/packages/v1.1.0.tar.gz");
    let sha = package(Path::new(&pkg), GOOD);
    let ctx = ctx();
    let (size, got) = verify_package(&ctx, &pkg, &sha).unwrap();
    assert_eq!(
        (size, got.as_str()),
        (stdfs::metadata(&pkg).unwrap().len(), sha.as_str())
    );

    let other = "f".repeat(64);
    let err = verify_package(&ctx, &pkg, &other).unwrap_err();
    assert!(
        err.message().starts_with(&format!(
            "sha256 mismatch for {pkg}: the catalog says {other}, the file has {sha}"
        )),
        "{err}"
    );
    let err = verify_package(&ctx, &w.path("cat/packages/none.tar.gz"), &sha).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NotFound);
}

#[test]
fn a_package_becomes_a_release_folder_with_marker_and_uploads_link() {
    let w = World::new();
    let pkg = w.path("cat/packages/v1.1.0.tar.gz");
    package(Path::new(&pkg), GOOD);
    let ctx = ctx();
    let done = w.unpack(&StdFs::new(), &ctx, &pkg).unwrap();
    assert_eq!((done.files, done.bytes), (4, 44));
    assert!(w.journal().unpacked);
    assert_eq!(w.releases(), [".upgrade.json", "v1.0.0", "v1.1.0"]);
    assert_eq!(
        stdfs::read_to_string(w.path("c/releases/v1.1.0/backend/migrations/002.sql")).unwrap(),
        "select 1;"
    );
    assert_eq!(
        stdfs::read_link(w.path("c/releases/v1.1.0/backend/uploads")).unwrap(),
        Path::new("../../../shared/uploads")
    );
    let marker = Marker::read(&w.path("c/releases/v1.1.0")).unwrap().unwrap();
    assert_eq!(marker, w.marker());
    for dir in ["", "backend", "backend/migrations", "store"] {
        let mode = stdfs::metadata(w.path(&format!("c/releases/v1.1.0/{dir}")))
            .unwrap()
            .mode();
        assert_eq!(mode & 0o777, 0o755, "{dir}");
    }
    assert!(ctx.logged(LogLevel::Warn).is_empty());
    // The extractor speaks of unpacking a release, not of a restore, and fills its stretch of
    // the step's progress, between hashing and finishing.
    let progress = ctx.reported();
    let extracting: Vec<&(f32, String)> = progress
        .iter()
        .filter(|(_, line)| line.starts_with("unpacking v1.1.0 (v1.1.0.tar.gz): "))
        .collect();
    assert!(extracting.len() >= 2, "{progress:?}");
    assert_eq!(extracting.first().unwrap().0, EXTRACT_FROM);
    assert_eq!(extracting.last().unwrap().0, EXTRACT_TO);
    assert!(
        progress.iter().all(|(_, line)| !line.contains("restor")),
        "{progress:?}"
    );
    assert_eq!(
        progress.last().unwrap(),
        &(100.0, "v1.1.0 unpacked".to_owned())
    );
}

#[test]
fn leftovers_and_older_installs_are_replaced() {
    for (marker, warning) in [
        (None, "leftover of a failed attempt (marker: none)"),
        (
            Some(Status::Failed),
            "leftover of a failed attempt (marker: failed)",
        ),
        (Some(Status::Succeeded), "older install of v1.1.0"),
    ] {
        let w = World::new();
        let pkg = w.path("cat/packages/v1.1.0.tar.gz");
        package(Path::new(&pkg), GOOD);
        stdfs::create_dir_all(w.path("c/releases/v1.1.0/backend")).unwrap();
        stdfs::write(w.path("c/releases/v1.1.0/backend/junk"), "old").unwrap();
        if let Some(status) = marker {
            Marker {
                status,
                ..w.marker()
            }
            .write(&w.path("c/releases/v1.1.0"))
            .unwrap();
        }
        let ctx = ctx();
        w.unpack(&StdFs::new(), &ctx, &pkg).unwrap();
        assert!(!w.exists("c/releases/v1.1.0/backend/junk"));
        assert!(w.exists("c/releases/v1.1.0/backend/package.json"));
        assert_eq!(
            w.releases(),
            [".upgrade.json", "v1.0.0", "v1.1.0"],
            "aside folder removed"
        );
        let warnings = ctx.logged(LogLevel::Warn).join("\n");
        assert!(warnings.contains(warning), "{warnings}");
    }
}

#[test]
fn the_live_release_is_never_unpacked_over() {
    let w = World::new();
    let pkg = w.path("cat/packages/v1.1.0.tar.gz");
    package(Path::new(&pkg), GOOD);
    let plan = w.plan();
    let err = inspect(&StdFs::new(), &ctx(), &plan, &["v1.1.0".to_owned()]).unwrap_err();
    assert!(err.message().contains("is the live release"), "{err}");
}

#[test]
fn bad_packages_leave_nothing_behind() {
    let missing_store: &[Entry<'_>] = &[(b"backend/a", Some(b"1")), (b"admin/b", Some(b"2"))];
    let uploads: &[Entry<'_>] = &[
        (b"backend/uploads/x.png", Some(b"1")),
        (b"admin/b", Some(b"2")),
        (b"store/c", Some(b"3")),
    ];
    let escape: &[Entry<'_>] = &[(b"backend/a", Some(b"1")), (b"../evil", Some(b"2"))];
    for (entries, needle) in [
        (
            missing_store,
            "has no store/ folder at its top (its top holds: admin, backend)",
        ),
        (uploads, "carries backend/uploads"),
        (
            escape,
            "archive {pkg} was rejected and nothing was unpacked: entry `../evil` has a `..` \
             component, which would leave the release folder; rebuild the release package, or \
             inspect it by hand",
        ),
    ] {
        let w = World::new();
        let pkg = w.path("cat/packages/v1.1.0.tar.gz");
        package(Path::new(&pkg), entries);
        // An older install sits there: it must survive a failed unpack.
        stdfs::create_dir_all(w.path("c/releases/v1.1.0/backend")).unwrap();
        let err = w.unpack(&StdFs::new(), &ctx(), &pkg).unwrap_err();
        let needle = needle.replace("{pkg}", &pkg);
        assert!(err.message().contains(&needle), "{needle}: {err}");
        assert!(!err.message().contains("restor"), "{err}");
        assert_eq!(
            w.releases(),
            [".upgrade.json", "v1.0.0", "v1.1.0"],
            "{needle}: staging removed"
        );
        assert!(w.exists("c/releases/v1.1.0/backend"));
        assert!(!w.journal().unpacked, "{needle}: journal untouched");
    }
}

#[test]
fn a_failed_rename_puts_the_old_folder_back() {
    let w = World::new();
    let pkg = w.path("cat/packages/v1.1.0.tar.gz");
    package(Path::new(&pkg), GOOD);
    stdfs::create_dir_all(w.path("c/releases/v1.1.0/backend")).unwrap();
    stdfs::write(w.path("c/releases/v1.1.0/backend/junk"), "old").unwrap();
    let fs = StdFs::failing_renames(|_, to| to.ends_with("/v1.1.0"));
    let ctx = ctx();
    let err = w.unpack(&fs, &ctx, &pkg).unwrap_err();
    assert!(err.message().contains("injected failure"), "{err}");
    // The put-back rename fails too (same destination): the old folder waits aside, named.
    let warnings = ctx.logged(LogLevel::Warn).join("\n");
    assert!(warnings.contains("could not put"), "{warnings}");

    let w = World::new();
    let pkg = w.path("cat/packages/v1.1.0.tar.gz");
    package(Path::new(&pkg), GOOD);
    let err = w.unpack(&fs, &ctx, &pkg).unwrap_err();
    assert!(
        err.message().contains("moving the unpacked release into"),
        "{err}"
    );
    assert_eq!(w.releases(), [".upgrade.json", "v1.0.0"], "staging removed");
}

#[test]
fn stale_staging_folders_are_removed_first() {
    let w = World::new();
    for dir in [
        ".staging-run-0/backend",
        ".staging-run-0.old",
        ".keep",
        "v0.9.0",
    ] {
        stdfs::create_dir_all(w.path(&format!("c/releases/{dir}"))).unwrap();
    }
    let ctx = ctx();
    remove_stale_staging(&StdFs::new(), &ctx, &w.plan()).unwrap();
    assert_eq!(w.releases(), [".keep", ".upgrade.json", "v0.9.0", "v1.0.0"]);
    assert_eq!(ctx.logged(LogLevel::Info).len(), 2);
}
