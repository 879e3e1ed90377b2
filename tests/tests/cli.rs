//! The CLI end to end, without PostgreSQL: `plan` shows what a run would do (grants resolved
//! against the customer as found on disk, in either layout) and runs nothing; settings come
//! from the file `QODIFY_CONFIG` names and `serve` listens where `QODIFY_LISTEN` says; `run`
//! refuses a customer of another node.

mod common;

use std::io::{BufRead as _, BufReader};
use std::process::Stdio;

use common::*;

const DOMAIN: &str = "shop.example.com";
const URL: &str = "postgres://shop:secret@127.0.0.1:5433/shop_db";

#[test]
fn plan_shows_each_grant_against_the_customer_on_disk_and_runs_nothing() {
    let host = Host::new();
    let dir = host.customer(DOMAIN);
    write(&dir.join("backend/package.json"), r#"{"version":"1.0.0"}"#);
    write(&dir.join("backend/.env"), format!("DATABASE_URL={URL}\n"));
    write(&dir.join("backend/uploads/a.jpg"), "a");

    let out = run(host.cmd().args(["plan", "backup", "--customer", DOMAIN]));
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains(&format!("pipeline backup for {DOMAIN}")),
        "{text}"
    );
    assert!(
        text.contains("commands: granted programs run confined"),
        "{text}"
    );
    // The database grant is fixed to the customer's own database, read by the host.
    assert!(
        text.contains("--host=127.0.0.1 --port=5433 --username=shop --dbname=shop_db"),
        "{text}"
    );
    assert!(!text.contains("secret"), "the password shows: {text}");
    assert!(
        text.contains("mount /src <- customer:backend/ (read-only"),
        "{text}"
    );
    assert!(
        text.contains("mount /src <- customer:backend/uploads/"),
        "{text}"
    );
    assert!(text.contains("limits memory"), "{text}");
    // Nothing ran: no backup folder, no lock taken for good, no run folder.
    assert!(!dir.join("backups").exists());

    // The same customer moved to a release the installer set up directly.
    std::fs::create_dir_all(dir.join("releases")).unwrap();
    std::fs::rename(dir.join("backend"), dir.join("releases/1.4.0-backend-tmp")).unwrap();
    std::fs::create_dir_all(dir.join("releases/1.4.0")).unwrap();
    std::fs::rename(
        dir.join("releases/1.4.0-backend-tmp"),
        dir.join("releases/1.4.0/backend"),
    )
    .unwrap();
    std::os::unix::fs::symlink("releases/1.4.0", dir.join("current")).unwrap();
    let out = run(host
        .cmd()
        .args(["plan", "backup", "--customer", DOMAIN, "--json"]));
    assert!(out.status.success());
    let plan: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let mounts: Vec<&str> = plan["stages"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|s| s["steps"].as_array().unwrap())
        .flat_map(|s| s["mounts"].as_array().unwrap())
        .filter_map(|m| m["path"].as_str())
        .collect();
    assert!(mounts.contains(&"releases/1.4.0/backend"), "{mounts:?}");
    assert!(
        mounts.contains(&"releases/1.4.0/backend/uploads"),
        "{mounts:?}"
    );
    assert!(!mounts.contains(&"backend"), "{mounts:?}");

    // A bad param is refused with the param named; exit 2.
    let out = run(host.cmd().args([
        "plan",
        "backup",
        "--customer",
        DOMAIN,
        "--param",
        "type=weekly",
    ]));
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("weekly"));
}

