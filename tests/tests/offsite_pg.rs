//! Encrypted off-site copies with the real restic, a real REST repository server
//! (`rclone serve restic` on loopback) and real PostgreSQL, through the real binary: a backup
//! sent off-site comes back after the local folder is lost and restores the same database and
//! files; an unchanged customer's second copy adds almost nothing; forget keeps pinned
//! backups; a wrong repository password fails cleanly and is written nowhere; the stale lock of a
//! restic killed mid-copy does not stop the next copy.
//!
//! Without restic or rclone the tests are skipped with a message, except under CI (`CI` set),
//! where that is a failure.

mod common;
mod pg;

use std::net::TcpStream;
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use pg::{TestDb, psql};

const DOMAIN: &str = "shop.example.com";
const PASSWORD: &str = "offsite-Pa55-7f1c9e2b";

/// Whether restic and rclone are installed; under CI a missing one fails the test.
fn tools() -> bool {
    for tool in ["restic", "rclone"] {
        if !Path::new("/usr/bin").join(tool).is_file() {
            let ci = std::env::var_os("CI").is_some_and(|v| !v.is_empty());
            assert!(
                !ci,
                "{tool} is missing: `apt-get install restic rclone` (.ci/run does)"
            );
            eprintln!("skipped: {tool} is missing (apt-get install restic rclone)");
            return false;
        }
    }
    true
}

/// `rclone serve restic` on a free loopback port, stopped on drop.
struct RepoServer {
    child: Child,
    port: u16,
}

impl RepoServer {
    fn start(dir: &Path) -> Self {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let child = Command::new("/usr/bin/rclone")
            .args(["serve", "restic", "--config", "/dev/null", "--addr"])
            .arg(format!("127.0.0.1:{port}"))
            .arg(dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let until = Instant::now() + Duration::from_secs(20);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < until, "rclone serve restic did not start");
            std::thread::sleep(Duration::from_millis(50));
        }
        Self { child, port }
    }
}

impl Drop for RepoServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A host whose tier `offsite` sends to the repository server, with the password as host secret.
struct Offsite {
    host: Host,
    /// Kept for its drop: the server runs as long as the host.
    repo: RepoServer,
    pipelines: PathBuf,
    config: PathBuf,
}

impl Offsite {
    fn new() -> Self {
        let host = Host::new();
        let t = host.tmp.path().to_path_buf();
        let repo = RepoServer::start(&t.join("repo"));
        // The shipped pipelines and overlays, plus a tier naming the repository once for all.
        let pipelines = t.join("pipelines");
        std::fs::create_dir_all(pipelines.join("tiers")).unwrap();
        for sub in ["", "tiers"] {
            for e in std::fs::read_dir(repo_root().join("pipelines").join(sub)).unwrap() {
                let p = e.unwrap().path();
                if p.extension().is_some_and(|x| x == "toml") {
                    std::fs::copy(&p, pipelines.join(sub).join(p.file_name().unwrap())).unwrap();
                }
            }
        }
        write(
            &pipelines.join("tiers/offsite.toml"),
            format!(
                "description = \"off-site copies to the test repository\"\n\
                 [params.\"offsite.repository\"]\ndefault = \"rest:http://127.0.0.1:{p}\"\n\
                 [params.\"offsite.net\"]\ndefault = \"127.0.0.1:{p}\"\n",
                p = repo.port
            ),
        );
        let config = t.join("qodify-host.toml");
        write(
            &config,
            format!("[grants]\nconnect_ports = [5432, {}]\n", repo.port),
        );
        let o = Self {
            host,
            repo,
            pipelines,
            config,
        };
        o.set_password(PASSWORD);
        o
    }

