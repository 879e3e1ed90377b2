use std::path::{Path, PathBuf};

use super::*;

const PACKAGE: &[u8] = b"not really a tarball, only bytes to hash";

/// A catalog folder holding `packages/app.tar.gz`, and its sha256.
fn catalog_dir() -> (tempfile::TempDir, String) {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("packages")).unwrap();
    std::fs::write(dir.path().join("packages/app.tar.gz"), PACKAGE).unwrap();
    (dir, hex::encode(Sha256::digest(PACKAGE)))
}

/// A valid two-release catalog; `{sha}` is replaced by the package's sha256.
const GOOD: &str = r#"{
  "$schema": "./releases.schema.json",
  "releases": [
    {
      "version": "v1.0.0",
      "package": { "path": "packages/app.tar.gz", "sha256": "{sha}" },
      "compat": { "node": ">=18.17 <23", "postgres": ">=13, <18", "upgradeFrom": [] }
    },
    {
      "version": "v1.1.0",
      "package": { "path": "packages/app.tar.gz", "sha256": "{sha}" },
      "compat": { "node": "^20", "postgres": ">=13 <18", "upgradeFrom": ["v1.0.0"] },
      "env": { "backend": { "set": { "FEATURE_REVIEWS": "true" }, "remove": ["OLD_FLAG"] } },
      "notes": "reviews"
    }
  ]
}
"#;

fn run(text: &str) -> Vec<Diagnostic> {
    let (dir, sha) = catalog_dir();
    let text = text.replace("{sha}", &sha);
    check(Path::new("releases.json"), &text, dir.path())
}

/// Rendered diagnostics, one string each.
fn rendered(text: &str) -> Vec<String> {
    run(text).iter().map(ToString::to_string).collect()
}

#[test]
fn the_schema_compiles_and_the_shipped_catalog_passes() {
    let _ = validator();
    let shipped = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../templates/releases.json");
    if let Err(d) = check_file(&shipped) {
        panic!("templates/releases.json:\n{d}");
    }
}

#[test]
fn a_good_catalog_passes() {
    assert_eq!(rendered(GOOD), Vec::<String>::new());
}

#[test]
fn json_syntax_errors_carry_line_and_column() {
    let d = run("{\n  \"releases\": [\n    {\"version\": \"v1\",}\n  ]\n}\n");
    assert_eq!(d.len(), 1, "{d:?}");
    assert_eq!((d[0].line, d[0].col), (3, 22), "{}", d[0]);
    assert!(d[0].message.starts_with("invalid JSON: "), "{}", d[0]);
    assert!(
        d[0].to_string()
            .starts_with("releases.json:3:22: error: invalid JSON")
    );
}

#[test]
fn unknown_fields_point_at_the_key_and_list_the_allowed_ones() {
    let text = GOOD.replace("\"notes\": \"reviews\"", "\"note\": \"reviews\"");
    let d = run(&text);
    assert_eq!(d.len(), 1, "{d:?}");
    let shown = d[0].to_string();
    assert_eq!((d[0].line, d[0].col), (14, 7), "{shown}");
    assert!(
        shown.starts_with("releases.json:14:7: error: unknown field `note` in `releases[1]`"),
        "{shown}"
    );
    assert!(
        shown.contains("hint: remove it, or use one of: compat, env, notes, package, version"),
        "{shown}"
    );
    assert!(shown.contains("      ^^^^^^"), "{shown}");

    let text = GOOD.replace("\"$schema\"", "\"schema\"");
    let shown = rendered(&text).join("\n");
    assert!(
        shown.contains("unknown field `schema` at the top level"),
        "{shown}"
    );
    assert!(
        shown.contains("$schema, externalVersions, releases"),
        "{shown}"
    );
}

#[test]
fn missing_fields_are_named() {
    let text = GOOD.replace("\"node\": \"^20\", ", "");
    let shown = rendered(&text);
    assert_eq!(shown.len(), 1, "{shown:?}");
    assert!(
        shown[0].starts_with(
            "releases.json:12:17: error: missing field `node` in `releases[1].compat`"
        ),
        "{}",
        shown[0]
    );
}

#[test]
fn version_names_follow_the_schema() {
    for good in [
        "v1.1.0",
        "1.0.0",
        "v2.0.0-rc.1+build_7",
        "V",
        &"x".repeat(64),
    ] {
        assert!(super::is_version_name(good), "{good}");
    }
    for bad in [
        "",
        ".hidden",
        "v1/1",
        "v1 0",
        "..",
        "v1\n",
        "v1.0.0\u{0}",
        &"x".repeat(65),
    ] {
        assert!(!super::is_version_name(bad), "{bad:?}");
    }
}

