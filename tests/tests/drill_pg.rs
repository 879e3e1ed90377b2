//! Restore drills on a real PostgreSQL server with the real `pg_restore`, `createdb` and
//! `dropdb`, through the real binary: a good backup is stamped restorable (and `/metrics` shows
//! the age of the last good drill), a truncated dump and an archive missing a file are stamped
//! not restorable with the reason, and no scratch database or folder outlives a drill, also
//! when the CLI or `serve` is killed with SIGKILL in the middle of `pg_restore`. A shop whose
//! own database role is no superuser and may not create databases is drilled like any other.

mod common;
mod pg;

use std::path::{Path, PathBuf};
use std::process::{Output, Stdio};
use std::time::{Duration, Instant};

use common::*;
use pg::{TestDb, psql};

const DOMAIN: &str = "shop.example.com";

/// A customer whose backend's `.env` names `db`, with uploads of `upload_bytes` in 4 files.
fn customer(host: &Host, db: &TestDb, upload_bytes: usize) -> PathBuf {
    let uploads: Vec<_> = (0..4)
        .map(|i| (format!("p{i}.jpg"), noise(upload_bytes / 4, i as u64)))
        .collect();
    plain_shop(&host.customer(DOMAIN), &db.url("pw"), &uploads)
}

/// `serve`, with the customer registered as 42 (so runs and drills are recorded).
fn serve(host: &Host, token: &str) -> Server {
    let s = host.serve(token, &[]);
    let (code, body) = json_of(
        api(token, "PUT", &format!("{}/api/customers/42", s.base))
            .send_json(serde_json::json!({"domain": DOMAIN})),
    );
    assert!(code == 200 || code == 201, "{code} {body}");
    s
}

fn take_backup(host: &Host) -> String {
    let out = run(host
        .cmd()
        .args(["run", "backup", "--customer", DOMAIN, "--json"]));
    assert!(out.status.success(), "backup failed");
    run_result(&out)["backup"].as_str().unwrap().to_owned()
}

fn drill(host: &Host, params: &[&str]) -> Output {
    let mut c = host.cmd();
    c.args(["run", "drill", "--customer", DOMAIN, "--json"]);
    for p in params {
        c.args(["--param", p]);
    }
    run(&mut c)
}

/// The scratch databases of drill run `run_id` on the server (other tests drill at the same
/// time: each looks at its own runs).
fn scratch_dbs(run_id: &str) -> Vec<String> {
    psql(
        "postgres",
        &format!(
            "SELECT datname FROM pg_database WHERE datname LIKE 'qodify\\_drill\\_%' \
             AND datname = 'qodify_drill_{run_id}'"
        ),
    )
    .lines()
    .map(str::to_owned)
    .collect()
}

/// The run id of a `run --json` output.
fn run_id(out: &Output) -> String {
    run_result(out)["run_id"].as_str().unwrap().to_owned()
}

