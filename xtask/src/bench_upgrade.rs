//! `cargo xtask bench --upgrade-only`: how long a customer stops serving while its layout is
//! migrated and while an upgrade swaps releases, on the upgrade test shop
//! (tests/fixtures/upgrade: three real Node.js apps under a private, real PM2 daemon, a real
//! PostgreSQL database). Every live port is polled every 10 ms while the work runs; the same
//! measurements are taken of a plain script doing the same job the usual way (move the folders
//! and `pm2 delete` + `pm2 start`; `ln -s` + `mv -T` and `pm2 reload`), in the same run.
//! Prints figures and ratios; nothing here fails on a number.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result};

/// How often the poller asks each port.
const POLL: Duration = Duration::from_millis(10);

/// What one client saw while one piece of work ran.
#[derive(Debug, Clone, Default)]
struct Polled {
    ok: u64,
    failed: u64,
    /// The longest stretch without answers on one port: from the start of the first failed
    /// request (a hung request counts from when it was sent) to the next success.
    longest_outage: Duration,
    /// The first few distinct failures (status or transport error), to tell a refused
    /// connection from a hung one.
    errors: Vec<String>,
}

impl Polled {
    fn add(&mut self, other: &Polled) {
        self.ok += other.ok;
        self.failed += other.failed;
        self.longest_outage = self.longest_outage.max(other.longest_outage);
        for e in &other.errors {
            if self.errors.len() < 3 && !self.errors.contains(e) {
                self.errors.push(e.clone());
            }
        }
    }
}

/// Two clients polling `GET /version` on every port every [`POLL`] until stopped: one keeps
/// its connections alive (as browsers and proxies do), one opens a new connection per request.
/// They fail differently when an old process goes away.
struct Poller {
    stop: Arc<AtomicBool>,
    handles: [JoinHandle<Polled>; 2],
}

/// Polls until `stop`, with or without keep-alive.
fn poll(ports: [u16; 3], keep_alive: bool, stop: Arc<AtomicBool>) -> Polled {
    let mut agent = ureq::AgentBuilder::new().timeout(Duration::from_secs(2));
    if !keep_alive {
        agent = agent.max_idle_connections(0);
    }
    let agent = agent.build();
    let mut seen = Polled::default();
    let mut down_since = [None::<Instant>; 3];
    while !stop.load(Ordering::SeqCst) {
        for (i, port) in ports.iter().enumerate() {
            let sent = Instant::now();
            let error = match agent
                .get(&format!("http://127.0.0.1:{port}/version"))
                .call()
            {
                Ok(r) if r.status() == 200 => None,
                Ok(r) => Some(format!("status {}", r.status())),
                Err(ureq::Error::Status(code, _)) => Some(format!("status {code}")),
                Err(e) => Some(e.to_string().replace(&port.to_string(), "<port>")),
            };
            match error {
                Some(e) => {
                    seen.failed += 1;
                    down_since[i].get_or_insert(sent);
                    if seen.errors.len() < 3 && !seen.errors.contains(&e) {
                        seen.errors.push(e);
                    }
                }
                None => {
                    seen.ok += 1;
                    if let Some(t) = down_since[i].take() {
                        seen.longest_outage = seen.longest_outage.max(t.elapsed());
                    }
                }
            }
        }
        std::thread::sleep(POLL);
    }
    for t in down_since.into_iter().flatten() {
        seen.longest_outage = seen.longest_outage.max(t.elapsed());
    }
    seen
}

impl Poller {
    fn start(ports: [u16; 3]) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let handles = [true, false].map(|keep_alive| {
            let stop = stop.clone();
            std::thread::spawn(move || poll(ports, keep_alive, stop))
        });
        Poller { stop, handles }
    }

    /// Stops both clients: (keep-alive, new connections).
    fn stop(self) -> [Polled; 2] {
        self.stop.store(true, Ordering::SeqCst);
        self.handles
            .map(|h| h.join().expect("the poller thread panicked"))
    }
}

/// One measured piece of work.
#[derive(Debug, Clone, Default)]
struct Sample {
    wall: Duration,
    /// What the keep-alive client and the new-connection client saw; `None` when not polled.
    polled: Option<[Polled; 2]>,
}