#[test]
fn versions_hashes_and_paths_must_have_their_shape() {
    for (from, to, needle) in [
        (
            "\"v1.1.0\",",
            "\".hidden\",",
            "`.hidden` is not a release version name",
        ),
        (
            "\"v1.1.0\",",
            "\"v1/1\",",
            "`v1/1` is not a release version name",
        ),
        (
            "[\"v1.0.0\"]",
            "[\"v1 0\"]",
            "`v1 0` is not a release version name",
        ),
        (
            "\"{sha}\" },\n      \"compat\": { \"node\": \"^20\"",
            "\"ABC\" },\n      \"compat\": { \"node\": \"^20\"",
            "`ABC` is not a sha256",
        ),
        (
            "\"packages/app.tar.gz\", \"sha256\": \"{sha}\" },\n      \"compat\": { \"node\": \"^20\"",
            "\"../app.tar.gz\", \"sha256\": \"{sha}\" },\n      \"compat\": { \"node\": \"^20\"",
            "`../app.tar.gz` is not a usable package path",
        ),
        (
            "\"backend\": {",
            "\"worker\": {",
            "`worker` is not allowed as a key in `releases[1].env`",
        ),
        (
            "\"FEATURE_REVIEWS\"",
            "\"1X\"",
            "`1X` is not allowed as a key in `releases[1].env.backend.set`",
        ),
    ] {
        let text = GOOD.replacen(from, to, 1);
        assert_ne!(text, GOOD, "{from}");
        let shown = rendered(&text).join("\n");
        assert!(shown.contains(needle), "{needle}:\n{shown}");
        assert!(shown.contains("= hint: "), "{shown}");
    }
}

#[test]
fn duplicate_versions_are_refused() {
    let text = GOOD.replace("\"v1.1.0\",\n", "\"v1.0.0\",\n");
    let shown = rendered(&text);
    assert!(
        shown.iter().any(|s| s.starts_with(
            "releases.json:10:18: error: version `v1.0.0` is listed twice (first on line 5)"
        )),
        "{shown:?}"
    );
}

#[test]
fn upgrade_from_names_known_or_external_versions() {
    let text = GOOD.replace("[\"v1.0.0\"]", "[\"v0.9.0\", \"v1.1.0\"]");
    let shown = rendered(&text);
    assert_eq!(shown.len(), 2, "{shown:?}");
    assert!(
        shown[0].starts_with(
            "releases.json:12:74: error: upgradeFrom names `v0.9.0`, which is not in this catalog"
        ),
        "{}",
        shown[0]
    );
    assert!(
        shown[0].contains("known versions: v1.0.0, v1.1.0"),
        "{}",
        shown[0]
    );
    assert!(
        shown[1].contains("release `v1.1.0` lists itself in upgradeFrom"),
        "{}",
        shown[1]
    );

    let external = text
        .replace("\"v1.1.0\"]", "]")
        .replace("\"v0.9.0\", ", "\"v0.9.0\"")
        .replacen(
            "\"releases\": [",
            "\"externalVersions\": { \"v0.9.0\": \"installed by hand before the catalog\" },\n  \"releases\": [",
            1,
        );
    assert_eq!(rendered(&external), Vec::<String>::new());

    let both = external.replace("\"v0.9.0\": \"installed", "\"v1.0.0\": \"installed");
    let shown = rendered(&both).join("\n");
    assert!(
        shown.contains("`v1.0.0` is both a release of this catalog and an external version"),
        "{shown}"
    );
}

#[test]
fn ranges_must_parse_with_the_plugins_rules() {
    assert!(parse_range(">=18.17 <23").is_ok());
    assert!(parse_range(">=13, <18").is_ok());
    assert!(parse_range("^20").is_ok());
    assert!(parse_range(">= 18").is_err());
    let text = GOOD.replace("\"^20\"", "\"twenty\"");
    let shown = rendered(&text);
    assert_eq!(shown.len(), 1, "{shown:?}");
    assert!(
        shown[0].starts_with("releases.json:12:27: error: invalid version range `twenty`"),
        "{}",
        shown[0]
    );
}