/// What is left in the data folder's `runs/` (each run's work folder, the drill's scratch
/// folder inside it).
fn run_folders(host: &Host) -> Vec<String> {
    std::fs::read_dir(host.tmp.path().join("data/runs"))
        .map(|rd| {
            rd.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default()
}

/// The history line of backup `id`, as the API shows it.
fn history_line(s: &Server, token: &str, id: &str) -> serde_json::Value {
    let history = get_ok(s, token, "/api/customers/42/backups");
    history["backups"]
        .as_array()
        .unwrap()
        .iter()
        .find(|b| b["backupId"] == id)
        .unwrap_or_else(|| panic!("no history line for {id}: {history}"))
        .clone()
}

/// The value of `qodify_drill_last_good_age_seconds` for customer 42.
fn good_drill_age(s: &Server, token: &str) -> String {
    let text = api(token, "GET", &format!("{}/metrics", s.base))
        .call()
        .unwrap()
        .into_string()
        .unwrap();
    text.lines()
        .find(|l| {
            l.starts_with("qodify_drill_last_good_age_seconds{") && l.contains("customer=\"42\"")
        })
        .unwrap_or_else(|| panic!("no drill age for customer 42:\n{text}"))
        .rsplit(' ')
        .next()
        .unwrap()
        .to_owned()
}

/// Makes backup.json agree with `file` again (sha256 and size), as someone hiding damage would,
/// so `verify` passes.
fn remanifest(backup: &Path, file: &str) {
    let path = backup.join("backup.json");
    let mut m: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    let artifact = m["artifacts"]
        .as_array_mut()
        .unwrap()
        .iter_mut()
        .find(|a| a["file"] == file)
        .unwrap();
    artifact["sha256"] = sha256_file(&backup.join(file)).into();
    artifact["size"] = std::fs::metadata(backup.join(file)).unwrap().len().into();
    std::fs::write(&path, serde_json::to_vec_pretty(&m).unwrap()).unwrap();
}

fn verify(host: &Host, id: &str) -> bool {
    run(host.cmd().args([
        "run",
        "verify",
        "--customer",
        DOMAIN,
        "--param",
        &format!("backup={id}"),
    ]))
    .status
    .success()
}

/// A table big enough that pg_restore runs for a few seconds.
fn add_big_table(db: &TestDb, rows: u32) {
    psql(
        &db.name,
        &format!(
            "CREATE TABLE big AS SELECT g, md5(g::text) AS m FROM generate_series(1, {rows}) g;
             CREATE INDEX big_m ON big (m);"
        ),
    );
}

#[test]
fn a_good_backup_is_stamped_restorable_and_metrics_show_the_age_of_the_last_good_drill() {
    const TOKEN: &str = "drill-good-token";
    let host = Host::new();
    let db = TestDb::shop("drillgood");
    add_big_table(&db, 1_000_000);
    let dir = customer(&host, &db, 64 << 20);
    let s = serve(&host, TOKEN);
    assert_eq!(good_drill_age(&s, TOKEN), "+Inf", "never drilled yet");

    let started = Instant::now();
    let id = take_backup(&host);
    let backup_time = started.elapsed();
    let manifest = dir.join(format!("backups/{id}/backup.json"));
    let before = sha256_file(&manifest);
    let m: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&manifest).unwrap()).unwrap();
    let uploads = m["artifacts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["file"] == "uploads.tar.gz")
        .unwrap();
    assert_eq!(
        uploads["files"], 4,
        "backup.json counts each archive's files"
    );
    assert_eq!(uploads["bytes"], 64 << 20);

    let started = Instant::now();
    let out = drill(&host, &["probe=SELECT 1 FROM orders WHERE qty = 3 LIMIT 1"]);
    let drill_time = started.elapsed();
    assert!(out.status.success(), "drill failed");
    let drill_run = run_id(&out);
    let line = history_line(&s, TOKEN, &id);
    assert_eq!(line["restorable"], true, "{line}");
    assert!(line["drilledAt"].is_string(), "{line}");
    assert!(line["drillReason"].is_null(), "{line}");
    let age: f64 = good_drill_age(&s, TOKEN).parse().unwrap();
    assert!((0.0..120.0).contains(&age), "age {age}");

    assert_eq!(
        sha256_file(&manifest),
        before,
        "a drill never writes backup.json"
    );
    assert!(scratch_dbs(&drill_run).is_empty());
    assert!(run_folders(&host).is_empty(), "{:?}", run_folders(&host));
    eprintln!(
        "drill of a backup with 1.2 M rows and 64 MiB of uploads: backup {:.1} s, drill {:.1} s, \
         drill/backup = {:.2}",
        backup_time.as_secs_f64(),
        drill_time.as_secs_f64(),
        drill_time.as_secs_f64() / backup_time.as_secs_f64()
    );

    // A probe that finds nothing makes the backup not restorable, by the probe's rule.
    let out = drill(
        &host,
        &[
            &format!("backup={id}"),
            "probe=SELECT 1 FROM orders WHERE qty > 100",
        ],
    );
    assert!(!out.status.success());
    let line = history_line(&s, TOKEN, &id);
    assert_eq!(line["restorable"], false, "{line}");
    assert!(
        line["drillReason"]
            .as_str()
            .unwrap()
            .contains("the probe returned no row"),
        "{line}"
    );
    // The last good drill stays what the metric counts from.
    let age: f64 = good_drill_age(&s, TOKEN).parse().unwrap();
    assert!(age.is_finite(), "{age}");
    assert!(scratch_dbs(&run_id(&out)).is_empty());
    assert!(run_folders(&host).is_empty(), "{:?}", run_folders(&host));
}

#[test]
fn a_truncated_dump_that_passes_verify_is_stamped_not_restorable_with_pg_restore_s_words() {
    const TOKEN: &str = "drill-cut-token";
    let host = Host::new();
    let db = TestDb::shop("drillcut");
    let dir = customer(&host, &db, 40_000);
    let s = serve(&host, TOKEN);
    let id = take_backup(&host);
    let backup = dir.join(format!("backups/{id}"));
    let dump = backup.join("db.dump");
    let len = std::fs::metadata(&dump).unwrap().len();
    std::fs::OpenOptions::new()
        .write(true)
        .open(&dump)
        .unwrap()
        .set_len(len / 2)
        .unwrap();
    remanifest(&backup, "db.dump");
    assert!(verify(&host, &id), "the damage is hidden from verify");

    let out = drill(&host, &[&format!("backup={id}")]);
    assert!(!out.status.success(), "a drill of a cut dump must fail");
    let line = history_line(&s, TOKEN, &id);
    assert_eq!(line["restorable"], false, "{line}");
    let reason = line["drillReason"].as_str().unwrap();
    assert!(
        reason.starts_with("db.dump does not restore: pg_restore exited"),
        "{reason}"
    );
    assert!(
        reason.contains("pg_restore: error:"),
        "pg_restore's own words: {reason}"
    );
    assert_eq!(good_drill_age(&s, TOKEN), "+Inf", "no drill ever passed");
    assert!(scratch_dbs(&run_id(&out)).is_empty());
    // `backups list` shows the stamp and the reason.
    let out = run(host.cmd().args(["backups", "list", "--customer", DOMAIN]));
    let table = String::from_utf8_lossy(&out.stdout);
    let row = table.lines().find(|l| l.starts_with(&id)).unwrap();
    assert!(row.contains(" FAILED 20"), "{table}");
    assert!(
        table.contains("not restorable: db.dump does not restore: pg_restore exited"),
        "{table}"
    );
    assert!(run_folders(&host).is_empty(), "{:?}", run_folders(&host));
}

#[test]
fn an_archive_missing_a_file_against_backup_json_is_stamped_not_restorable() {
    const TOKEN: &str = "drill-files-token";
    let host = Host::new();
    let db = TestDb::shop("drillfiles");
    let dir = customer(&host, &db, 40_000);
    let s = serve(&host, TOKEN);
    let id = take_backup(&host);
    let backup = dir.join(format!("backups/{id}"));

    // uploads.tar.gz made again with GNU tar, one file short, and re-manifested.
    let unpacked = host.tmp.path().join("unpacked");
    std::fs::create_dir(&unpacked).unwrap();
    let archive = backup.join("uploads.tar.gz");
    let ok = |c: &mut std::process::Command| assert!(run(c).status.success());
    ok(std::process::Command::new("tar")
        .arg("-xzf")
        .arg(&archive)
        .arg("-C")
        .arg(&unpacked));
    let victim = walk_files(&unpacked).into_iter().next().unwrap();
    std::fs::remove_file(&victim).unwrap();
    let top: Vec<String> = std::fs::read_dir(&unpacked)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    ok(std::process::Command::new("tar")
        .arg("-czf")
        .arg(&archive)
        .arg("-C")
        .arg(&unpacked)
        .args(&top));
    remanifest(&backup, "uploads.tar.gz");
    assert!(verify(&host, &id), "the damage is hidden from verify");

    let out = drill(&host, &[]);
    assert!(!out.status.success());
    let line = history_line(&s, TOKEN, &id);
    assert_eq!(line["restorable"], false, "{line}");
    let reason = line["drillReason"].as_str().unwrap();
    assert!(
        reason.contains("uploads.tar.gz unpacks to 3 files, backup.json lists 4"),
        "{reason}"
    );
    assert!(
        !reason.contains("db.dump"),
        "the database was fine: {reason}"
    );
    assert!(scratch_dbs(&run_id(&out)).is_empty());
    assert!(run_folders(&host).is_empty(), "{:?}", run_folders(&host));
}

fn walk_files(root: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for e in std::fs::read_dir(dir).unwrap().flatten() {
            if e.file_type().unwrap().is_dir() {
                stack.push(e.path());
            } else {
                out.push(e.path());
            }
        }
    }
    out.sort();
    out
}