/// The samples of one row of the table.
#[derive(Default)]
struct Row(Vec<Sample>);

impl Row {
    fn median_wall(&self) -> Duration {
        let mut v: Vec<Duration> = self.0.iter().map(|s| s.wall).collect();
        v.sort();
        v.get(v.len() / 2).copied().unwrap_or_default()
    }

    /// Both clients' figures over every sample.
    fn polled(&self) -> [Polled; 2] {
        let mut total = [Polled::default(), Polled::default()];
        for p in self.0.iter().filter_map(|s| s.polled.as_ref()) {
            total[0].add(&p[0]);
            total[1].add(&p[1]);
        }
        total
    }

    fn print(&self, label: &str) {
        let [keep, fresh] = self.polled();
        println!(
            "  {label:<50} {:>6.2} s {:>6} {:>5} {:>7.0} ms {:>6} {:>5} {:>7.0} ms",
            self.median_wall().as_secs_f64(),
            keep.ok + keep.failed,
            keep.failed,
            keep.longest_outage.as_secs_f64() * 1000.0,
            fresh.ok + fresh.failed,
            fresh.failed,
            fresh.longest_outage.as_secs_f64() * 1000.0
        );
        for (client, p) in [("keep-alive", &keep), ("new conn.", &fresh)] {
            for e in &p.errors {
                println!("      {client} failure: {e}");
            }
        }
    }
}

/// The bench folder and everything the runs share.
struct Bench {
    repo: PathBuf,
    dir: PathBuf,
    bin: PathBuf,
    plugins: PathBuf,
    pm2_home: PathBuf,
    mode: &'static str,
    /// `NODE_CLUSTER_SCHED_POLICY` of the PM2 daemon (`rr` is Node's default on Linux).
    sched: &'static str,
    databases: Vec<String>,
}

impl Drop for Bench {
    fn drop(&mut self) {
        let _ = self.pm2(&["kill"]).output();
        for db in &self.databases {
            let _ = Command::new("dropdb")
                .args(["-h", "127.0.0.1", "-U", "postgres", "--if-exists", db])
                .output();
        }
    }
}

/// A free loopback port whose +1000 neighbour (a candidate's spare port) is free too.
fn free_port() -> Result<u16> {
    loop {
        let l = TcpListener::bind("127.0.0.1:0")?;
        let p = l.local_addr()?.port();
        if p < 60000 && TcpListener::bind(("127.0.0.1", p + 1000)).is_ok() {
            return Ok(p);
        }
    }
}

