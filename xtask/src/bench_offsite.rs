//! `cargo xtask bench --offsite-only`: off-site copies and restore drills of the backup bench's
//! customer (500 MiB uploads and its database), with Debian's restic against `rclone serve
//! restic` on loopback, all in one run. Per run, into a new, empty repository: a full backup
//! without an off-site copy (the baseline), a restore drill of it, a full backup with its first
//! off-site copy, and a backup of the unchanged customer with its second copy. Reports restic's
//! own figures (bytes added, seconds) of both copies and the drill's time against the backup's,
//! as ratios.

use std::net::{TcpListener, TcpStream};
use std::os::unix::fs::PermissionsExt as _;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result};

use crate::bench::{BACKUP_DOMAIN, make_backup_customer, psql};

/// `rclone serve restic` on a free loopback port, stopped on drop.
struct RepoServer {
    child: Child,
    port: u16,
}

impl RepoServer {
    fn start(dir: &Path) -> Result<Self> {
        let port = TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
        let child = Command::new("/usr/bin/rclone")
            .args(["serve", "restic", "--config", "/dev/null", "--addr"])
            .arg(format!("127.0.0.1:{port}"))
            .arg(dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("starting rclone serve restic")?;
        let server = RepoServer { child, port };
        let until = Instant::now() + Duration::from_secs(20);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            anyhow::ensure!(Instant::now() < until, "rclone serve restic did not start");
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(server)
    }
}

impl Drop for RepoServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One `qodify-host run … --json`: its wall time and its result (the `run-result` event of the
/// JSON lines it prints).
fn run_json(cmd: &mut Command) -> Result<(Duration, serde_json::Value)> {
    let start = Instant::now();
    let out = cmd.stderr(Stdio::inherit()).output()?;
    let took = start.elapsed();
    anyhow::ensure!(out.status.success(), "{cmd:?} failed with {}", out.status);
    let result = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .find(|v| v["event"] == "run-result")
        .context("no run-result line in the output of run --json")?;
    Ok((took, result["result"].clone()))
}

/// Output `key` of step `step` of a run result, as a number.
fn output(result: &serde_json::Value, step: &str, key: &str) -> Result<f64> {
    let s = result["steps"]
        .as_array()
        .and_then(|steps| steps.iter().find(|s| s["id"] == step))
        .with_context(|| format!("no step {step} in the run result"))?;
    s["outputs"]
        .as_array()
        .and_then(|o| o.iter().find(|kv| kv[0] == key))
        .and_then(|kv| kv[1].as_str()?.parse().ok())
        .with_context(|| format!("no number {key} in the outputs of {step}: {}", s["outputs"]))
}

/// The figures of one run.
struct Figures {
    backup: Duration,
    drill: Duration,
    first_added: f64,
    first_seconds: f64,
    second_added: f64,
    second_seconds: f64,
}

pub fn run(target: &Path, size_mib: u64, db_rows: u64, runs: usize) -> Result<()> {
    if psql("postgres", "SELECT 1").is_err() {
        eprintln!("PostgreSQL is not reachable on 127.0.0.1:5432: skipping the off-site benchmark");
        return Ok(());
    }
    for tool in ["restic", "rclone"] {
        if !Path::new("/usr/bin").join(tool).is_file() {
            eprintln!(
                "{tool} is missing (apt-get install restic rclone): skipping the off-site benchmark"
            );
            return Ok(());
        }
    }
    let customers = target.join("bench-backup/customers");
    make_backup_customer(&customers.join(BACKUP_DOMAIN), size_mib, db_rows)?;
    let bench = target.join("bench-offsite");
    let repos = bench.join("repos");
    let _ = std::fs::remove_dir_all(&repos);
    std::fs::create_dir_all(&repos)?;
    let server = RepoServer::start(&repos)?;
    let data = bench.join("data");
    let secrets = data.join("secrets");
    std::fs::create_dir_all(&secrets)?;
    std::fs::set_permissions(&secrets, std::fs::Permissions::from_mode(0o700))?;
    std::fs::write(secrets.join("offsite"), "bench-offsite-password\n")?;
    std::fs::set_permissions(
        secrets.join("offsite"),
        std::fs::Permissions::from_mode(0o600),
    )?;
    let config = bench.join("qodify-host.toml");
    std::fs::write(
        &config,
        format!("[grants]\nconnect_ports = [5432, {}]\n", server.port),
    )?;
    let bin = target.join("release/qodify-host");
    let host = |args: &[&str]| -> Command {
        let mut c = Command::new(&bin);
        c.args(["run"])
            .args(args)
            .args(["--customer", BACKUP_DOMAIN, "--json"])
            .arg("--plugins-dir")
            .arg(target.join("plugins"))
            .env("QODIFY_CUSTOMERS_ROOT", &customers)
            .env("QODIFY_DATA_DIR", &data)
            .env("QODIFY_CONFIG", &config);
        c
    };
    // Each backup needs its own second, and a change within the last second keeps an archive
    // from being reused.
    let backup = |extra: &[String]| -> Result<(Duration, serde_json::Value)> {
        std::thread::sleep(Duration::from_millis(1300));
        let mut c = host(&["backup", "--param", "retention=3"]);
        for p in extra {
            c.args(["--param", p]);
        }
        run_json(&mut c)
    };
    backup(&["full=true".into()])?; // warm-up: compile cache, page cache
    let mut all = Vec::new();
    for i in 0..runs {
        let (t_backup, plain) = backup(&["full=true".into()])?;
        let id = plain["backup"].as_str().context("no backup id")?.to_owned();
        let (t_drill, _) = run_json(&mut host(&["drill", "--param", &format!("backup={id}")]))?;
        let repo = format!("rest:http://127.0.0.1:{}/run{i}", server.port);
        let offsite = [
            format!("offsite.repository={repo}"),
            format!("offsite.net=127.0.0.1:{}", server.port),
        ];
        let first: Vec<String> = offsite
            .iter()
            .cloned()
            .chain(["full=true".into()])
            .collect();
        let (_, sent1) = backup(&first)?;
        let (_, sent2) = backup(&offsite)?;
        let f = Figures {
            backup: t_backup,
            drill: t_drill,
            first_added: output(&sent1, "offsite", "data-added")?,
            first_seconds: output(&sent1, "offsite", "seconds")?,
            second_added: output(&sent2, "offsite", "data-added")?,
            second_seconds: output(&sent2, "offsite", "seconds")?,
        };
        eprintln!(
            "run {}: backup {:.2}s, drill {:.2}s; off-site first {:.1} MB in {:.2}s, unchanged {:.2} MB in {:.2}s",
            i + 1,
            f.backup.as_secs_f64(),
            f.drill.as_secs_f64(),
            f.first_added / 1e6,
            f.first_seconds,
            f.second_added / 1e6,
            f.second_seconds
        );
        all.push(f);
    }
    let med = |f: &dyn Fn(&Figures) -> f64| {
        let mut v: Vec<f64> = all.iter().map(f).collect();
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let (backup_s, drill_s) = (
        med(&|f| f.backup.as_secs_f64()),
        med(&|f| f.drill.as_secs_f64()),
    );
    let (a1, s1, a2, s2) = (
        med(&|f| f.first_added),
        med(&|f| f.first_seconds),
        med(&|f| f.second_added),
        med(&|f| f.second_seconds),
    );
    println!(
        "\noff-site copies and drills ({size_mib} MiB uploads, {db_rows} database rows), median of {runs}:"
    );
    println!("  full fast backup, no off-site copy                     {backup_s:>8.2} s");
    println!("  restore drill of that backup                           {drill_s:>8.2} s");
    println!(
        "  ratio drill/backup                                     {:>8.2}x",
        drill_s / backup_s
    );
    println!(
        "  first off-site copy: added {:>9.1} MB in             {s1:>8.2} s",
        a1 / 1e6
    );
    println!(
        "  second copy, unchanged: added {:>7.2} MB in             {s2:>8.2} s",
        a2 / 1e6
    );
    println!(
        "  ratio second/first: bytes added {:>6.2} %, time         {:>8.2}x",
        100.0 * a2 / a1,
        s2 / s1
    );
    drop(server);
    Ok(())
}
