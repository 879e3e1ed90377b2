//! Schemathesis (PyPI) against the live `qodify-host serve`: it reads `/openapi.json`, generates
//! valid and invalid requests for every operation, and checks that no answer is a server error
//! and that every status code, content type, header and JSON body is the one the document
//! describes. Without Schemathesis the test is skipped, except under CI (`CI` set), where it
//! fails: `.ci/run` installs it and sets `QODIFY_SCHEMATHESIS`.

mod common;

use std::path::PathBuf;
use std::process::Command;
use std::time::Instant;

use common::*;
use sha2::{Digest as _, Sha256};

const TOKEN: &str = "schemathesis-token";
const CUSTOMER: &str = "42";
const DOMAIN: &str = "shop.example.com";
const BACKUP: &str = "20260101-120000";

/// `QODIFY_SCHEMATHESIS`, else `schemathesis` on `PATH`.
fn schemathesis() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("QODIFY_SCHEMATHESIS").filter(|p| !p.is_empty()) {
        return Some(p.into());
    }
    std::env::split_paths(&std::env::var_os("PATH")?)
        .map(|d| d.join("schemathesis"))
        .find(|p| p.is_file())
}

/// Half of the generated ids are the customer's and its backup's, so requests get past the 404s
/// to the handlers' real work; the other half are whatever Schemathesis makes up.
fn config() -> String {
    format!(
        r#"max-stream-events = 50

[dictionaries.customer]
values = ["{CUSTOMER}"]
[dictionaries.backup]
values = ["{BACKUP}"]
[dictionaries.domain]
values = ["{DOMAIN}"]
[dictionaries.file]
values = ["db.dump", "backup.json"]

[parameters]
"path.id" = {{ dictionary = "customer", probability = 0.5 }}
"query.customer" = {{ dictionary = "customer", probability = 0.5 }}
"path.backupId" = {{ dictionary = "backup", probability = 0.5 }}
"body.backup" = {{ dictionary = "backup", probability = 0.5 }}
"body.domain" = {{ dictionary = "domain", probability = 0.5 }}
"query.file" = {{ dictionary = "file", probability = 0.5 }}
"body.file" = {{ dictionary = "file", probability = 0.5 }}
"#
    )
}

#[test]
fn schemathesis_finds_no_server_error_and_no_answer_the_document_does_not_describe() {
    let Some(st) = schemathesis() else {
        assert!(
            std::env::var_os("CI").is_none_or(|v| v.is_empty()),
            "schemathesis is not installed: `python3 -m pip install 'schemathesis==4.*'` (as \
             .ci/run does) and put it on PATH or in QODIFY_SCHEMATHESIS"
        );
        eprintln!("skipped: schemathesis is not installed (pip install 'schemathesis==4.*')");
        return;
    };

    // A customer with one complete backup, pinned so that DELETE answers 409 and the downloads
    // and restores keep something to work on.
    let host = Host::new();
    let backup = host.customer(DOMAIN).join("backups").join(BACKUP);
    let data = b"pretend pg_dump output";
    write(&backup.join("db.dump"), data);
    let manifest = serde_json::json!({
        "formatVersion": 1,
        "id": BACKUP,
        "artifacts": [{
            "name": "db",
            "file": "db.dump",
            "size": data.len(),
            "sha256": hex::encode(Sha256::digest(data)),
        }],
    });
    write(&backup.join("backup.json"), manifest.to_string());
    write(
        &host.customer(DOMAIN).join("backups/.pins").join(BACKUP),
        "schemathesis fixture",
    );

    let server = host.serve(TOKEN, &[]);
    let registered = ureq::put(&format!("{}/api/customers/{CUSTOMER}", server.base))
        .set("Authorization", &format!("Bearer {TOKEN}"))
        .send_json(serde_json::json!({ "domain": DOMAIN }));
    assert!(registered.is_ok(), "{registered:?}");

    let work = host.tmp.path().join("schemathesis");
    std::fs::create_dir_all(&work).unwrap();
    let config_file = work.join("schemathesis.toml");
    std::fs::write(&config_file, config()).unwrap();
    let seed = std::env::var("QODIFY_SCHEMATHESIS_SEED").unwrap_or_else(|_| "1".into());
    let started = Instant::now();
    let out = Command::new(&st)
        .current_dir(&work)
        .arg("--config-file")
        .arg(&config_file)
        .args(["run", &format!("{}/openapi.json", server.base)])
        .args(["--header", &format!("Authorization: Bearer {TOKEN}")])
        .args([
            "--checks",
            "not_a_server_error,status_code_conformance,content_type_conformance,\
             response_headers_conformance,response_schema_conformance",
        ])
        .args(["--max-examples", "30", "--seed", &seed])
        .args(["--request-timeout", "10", "--generation-database", "none"])
        .arg("--no-color")
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    eprintln!("{text}\nschemathesis took {:?}", started.elapsed());
    assert!(
        out.status.success(),
        "schemathesis found problems (above; seed {seed}, reproduce with the printed curl)"
    );
}