#[test]
fn packages_must_exist_and_match_their_sha256() {
    let (dir, sha) = catalog_dir();
    let file = Path::new("releases.json");
    let text = GOOD.replace("{sha}", &sha);

    let missing = text.replacen("packages/app.tar.gz", "packages/gone.tar.gz", 1);
    let d = check(file, &missing, dir.path());
    assert_eq!(d.len(), 1, "{d:?}");
    assert_eq!((d[0].line, d[0].col), (6, 28));
    assert!(
        d[0].message.contains("gone.tar.gz` cannot be read"),
        "{}",
        d[0]
    );

    let other = "0".repeat(64);
    let wrong = text.replacen(&sha, &other, 1);
    let d = check(file, &wrong, dir.path());
    assert_eq!(d.len(), 1, "{d:?}");
    assert_eq!(
        d[0].message,
        format!("sha256 mismatch: releases.json says {other}, packages/app.tar.gz has {sha}")
    );
    assert_eq!((d[0].line, d[0].col), (6, 61));
    assert!(d[0].hint.as_deref().unwrap().contains(&sha));

    // A symlink that leads out of the catalog folder is unreadable to the upgrade.
    let outside = tempfile::tempdir().unwrap();
    std::fs::write(outside.path().join("real.tar.gz"), PACKAGE).unwrap();
    std::os::unix::fs::symlink(
        outside.path().join("real.tar.gz"),
        dir.path().join("packages/link.tar.gz"),
    )
    .unwrap();
    let linked = text.replacen("packages/app.tar.gz", "packages/link.tar.gz", 1);
    let d = check(file, &linked, dir.path());
    assert_eq!(d.len(), 1, "{d:?}");
    assert!(
        d[0].message.contains("outside the catalog folder"),
        "{}",
        d[0]
    );
}

#[test]
fn check_file_resolves_packages_next_to_the_catalog() {
    let (dir, sha) = catalog_dir();
    let path = dir.path().join(FILE_NAME);
    std::fs::write(&path, GOOD.replace("{sha}", &sha)).unwrap();
    check_file(&path).unwrap();
    assert!(is_catalog(&path) && !is_catalog(Path::new("other.json")));
    let err = check_file(&dir.path().join("nope/releases.json")).unwrap_err();
    assert!(
        err[0]
            .message
            .starts_with("cannot read the release catalog"),
        "{err}"
    );
}

#[test]
fn spans_find_values_and_keys_by_pointer() {
    let text = "{\"a\": [1, {\"b~/c\": \"x\\\"y\"}], \"d\": true}";
    let s = Spans::scan(text);
    assert_eq!(&text[s.value("/a/0")], "1");
    assert_eq!(&text[s.value("/a/1/b~0~1c")], "\"x\\\"y\"");
    assert_eq!(&text[s.key("/a/1/b~0~1c")], "\"b~/c\"");
    assert_eq!(&text[s.value("/d")], "true");
    assert_eq!(&text[s.value("/a/7")], &text[s.value("/a")]);
}

#[test]
fn read_gives_the_catalog_with_env_changes_and_notes_or_none_without_one() {
    let (dir, sha) = catalog_dir();
    assert!(read(dir.path()).unwrap().is_none());
    std::fs::write(dir.path().join(FILE_NAME), GOOD.replace("{sha}", &sha)).unwrap();
    let catalog = read(dir.path()).unwrap().unwrap();
    let versions: Vec<&str> = catalog
        .releases
        .iter()
        .map(|r| r.version.as_str())
        .collect();
    assert_eq!(versions, ["v1.0.0", "v1.1.0"]);
    let v110 = &catalog.releases[1];
    assert_eq!(v110.notes.as_deref(), Some("reviews"));
    assert_eq!(v110.compat.upgrade_from, ["v1.0.0"]);
    assert_eq!(v110.env["backend"].set["FEATURE_REVIEWS"], "true");
    assert_eq!(v110.env["backend"].remove, ["OLD_FLAG"]);
    // What the upgrade rule reads of it.
    let entries = catalog.upgrade_entries();
    assert_eq!(release_rules::check(&entries, "v1.0.0", "v1.1.0"), Ok(1));

    std::fs::write(dir.path().join(FILE_NAME), "{\"releases\": 3}").unwrap();
    let err = read(dir.path()).unwrap_err().to_string();
    assert!(
        err.contains("releases.json") && err.ends_with("check it with `qodify-host validate`"),
        "{err}"
    );
}

#[test]
fn versions_compare_as_versions() {
    let mut v = vec![
        "v1.10.0",
        "v1.9.0",
        "2",
        "nightly",
        "1.1",
        "v1.9.0-rc1",
        "alpha",
    ];
    v.sort_by(|a, b| compare_versions(a, b));
    assert_eq!(
        v,
        [
            "alpha",
            "nightly",
            "1.1",
            "v1.9.0-rc1",
            "v1.9.0",
            "v1.10.0",
            "2"
        ]
    );
}