fn ok(out: Output, what: &str) -> Result<Output> {
    anyhow::ensure!(
        out.status.success(),
        "{what} failed ({}):\n{}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(out)
}

fn on_path(program: &str) -> bool {
    std::env::var_os("PATH")
        .is_some_and(|path| std::env::split_paths(&path).any(|d| d.join(program).is_file()))
}

impl Bench {
    fn customers(&self) -> PathBuf {
        self.dir.join("customers")
    }

    /// `pm2` against the bench's daemon; the first call starts the daemon, with the
    /// scheduling policy its cluster master will use.
    fn pm2(&self, args: &[&str]) -> Command {
        let mut c = Command::new("pm2");
        c.args(args)
            .current_dir(&self.dir)
            .env("PM2_HOME", &self.pm2_home)
            .env("NODE_CLUSTER_SCHED_POLICY", self.sched);
        c
    }

    fn qodify(&self, args: &[&str]) -> Command {
        let mut c = Command::new(&self.bin);
        c.args(args)
            .arg("--pipelines-dir")
            .arg(self.dir.join("pipelines"))
            .arg("--plugins-dir")
            .arg(&self.plugins)
            .env("QODIFY_CUSTOMERS_ROOT", self.customers())
            .env("QODIFY_DATA_DIR", self.dir.join("data"))
            .env("QODIFY_RELEASES_DIR", self.dir.join("catalog"))
            .env("PM2_HOME", &self.pm2_home);
        c
    }

    /// The shipped pipelines plus the fixture tier (its migration step is `npm run migrate`).
    fn pipelines(&self) -> Result<()> {
        let dir = self.dir.join("pipelines");
        std::fs::create_dir_all(dir.join("tiers"))?;
        for e in std::fs::read_dir(self.repo.join("pipelines"))?.flatten() {
            if e.path().extension().is_some_and(|x| x == "toml") {
                std::fs::copy(e.path(), dir.join(e.file_name()))?;
            }
        }
        std::fs::copy(
            self.repo.join("tests/fixtures/upgrade/tiers/fixture.toml"),
            dir.join("tiers/fixture.toml"),
        )?;
        Ok(())
    }

    /// releases.json with v1.0.0 and v1.1.0 (upgradable from v1.0.0), packed by make-release.sh.
    fn catalog(&self) -> Result<()> {
        let dir = self.dir.join("catalog");
        std::fs::create_dir_all(dir.join("packages"))?;
        let mut releases = Vec::new();
        for v in ["1.0.0", "1.1.0"] {
            let file = format!("v{v}.tar.gz");
            let out = ok(
                Command::new("bash")
                    .arg(self.repo.join("tests/fixtures/upgrade/make-release.sh"))
                    .arg(v)
                    .arg(dir.join("packages").join(&file))
                    .output()?,
                "make-release.sh",
            )?;
            releases.push(serde_json::json!({
                "version": format!("v{v}"),
                "package": {
                    "path": format!("packages/{file}"),
                    "sha256": String::from_utf8_lossy(&out.stdout).trim(),
                },
                "compat": { "node": ">=18", "postgres": ">=13", "upgradeFrom": ["v1.0.0"] },
            }));
        }
        std::fs::write(
            dir.join("releases.json"),
            serde_json::to_vec_pretty(&serde_json::json!({ "releases": releases }))?,
        )?;
        Ok(())
    }

    /// A current-layout shop on v1.0.0 with its own database, started under PM2.
    fn shop(&mut self, name: &str) -> Result<Shop> {
        let domain = format!("{name}.bench.test");
        let db = format!("qodify_bench_{name}_{}", std::process::id());
        let ports = [free_port()?, free_port()?, free_port()?];
        self.databases.push(db.clone());
        ok(
            Command::new("bash")
                .arg(self.repo.join("tests/fixtures/upgrade/make-customer.sh"))
                .arg(self.customers())
                .arg(&domain)
                .arg(&db)
                .args(ports.map(|p| p.to_string()))
                .env("PGUSER", "postgres")
                .env("WITH_DB", "1")
                .output()?,
            "make-customer.sh",
        )?;
        let dir = self.customers().join(&domain);
        // The PM2 mode is fixed in the file: the host's `pm2` calls do not pass the fixture's
        // FIXTURE_PM2_EXEC_MODE through.
        let eco = dir.join("ecosystem.config.js");
        let text = std::fs::read_to_string(&eco)?.replace(
            "process.env.FIXTURE_PM2_EXEC_MODE || 'cluster'",
            &format!("'{}'", self.mode),
        );
        std::fs::write(&eco, text)?;
        let mut start = self.pm2(&["start", "ecosystem.config.js"]);
        start.current_dir(&dir);
        ok(start.output()?, "pm2 start")?;
        let shop = Shop { domain, dir, ports };
        shop.wait_serving()?;
        Ok(shop)
    }
}

struct Shop {
    domain: String,
    dir: PathBuf,
    ports: [u16; 3],
}

impl Shop {
    /// Waits up to 30 s until every service answers.
    fn wait_serving(&self) -> Result<()> {
        let until = Instant::now() + Duration::from_secs(30);
        let agent = ureq::AgentBuilder::new()
            .timeout(Duration::from_secs(2))
            .build();
        for port in self.ports {
            while !agent
                .get(&format!("http://127.0.0.1:{port}/version"))
                .call()
                .is_ok_and(|r| r.status() == 200)
            {
                anyhow::ensure!(
                    Instant::now() < until,
                    "{}: port {port} never answered",
                    self.domain
                );
                std::thread::sleep(Duration::from_millis(50));
            }
        }
        Ok(())
    }

    /// Runs `cmd` while polling the shop's ports.
    fn measure(&self, cmd: &mut Command, what: &str) -> Result<(Sample, Output)> {
        let poller = Poller::start(self.ports);
        let started = Instant::now();
        let out = cmd.output();
        let wall = started.elapsed();
        let polled = Some(poller.stop());
        let out = ok(out?, what)?;
        Ok((Sample { wall, polled }, out))
    }
}

/// The plain script of the layout migration: what an admin would type (the plan §3.2 by hand).
fn layout_script(dir: &Path) -> String {
    format!(
        r#"set -euo pipefail
cd "{dir}"
v=v$(node -p "require('./backend/package.json').version")
mkdir -p "releases/$v" shared
for s in backend admin store; do mv "$s" "releases/$v/$s"; ln -s "current/$s" "$s"; done
ln -s "releases/$v" current
mv "releases/$v/backend/uploads" shared/uploads
ln -s ../../../shared/uploads "releases/$v/backend/uploads"
cp ecosystem.config.js ecosystem.config.js.pre-blue-green
sed -i "s|path.join(__dirname, service)|path.join(__dirname, 'current', service)|" ecosystem.config.js
pm2 delete ecosystem.config.js >/dev/null
pm2 start ecosystem.config.js >/dev/null
"#,
        dir = dir.display()
    )
}

/// The plain script of a swap: a new symlink renamed over `current`, then `pm2 reload`.
fn swap_script(dir: &Path, domain: &str, version: &str) -> String {
    format!(
        r#"set -euo pipefail
cd "{dir}"
ln -sfn "releases/{version}" current.tmp
mv -T current.tmp current
for s in backend admin store; do pm2 reload "{domain}-$s" >/dev/null; done
"#,
        dir = dir.display()
    )
}

/// The wall time of step `step` in a `run --json` output.
fn step_duration(out: &Output, step: &str) -> Option<Duration> {
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .find(|v| v["event"] == "step-succeeded" && v["step"] == step)
        .and_then(|v| v["duration_ms"].as_u64())
        .map(Duration::from_millis)
}

/// Runs the benchmark for each PM2 mode; cluster mode once per scheduling policy in `scheds`
/// (how the PM2 daemon's cluster master hands connections to workers: `rr`, Node's default, or
/// `none`, the kernel).
pub fn run(
    target: &Path,
    runs: usize,
    modes: &[&'static str],
    scheds: &[&'static str],
) -> Result<()> {
    for tool in ["pm2", "node", "npm", "psql", "createdb"] {
        if !on_path(tool) {
            eprintln!("`{tool}` is not on PATH: skipping the upgrade benchmark");
            return Ok(());
        }
    }
    for mode in modes {
        // The policy only matters to cluster mode: fork-mode apps own their port.
        let scheds: &[&'static str] = if *mode == "cluster" { scheds } else { &["rr"] };
        for sched in scheds {
            bench_mode(target, runs, mode, sched)?;
        }
    }
    Ok(())
}

fn bench_mode(target: &Path, runs: usize, mode: &'static str, sched: &'static str) -> Result<()> {
    let dir = target.join(format!("bench-upgrade-{mode}-{sched}"));
    let pm2_home = dir.join("pm2");
    if dir.exists() {
        // A daemon left by an interrupted earlier bench.
        let _ = Command::new("pm2")
            .arg("kill")
            .env("PM2_HOME", &pm2_home)
            .output();
        std::fs::remove_dir_all(&dir).with_context(|| format!("removing {}", dir.display()))?;
    }
    std::fs::create_dir_all(&dir)?;
    let mut bench = Bench {
        repo: crate::root(),
        dir,
        bin: target.join("release/qodify-host"),
        plugins: target.join("plugins"),
        pm2_home,
        mode,
        sched,
        databases: Vec::new(),
    };
    bench.pipelines()?;
    bench.catalog()?;

    let [
        mut layout_script_row,
        mut layout_host,
        mut swap_script_row,
        mut swap_host,
        mut upgrade,
    ] = std::array::from_fn(|_| Row::default());
    for i in 0..runs {
        // The layout migration, by the plain script and by the host, each on a fresh shop.
        let plain = bench.shop(&format!("script{i}"))?;
        let (s, _) = plain.measure(
            Command::new("bash")
                .arg("-c")
                .arg(layout_script(&plain.dir))
                .env("PM2_HOME", &bench.pm2_home),
            "the layout script",
        )?;
        layout_script_row.0.push(s);

        let shop = bench.shop(&format!("host{i}"))?;
        let (s, _) = shop.measure(
            &mut bench.qodify(&[
                "run",
                "migrate-layout",
                "--customer",
                &shop.domain,
                "--json",
            ]),
            "qodify-host run migrate-layout",
        )?;
        layout_host.0.push(s);

        // A whole upgrade v1.0.0 -> v1.1.0; the swap step's own time from its event.
        let (s, out) = shop.measure(
            &mut bench.qodify(&[
                "run",
                "upgrade",
                "--customer",
                &shop.domain,
                "--tier",
                "fixture",
                "--json",
                "--param",
                "targetVersion=v1.1.0",
                "--param",
                "heapMB=512",
            ]),
            "qodify-host run upgrade",
        )?;
        let swap = step_duration(&out, "swap").context("no swap step in the upgrade's events")?;
        swap_host.0.push(Sample {
            wall: swap,
            polled: None,
        });
        upgrade.0.push(s);

        // The plain swap, back to v1.0.0 and forward again.
        for v in ["v1.0.0", "v1.1.0"] {
            let (s, _) = shop.measure(
                Command::new("bash")
                    .arg("-c")
                    .arg(swap_script(&shop.dir, &shop.domain, v))
                    .env("PM2_HOME", &bench.pm2_home),
                "the swap script",
            )?;
            swap_script_row.0.push(s);
        }
        ok(bench.pm2(&["delete", "all"]).output()?, "pm2 delete all")?;
        eprintln!(
            "run {}: layout script {:.2}s / host {:.2}s, swap step {:.2}s, upgrade {:.2}s",
            i + 1,
            layout_script_row.0[i].wall.as_secs_f64(),
            layout_host.0[i].wall.as_secs_f64(),
            swap.as_secs_f64(),
            upgrade.0[i].wall.as_secs_f64()
        );
    }

    let policy = if mode == "cluster" {
        format!(", NODE_CLUSTER_SCHED_POLICY={sched}")
    } else {
        String::new()
    };
    println!(
        "\ndowntime, upgrade fixture shop (3 Node.js apps, PM2 {mode} mode{policy}, 1 instance \
         each; every port polled every {} ms), {runs} run(s), wall = median:",
        POLL.as_millis()
    );
    println!(
        "  {:<50} {:>8} {:>25} {:>25}",
        "", "", "keep-alive client", "new connection each"
    );
    println!(
        "  {:<50} {:>8} {:>6} {:>5} {:>10} {:>6} {:>5} {:>10}",
        "", "wall", "polls", "fail", "longest", "polls", "fail", "longest"
    );
    layout_script_row.print("layout: plain script (mv, ln -s, pm2 delete+start)");
    layout_host.print("layout: qodify-host run migrate-layout");
    swap_script_row.print("swap: plain script (ln -s + mv -T, pm2 reload)");
    println!(
        "  {:<50} {:>6.2} s   (polled with the whole upgrade, next line)",
        "swap: qodify-host symlink-swap step",
        swap_host.median_wall().as_secs_f64()
    );
    upgrade.print("whole upgrade: qodify-host run upgrade");
    let ratio = |a: &Row, b: &Row| a.median_wall().as_secs_f64() / b.median_wall().as_secs_f64();
    let failed = |r: &Row| {
        let [k, f] = r.polled();
        format!("{}+{}", k.failed, f.failed)
    };
    println!(
        "  qodify-host/script: layout wall {:.2}x, failed polls {} vs {}; swap wall {:.2}x, \
         failed polls {} (whole upgrade) vs {} (keep-alive+new)",
        ratio(&layout_host, &layout_script_row),
        failed(&layout_host),
        failed(&layout_script_row),
        ratio(&swap_host, &swap_script_row),
        failed(&upgrade),
        failed(&swap_script_row),
    );
    Ok(())
}