    fn set_password(&self, password: &str) {
        let dir = self.host.tmp.path().join("data/secrets");
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700)).unwrap();
        write(&dir.join("offsite"), format!("{password}\n"));
        chmod(&dir.join("offsite"), 0o600);
    }

    fn cmd(&self) -> Command {
        let mut c = self.host.cmd_with_pipelines(&self.pipelines);
        c.env("QODIFY_CONFIG", &self.config);
        c
    }

    fn backup(&self, extra: &[&str]) -> std::process::Output {
        let mut c = self.cmd();
        c.args([
            "run",
            "backup",
            "--customer",
            DOMAIN,
            "--tier",
            "offsite",
            "--json",
        ]);
        for p in extra {
            c.args(["--param", p]);
        }
        run(&mut c)
    }

    /// A backup whose off-site copy succeeded: (backup id, the offsite step's outputs).
    fn sent(&self, extra: &[&str]) -> (String, serde_json::Map<String, serde_json::Value>) {
        let out = self.backup(extra);
        assert!(out.status.success(), "backup with off-site copy failed");
        let result = run_result(&out);
        let id = result["backup"].as_str().unwrap().to_owned();
        (id, step_outputs(&result, "offsite"))
    }

    fn offsite_list(&self) -> Vec<serde_json::Value> {
        let out = run(self.cmd().args([
            "backups",
            "list",
            "--customer",
            DOMAIN,
            "--offsite",
            "--tier",
            "offsite",
            "--json",
        ]));
        assert!(out.status.success(), "backups list --offsite failed");
        serde_json::from_slice::<Vec<serde_json::Value>>(&out.stdout).unwrap()
    }
}

fn repo_root() -> PathBuf {
    common::repo()
}