/// Whether a pg_restore is connected to run `run_id`'s scratch database.
fn drill_restore_running(run_id: &str) -> bool {
    psql(
        "postgres",
        &format!(
            "SELECT count(*) FROM pg_stat_activity \
             WHERE datname = 'qodify_drill_{run_id}' AND application_name = 'pg_restore'"
        ),
    ) != "0"
}

fn wait_for_drill_restore(run_id: &str) {
    let until = Instant::now() + Duration::from_secs(180);
    while !drill_restore_running(run_id) {
        assert!(
            Instant::now() < until,
            "the drill's pg_restore never started"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    std::thread::sleep(Duration::from_millis(200));
}

fn journal(host: &Host) -> PathBuf {
    host.customers()
        .join(format!(".qodify-locks/{DOMAIN}.run.json"))
}

#[test]
fn a_cli_killed_mid_drill_leaves_nothing_once_recover_ran() {
    const TOKEN: &str = "drill-kill-cli-token";
    let host = Host::new();
    let db = TestDb::shop("drillkillcli");
    add_big_table(&db, 1_500_000);
    customer(&host, &db, 40_000);
    let s = serve(&host, TOKEN);
    let id = take_backup(&host);
    drop(s);

    let mut child = host
        .cmd()
        .args(["run", "drill", "--customer", DOMAIN])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // The run journal, written before the first step, names the run.
    let until = Instant::now() + Duration::from_secs(60);
    let run_id = loop {
        if let Ok(text) = std::fs::read_to_string(journal(&host))
            && let Ok(j) = serde_json::from_str::<serde_json::Value>(&text)
        {
            break j["runId"].as_str().unwrap().to_owned();
        }
        assert!(Instant::now() < until, "the drill never journaled");
        std::thread::sleep(Duration::from_millis(10));
    };
    wait_for_drill_restore(&run_id);
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    assert_eq!(scratch_dbs(&run_id).len(), 1, "the kill came mid-drill");
    assert!(
        host.tmp
            .path()
            .join(format!("data/runs/{run_id}/work/drill"))
            .is_dir(),
        "the run's scratch folder is left"
    );
    assert!(journal(&host).is_file(), "the run journal names the drill");

    let out = run(host.cmd().args(["recover", "--customer", DOMAIN, "--json"]));
    assert!(out.status.success(), "recover failed");
    assert!(scratch_dbs(&run_id).is_empty());
    assert!(run_folders(&host).is_empty(), "{:?}", run_folders(&host));
    assert!(!journal(&host).exists());

    // The customer drills normally afterwards.
    let s = serve(&host, TOKEN);
    let out = drill(&host, &[&format!("backup={id}")]);
    assert!(out.status.success());
    assert_eq!(history_line(&s, TOKEN, &id)["restorable"], true);
    assert!(scratch_dbs(&self::run_id(&out)).is_empty());
}

#[test]
fn a_service_killed_mid_drill_drops_the_scratch_database_at_its_next_start() {
    const TOKEN: &str = "drill-kill-serve-token";
    let host = Host::new();
    let db = TestDb::shop("drillkillserve");
    add_big_table(&db, 1_500_000);
    customer(&host, &db, 40_000);
    let mut s = serve(&host, TOKEN);
    let id = take_backup(&host);
    let (code, body) = json_of(
        api(
            TOKEN,
            "POST",
            &format!("{}/api/customers/42/backups/{id}/drill", s.base),
        )
        .send_json(serde_json::json!({})),
    );
    assert_eq!(code, 202, "{body}");
    let run_id = body["runId"].as_str().unwrap().to_owned();
    wait_for_drill_restore(&run_id);
    s.child.kill().unwrap(); // SIGKILL
    s.child.wait().unwrap();
    assert_eq!(scratch_dbs(&run_id).len(), 1, "the kill came mid-drill");
    assert!(journal(&host).is_file());

    // The next start finishes the drill's `finally` before it serves anything.
    let s = serve(&host, TOKEN);
    assert!(scratch_dbs(&run_id).is_empty());
    assert!(run_folders(&host).is_empty(), "{:?}", run_folders(&host));
    assert!(!journal(&host).exists());
    let run = get_ok(&s, TOKEN, &format!("/api/runs/{run_id}"));
    assert_eq!(run["state"], "interrupted", "{run}");
    let line = history_line(&s, TOKEN, &id);
    assert!(
        line["restorable"].is_null(),
        "an interrupted drill stamps nothing: {line}"
    );
}

/// A login role without superuser or CREATEDB, as a customer's database role really is; dropped
/// on drop (declare it before the databases it owns, so it outlives them).
struct CustomerRole(String);

impl CustomerRole {
    fn new(tag: &str) -> Self {
        let name = format!("qh_role_{tag}_{}", std::process::id());
        psql("postgres", &format!("DROP ROLE IF EXISTS {name}"));
        psql(
            "postgres",
            &format!("CREATE ROLE {name} LOGIN PASSWORD 'pw' NOSUPERUSER NOCREATEDB NOCREATEROLE"),
        );
        CustomerRole(name)
    }
}

impl Drop for CustomerRole {
    fn drop(&mut self) {
        let _ = std::process::Command::new("psql")
            .args([
                "-h",
                "127.0.0.1",
                "-U",
                "postgres",
                "-X",
                "-q",
                "-d",
                "postgres",
                "-c",
            ])
            .arg(format!("DROP ROLE IF EXISTS {}", self.0))
            .output();
    }
}

#[test]
fn a_shop_whose_own_role_is_no_superuser_is_backed_up_and_drilled_restorable() {
    const TOKEN: &str = "drill-role-token";
    let role = CustomerRole::new("drillrole");
    let host = Host::new();
    let db = TestDb::empty("drillrole");
    // The shop's tables belong to its own role, which owns the database and may do nothing else.
    psql(
        "postgres",
        &format!("ALTER DATABASE {} OWNER TO {}", db.name, role.0),
    );
    psql(
        &db.name,
        &format!(
            "SET ROLE {};
             CREATE TABLE orders (id serial PRIMARY KEY, note text);
             INSERT INTO orders (note) SELECT md5(i::text) FROM generate_series(1, 5000) i;
             CREATE VIEW big_orders AS SELECT * FROM orders WHERE id > 4000;",
            role.0
        ),
    );
    let url = format!("postgres://{}:pw@127.0.0.1:5432/{}", role.0, db.name);
    plain_shop(
        &host.customer(DOMAIN),
        &url,
        &[("p.jpg".into(), noise(10_000, 1))],
    );
    let s = serve(&host, TOKEN);

    let id = take_backup(&host);
    let out = drill(&host, &["probe=SELECT 1 FROM big_orders LIMIT 1"]);
    assert!(
        out.status.success(),
        "drill failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let line = history_line(&s, TOKEN, &id);
    assert_eq!(line["restorable"], true, "{line}");
    assert!(scratch_dbs(&run_id(&out)).is_empty());
    assert!(run_folders(&host).is_empty(), "{:?}", run_folders(&host));
    // The role was not given anything on the way.
    let rights = psql(
        "postgres",
        &format!(
            "SELECT rolsuper || ',' || rolcreatedb FROM pg_roles WHERE rolname = '{}'",
            role.0
        ),
    );
    assert_eq!(rights, "false,false");
}