#[test]
fn settings_come_from_the_file_qodify_config_names_and_serve_listens_on_qodify_listen() {
    let host = Host::new();
    // Folders only the settings file names (the environment's are removed below).
    let elsewhere = host.tmp.path().join("elsewhere");
    let customers = elsewhere.join("customers");
    write(
        &customers.join(DOMAIN).join("backend/.env"),
        format!("DATABASE_URL={URL}\n"),
    );
    let config = elsewhere.join("etc/qodify-host.toml");
    write(
        &config,
        "customers_root = \"../customers\"\ndata_dir = \"../data\"\nlisten = \"127.0.0.1:1\"\n",
    );

    let out = run(host
        .cmd()
        .env_remove("QODIFY_CUSTOMERS_ROOT")
        .env_remove("QODIFY_DATA_DIR")
        .env("QODIFY_CONFIG", &config)
        .args(["plan", "backup", "--customer", DOMAIN]));
    assert!(out.status.success(), "the settings file was not used");
    let text = String::from_utf8_lossy(&out.stdout);
    // "pipeline backup for <domain> (<its folder>)"
    let shown = text
        .lines()
        .next()
        .and_then(|l| l.split_once(" ("))
        .map(|(_, rest)| rest.trim_end_matches(')'))
        .unwrap_or_default();
    assert_eq!(
        std::fs::canonicalize(shown).ok(),
        std::fs::canonicalize(customers.join(DOMAIN)).ok(),
        "relative paths in the file are relative to its folder: {text}"
    );

    // QODIFY_LISTEN wins over the file's `listen`.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut child = host
        .cmd()
        .env_remove("QODIFY_CUSTOMERS_ROOT")
        .env_remove("QODIFY_DATA_DIR")
        .env("QODIFY_CONFIG", &config)
        .env("QODIFY_LISTEN", format!("127.0.0.1:{port}"))
        .env("QODIFY_API_TOKEN", "t")
        .arg("serve")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let _ = child.kill();
    let _ = child.wait();
    assert_eq!(line.trim(), format!("listening on http://127.0.0.1:{port}"));
    assert!(
        elsewhere.join("data/state.sqlite").is_file(),
        "serve did not use the file's data_dir"
    );

    // An unknown key in the file is an error that names it.
    write(
        &config,
        "customers_root = \"../customers\"\nlisten_on = \"x\"\n",
    );
    let out = run(host.cmd().env("QODIFY_CONFIG", &config).args([
        "plan",
        "backup",
        "--customer",
        DOMAIN,
    ]));
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("listen_on"));
}

#[test]
fn run_refuses_a_customer_of_another_node_naming_the_node() {
    let host = Host::new();
    let dir = host.customer(DOMAIN);
    write(&dir.join("backend/package.json"), r#"{"version":"1.0.0"}"#);
    write(&dir.join("backend/.env"), format!("DATABASE_URL={URL}\n"));
    // Registered through `serve` on node web-2, and given to it.
    {
        let mut cmd = host.cmd();
        cmd.env("QODIFY_NODE", "web-2");
        let s = serve_cmd(cmd, "t", &[]);
        let (code, body) = json_of(
            api("t", "PUT", &format!("{}/api/customers/42", s.base))
                .send_json(serde_json::json!({ "domain": DOMAIN, "node": "web-2" })),
        );
        assert_eq!(code, 200, "{body}");
        assert_eq!(body["node"], "web-2", "{body}");
    }

    let out =
        run(host
            .cmd()
            .env("QODIFY_NODE", "web-1")
            .args(["run", "backup", "--customer", DOMAIN]));
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(
            "customer 42 (shop.example.com) belongs to node web-2, not to this host's node web-1"
        ),
        "{err}"
    );
    assert!(err.contains("run it on web-2"), "{err}");
    assert!(
        err.contains(r#"PUT /api/customers/42 {"node": "web-1"}"#),
        "{err}"
    );
    // Nothing ran, nothing was recorded.
    assert!(!dir.join("backups").exists());
    let mut cmd = host.cmd();
    cmd.env("QODIFY_NODE", "web-2");
    let s = serve_cmd(cmd, "t", &[]);
    let (code, runs) = json_of(api("t", "GET", &format!("{}/api/runs", s.base)).call());
    assert_eq!(code, 200, "{runs}");
    assert_eq!(runs["runs"], serde_json::json!([]), "{runs}");
}