/// A step's outputs from a run result, as a map.
fn step_outputs(
    result: &serde_json::Value,
    step: &str,
) -> serde_json::Map<String, serde_json::Value> {
    let s = result["steps"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["id"] == step)
        .unwrap_or_else(|| panic!("no step {step} in {result}"));
    assert_eq!(s["status"], "succeeded", "{s}");
    s["outputs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|kv| (kv[0].as_str().unwrap().to_owned(), kv[1].clone()))
        .collect()
}

fn number(outputs: &serde_json::Map<String, serde_json::Value>, key: &str) -> f64 {
    outputs[key].as_str().unwrap().parse().unwrap()
}

fn shop(host: &Host, db: &TestDb, uploads_mib: usize) -> PathBuf {
    let uploads: Vec<_> = (0..uploads_mib)
        .map(|i| (format!("{i}.jpg"), noise(1 << 20, i as u64 + 7)))
        .collect();
    plain_shop(&host.customer(DOMAIN), &db.url("pw"), &uploads)
}

fn no_dependencies(r: &str) -> bool {
    r.split('/').any(|c| c == "node_modules")
}

#[test]
fn a_backup_sent_off_site_comes_back_after_the_local_copy_is_lost() {
    if !tools() {
        return;
    }
    let o = Offsite::new();
    let db = TestDb::shop("offsite");
    // An unchanged customer's copy still adds the chunks holding what changes in every backup:
    // the dump's header (its date) and backup.json, one restic chunk each (0.5-8 MiB, ~1 MiB on
    // average). 64 MiB of uploads make the customer large enough for that to be the small part
    // it is for real shops. QODIFY_OFFSITE_UPLOADS_MIB=500 measures a bench-sized customer (the
    // figures are printed).
    let mib: usize = std::env::var("QODIFY_OFFSITE_UPLOADS_MIB")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(64);
    let dir = shop(&o.host, &db, mib);
    let before_db = db.checksums();
    let before_backend = tree(&dir.join("backend"), &no_dependencies);

    let started = Instant::now();
    let (first, sent1) = o.sent(&[]);
    let first_secs = started.elapsed().as_secs_f64();
    let started = Instant::now();
    let (second, sent2) = o.sent(&[]);
    let second_secs = started.elapsed().as_secs_f64();
    let (added1, added2) = (number(&sent1, "data-added"), number(&sent2, "data-added"));
    eprintln!(
        "off-site copy: first {added1} bytes added of {} read in {}s (run {first_secs:.1}s), second {added2} bytes added in {}s (run {second_secs:.1}s): {:.2}%",
        number(&sent1, "bytes"),
        number(&sent1, "seconds"),
        number(&sent2, "seconds"),
        100.0 * added2 / added1
    );
    assert!(
        added1 > mib as f64 * 1048576.0,
        "the first copy sent the backup: {added1}"
    );
    assert!(
        added2 < 0.05 * added1,
        "the unchanged customer's second copy added {added2} bytes, not under 5% of {added1}"
    );
    let listed = o.offsite_list();
    let backups: Vec<&str> = listed.iter().filter_map(|s| s["backup"].as_str()).collect();
    assert_eq!(backups, [second.as_str(), first.as_str()], "{listed:?}");

    // The disk loses the newest backup; the database and the files are damaged.
    let local = dir.join("backups").join(&second);
    let before_backup = tree(&local, &|_| false);
    std::fs::remove_dir_all(&local).unwrap();
    psql(
        &db.name,
        "DELETE FROM orders WHERE id % 2 = 0; UPDATE customers SET name = 'x';",
    );
    write(&dir.join("backend/server.js"), "// broken\n");
    std::fs::remove_file(dir.join("backend/uploads/3.jpg")).unwrap();

    let out = run(o.cmd().args([
        "run",
        "restore",
        "--customer",
        DOMAIN,
        "--tier",
        "offsite",
        "--json",
        "--param",
        &format!("backup={second}"),
        "--param",
        "source=offsite",
    ]));
    assert!(out.status.success(), "restore from off-site failed");
    assert_eq!(
        tree(&local, &|_| false),
        before_backup,
        "the fetched backup differs"
    );
    assert_eq!(
        db.checksums(),
        before_db,
        "database differs after the restore"
    );
    assert_eq!(
        tree(&dir.join("backend"), &no_dependencies),
        before_backend,
        "files differ after the restore"
    );
    let leftovers: Vec<String> = std::fs::read_dir(dir.join("backups"))
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with(".partial"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");

    // A backup that is on the disk is not fetched over it.
    let out = run(o.cmd().args([
        "run",
        "restore",
        "--customer",
        DOMAIN,
        "--tier",
        "offsite",
        "--json",
        "--param",
        &format!("backup={second}"),
        "--param",
        "source=offsite",
    ]));
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains("already on the disk"));
}

#[test]
fn forget_keeps_pinned_backups_and_follows_the_tier_s_numbers() {
    if !tools() {
        return;
    }
    let o = Offsite::new();
    let db = TestDb::shop("offsite_forget");
    let dir = shop(&o.host, &db, 1);
    let (first, _) = o.sent(&[]);
    let pins = dir.join("backups/.pins");
    std::fs::create_dir_all(&pins).unwrap();
    write(&pins.join(&first), "pre-upgrade 1.2.0");
    let (_second, _) = o.sent(&[]);
    let keep_one = [
        "offsite.keepLast=1",
        "offsite.keepDaily=0",
        "offsite.keepWeekly=0",
    ];
    let (third, sent) = o.sent(&keep_one);
    assert_eq!(sent["forgotten"], "1", "{sent:?}");
    let listed = o.offsite_list();
    let kept: Vec<(&str, bool)> = listed
        .iter()
        .map(|s| {
            (
                s["backup"].as_str().unwrap(),
                s["pinned"].as_bool().unwrap(),
            )
        })
        .collect();
    assert_eq!(kept, [(third.as_str(), false), (first.as_str(), true)]);

    // Unpinned on the host, it is no longer kept off-site either.
    std::fs::remove_file(pins.join(&first)).unwrap();
    let (fourth, _) = o.sent(&keep_one);
    let listed = o.offsite_list();
    let kept: Vec<&str> = listed
        .iter()
        .map(|s| s["backup"].as_str().unwrap())
        .collect();
    assert_eq!(kept, [fourth.as_str()]);
}

#[test]
fn a_wrong_repository_password_fails_cleanly_and_is_written_nowhere() {
    if !tools() {
        return;
    }
    let o = Offsite::new();
    let db = TestDb::shop("offsite_pw");
    let dir = shop(&o.host, &db, 1);
    o.sent(&[]);
    let wrong = "wrong-Secret-5b8d0a";
    o.set_password(wrong);
    let out = o.backup(&[]);
    assert!(!out.status.success(), "a wrong password must fail the run");
    let result = run_result(&out);
    let error = result["error"].as_str().unwrap();
    assert!(
        error.contains("is complete, but")
            && error.contains("password (host secret `offsite`) does not open"),
        "{error}"
    );
    // The backup itself is complete on the disk.
    let id = result["backup"].as_str().unwrap();
    assert!(dir.join("backups").join(id).join("backup.json").is_file());

    // Neither password is in what the run printed, nor in any file of the host but the secret.
    let secrets = o.host.tmp.path().join("data/secrets");
    let repo = o.host.tmp.path().join("repo");
    for password in [PASSWORD, wrong] {
        for (what, bytes) in [("stdout", &out.stdout), ("stderr", &out.stderr)] {
            assert!(
                !String::from_utf8_lossy(bytes).contains(password),
                "the password is in the run's {what}"
            );
        }
        let mut stack = vec![o.host.tmp.path().to_path_buf()];
        while let Some(d) = stack.pop() {
            for e in std::fs::read_dir(&d).unwrap().flatten() {
                let p = e.path();
                let ft = e.file_type().unwrap();
                if p == secrets || p == repo {
                    continue;
                }
                if ft.is_dir() {
                    stack.push(p);
                } else if ft.is_file() {
                    let bytes = std::fs::read(&p).unwrap();
                    assert!(
                        !bytes
                            .windows(password.len())
                            .any(|w| w == password.as_bytes()),
                        "the password is in {}",
                        p.display()
                    );
                }
            }
        }
    }
    // `plan` names the secret, never its value.
    let out = run(o
        .cmd()
        .args(["plan", "backup", "--customer", DOMAIN, "--tier", "offsite"]));
    assert!(out.status.success());
    let plan = String::from_utf8_lossy(&out.stdout);
    assert!(
        plan.contains("RESTIC_PASSWORD from secret `offsite`"),
        "{plan}"
    );
    assert!(!plan.contains(wrong));
}

/// The pid of a running `restic … backup` of this test's repository (port `port`), if any.
fn restic_backup_pid(port: u16) -> Option<u32> {
    let needle = format!("127.0.0.1:{port}");
    std::fs::read_dir("/proc").ok()?.flatten().find_map(|e| {
        let pid: u32 = e.file_name().to_str()?.parse().ok()?;
        let cmdline = std::fs::read(e.path().join("cmdline")).ok()?;
        let args: Vec<&[u8]> = cmdline.split(|b| *b == 0).collect();
        let is_restic = args.first()?.ends_with(b"restic");
        let sends = args.iter().any(|a| *a == b"backup");
        let ours = args
            .iter()
            .any(|a| String::from_utf8_lossy(a).contains(&needle));
        (is_restic && sends && ours).then_some(pid)
    })
}

#[test]
fn a_restic_killed_mid_copy_leaves_a_stale_lock_the_next_copy_removes() {
    if !tools() {
        return;
    }
    let o = Offsite::new();
    let db = TestDb::shop("offsitelock");
    shop(&o.host, &db, 160);
    let locks = o.host.tmp.path().join("repo").join(DOMAIN).join("locks");

    // restic is killed while it sends: its lock stays in the repository.
    let mut c = o.cmd();
    c.args([
        "run",
        "backup",
        "--customer",
        DOMAIN,
        "--tier",
        "offsite",
        "--json",
    ])
    .stdout(Stdio::null())
    .stderr(Stdio::null());
    let mut child = c.spawn().unwrap();
    let until = Instant::now() + Duration::from_secs(120);
    let pid = loop {
        if let Some(pid) = restic_backup_pid(o.repo.port) {
            break pid;
        }
        assert!(
            child.try_wait().unwrap().is_none(),
            "the backup ended before restic was seen sending"
        );
        assert!(Instant::now() < until, "restic never started sending");
        std::thread::sleep(Duration::from_millis(5));
    };
    // Its lock is written first thing; give it a moment to be there.
    let until = Instant::now() + Duration::from_secs(10);
    while std::fs::read_dir(&locks).map_or(0, |d| d.count()) == 0 {
        assert!(Instant::now() < until, "restic wrote no lock in {locks:?}");
        std::thread::sleep(Duration::from_millis(5));
    }
    let killed = Command::new("kill")
        .args(["-9", &pid.to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    let status = child.wait().unwrap();
    assert!(
        !status.success(),
        "the run whose off-site copy was killed must fail"
    );
    assert_eq!(
        std::fs::read_dir(&locks).unwrap().count(),
        1,
        "the killed restic's lock is left behind"
    );

    // The next backup's copy removes it, sends, and applies the retention (an exclusive lock).
    let (_, sent) = o.sent(&[]);
    assert!(number(&sent, "data-added") > 0.0);
    assert!(sent.contains_key("forgotten"), "{sent:?}");
    assert_eq!(std::fs::read_dir(&locks).unwrap().count(), 0);
}
