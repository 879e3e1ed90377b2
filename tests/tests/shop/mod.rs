//! A fixture customer shop (tests/fixtures/upgrade): three real Node.js apps under a private,
//! real PM2 daemon on loopback ports, with a real PostgreSQL database; a poller that measures how
//! long the apps stop answering while something changes under them. Everything is torn down on
//! drop (the PM2 daemon is killed, the database dropped).

#![allow(dead_code)]

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::common::{Host, repo};
use crate::pg::TestDb;

/// The services and their order in `ports`.
pub const SERVICES: [&str; 3] = ["backend", "admin", "store"];

/// `pm2` is there, or the test cannot run: a failure under CI, a skip (with a message) elsewhere.
pub fn pm2_available() -> bool {
    // Looked up, not run: any `pm2` command may start a daemon (PM2-NOTES.md §e).
    let ok = std::env::var_os("PATH")
        .is_some_and(|path| std::env::split_paths(&path).any(|dir| dir.join("pm2").is_file()));
    if !ok {
        assert!(
            std::env::var_os("CI").is_none(),
            "pm2 is missing: `npm install -g pm2` (.ci/run does it)"
        );
        eprintln!("skipped: pm2 is not installed (`npm install -g pm2`)");
    }
    ok
}

/// A free loopback port whose +1000 neighbour (a candidate's spare port) is free too.
pub fn free_port() -> u16 {
    loop {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let p = l.local_addr().unwrap().port();
        if p < 60000 && TcpListener::bind(("127.0.0.1", p + 1000)).is_ok() {
            return p;
        }
    }
}

/// Three free ports for a shop's services, no one of them another's spare port (+1000): a
/// candidate started on its spare port must never find a live service there.
pub fn shop_ports() -> [u16; 3] {
    loop {
        let ports = [free_port(), free_port(), free_port()];
        let distinct = ports[0] != ports[1] && ports[1] != ports[2] && ports[0] != ports[2];
        let spare_taken = ports.iter().any(|a| ports.contains(&(a + 1000)));
        if distinct && !spare_taken {
            return ports;
        }
    }
}

/// One shop: a customer folder made by make-customer.sh, its database and its PM2 daemon.
pub struct Shop {
    pub host: Host,
    pub db: TestDb,
    pub domain: String,
    pub ports: [u16; 3],
    pub pm2_home: tempfile::TempDir,
    /// `NODE_CLUSTER_SCHED_POLICY` of this shop's PM2 daemon (None: Node's default, `rr`).
    pub cluster_sched: Option<&'static str>,
}

impl Shop {
    /// A current-layout customer of release 1.0.0, migrated (table `items`), not started.
    pub fn new(tag: &str) -> Self {
        let host = Host::new();
        let db = TestDb::empty(tag);
        let domain = format!("{tag}.shop.test");
        let ports = shop_ports();
        let script = repo().join("tests/fixtures/upgrade/make-customer.sh");
        let out = Command::new("bash")
            .arg(script)
            .arg(host.customers())
            .arg(&domain)
            .arg(&db.name)
            .args(ports.map(|p| p.to_string()))
            .env("PGUSER", "postgres")
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "make-customer.sh: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let shop = Shop {
            host,
            db,
            domain,
            ports,
            pm2_home: tempfile::tempdir().unwrap(),
            cluster_sched: None,
        };
        let migrate = Command::new("node")
            .arg("migrate.js")
            .current_dir(shop.dir().join("backend"))
            .output()
            .unwrap();
        assert!(
            migrate.status.success(),
            "migrate.js: {}",
            String::from_utf8_lossy(&migrate.stderr)
        );
        shop
    }

    /// [`Shop::new`], with apps that take `warmup` to listen after they start, like NestJS or
    /// Next.js apps that load for a second first: `LISTEN_DELAY_MS` in every service's `.env`
    /// (the fixture's servers delay their `listen` by it).
    pub fn with_warmup(tag: &str, warmup: Duration) -> Self {
        let shop = Shop::new(tag);
        for svc in SERVICES {
            let env = shop.dir().join(svc).join(".env");
            let mut text = std::fs::read_to_string(&env).unwrap();
            text.push_str(&format!("LISTEN_DELAY_MS={}\n", warmup.as_millis()));
            std::fs::write(&env, text).unwrap();
        }
        shop
    }

    /// Runs this shop's PM2 daemon with `NODE_CLUSTER_SCHED_POLICY=<policy>`: call it before
    /// the first `pm2` command ([`Shop::start`]), which starts the daemon. With `none` the
    /// workers accept from the shared socket themselves, and a worker that shuts down loses no
    /// connection (with `rr` about one in twenty shutdowns does: docs/upgrades.md, Downtime).
    pub fn cluster_sched(mut self, policy: &'static str) -> Self {
        self.cluster_sched = Some(policy);
        self
    }

    /// The customer folder.
    pub fn dir(&self) -> PathBuf {
        self.host.customer(&self.domain)
    }

    /// `qodify-host` for this shop, talking to its PM2 daemon, with the shipped pipelines plus
    /// the fixture tier (tests/fixtures/upgrade/tiers) and this shop's release catalog.
    pub fn qodify(&self) -> Command {
        let pipelines = self.host.tmp.path().join("pipelines");
        if !pipelines.exists() {
            std::fs::create_dir_all(pipelines.join("tiers")).unwrap();
            for e in std::fs::read_dir(repo().join("pipelines"))
                .unwrap()
                .flatten()
            {
                if e.path().extension().is_some_and(|x| x == "toml") {
                    std::fs::copy(e.path(), pipelines.join(e.file_name())).unwrap();
                }
            }
            std::fs::copy(
                repo().join("tests/fixtures/upgrade/tiers/fixture.toml"),
                pipelines.join("tiers/fixture.toml"),
            )
            .unwrap();
        }
        let mut c = self.host.cmd_with_pipelines(&pipelines);
        c.env("PM2_HOME", self.pm2_home.path())
            .env("HOME", self.host.tmp.path())
            .env("QODIFY_RELEASES_DIR", self.catalog());
        c
    }

    /// The release catalog folder of this shop (filled by [`Shop::add_release`]).
    pub fn catalog(&self) -> PathBuf {
        self.host.tmp.path().join("catalog")
    }

    /// Packs release `version` (`1.0.0`, `1.1.0`) with fixture switches (`FAIL_BUILD`,
    /// `admin:FAIL_HEALTH`, `FAIL_HEALTH_ON_PORT=<port>`, …) and lists it in releases.json as
    /// `v<version>`, upgradable from `v1.0.0`.
    pub fn add_release(&self, version: &str, switches: &[String]) {
        self.add_release_with(version, switches, serde_json::json!({}));
    }

    /// [`Shop::add_release`], with `extra` fields merged into its catalog entry (e.g. `env`).
    pub fn add_release_with(&self, version: &str, switches: &[String], extra: serde_json::Value) {
        let packages = self.catalog().join("packages");
        std::fs::create_dir_all(&packages).unwrap();
        let file = format!("v{version}.tar.gz");
        let out = Command::new("bash")
            .arg(repo().join("tests/fixtures/upgrade/make-release.sh"))
            .arg(version)
            .arg(packages.join(&file))
            .args(switches)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "make-release.sh: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let sha = String::from_utf8_lossy(&out.stdout).trim().to_owned();
        let path = self.catalog().join("releases.json");
        let mut catalog: serde_json::Value = std::fs::read(&path)
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or_else(|| serde_json::json!({ "releases": [] }));
        let releases = catalog["releases"].as_array_mut().unwrap();
        releases.retain(|r| r["version"] != format!("v{version}"));
        let mut entry = serde_json::json!({
            "version": format!("v{version}"),
            "package": { "path": format!("packages/{file}"), "sha256": sha },
            "compat": { "node": ">=18", "postgres": ">=13", "upgradeFrom": ["v1.0.0"] },
        });
        if let Some(extra) = extra.as_object() {
            for (k, v) in extra {
                entry[k] = v.clone();
            }
        }
        releases.push(entry);
        std::fs::write(path, serde_json::to_vec_pretty(&catalog).unwrap()).unwrap();
    }

    /// `pm2 <args>` against this shop's daemon, from the customer folder (never from inside
    /// `current`: PM2-NOTES.md).
    pub fn pm2(&self, args: &[&str]) -> Output {
        let mut cmd = Command::new("pm2");
        cmd.args(args)
            .current_dir(self.dir())
            .env("PM2_HOME", self.pm2_home.path());
        if let Some(policy) = self.cluster_sched {
            cmd.env("NODE_CLUSTER_SCHED_POLICY", policy);
        }
        cmd.output().unwrap()
    }

    /// Starts the apps from the ecosystem file and waits until they answer.
    pub fn start(&self) {
        let out = self.pm2(&["start", "ecosystem.config.js"]);
        assert!(
            out.status.success(),
            "pm2 start: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        for svc in SERVICES {
            self.wait_ok(svc, "/version");
        }
    }

    /// The port of `service`.
    pub fn port(&self, service: &str) -> u16 {
        self.ports[SERVICES.iter().position(|s| *s == service).unwrap()]
    }

    /// `GET http://127.0.0.1:<port><path>`: status and body (status 0 when nothing answered).
    pub fn get(&self, service: &str, path: &str) -> (u16, String) {
        get(self.port(service), path)
    }

    /// Waits up to 20 s for a 200.
    pub fn wait_ok(&self, service: &str, path: &str) {
        let until = Instant::now() + Duration::from_secs(20);
        loop {
            let (status, body) = self.get(service, path);
            if status == 200 {
                return;
            }
            assert!(
                Instant::now() < until,
                "{service} {path} never answered 200 (last: {status} {body})"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// The version each service reports.
    pub fn versions(&self) -> Vec<String> {
        SERVICES
            .iter()
            .map(|s| {
                let (_, body) = self.get(s, "/version");
                serde_json::from_str::<serde_json::Value>(&body)
                    .ok()
                    .and_then(|v| v["version"].as_str().map(str::to_owned))
                    .unwrap_or_default()
            })
            .collect()
    }

    /// `pm2 jlist` as JSON.
    pub fn jlist(&self) -> Vec<serde_json::Value> {
        let out = self.pm2(&["jlist"]);
        let text = String::from_utf8_lossy(&out.stdout);
        let line = text
            .lines()
            .rev()
            .find(|l| l.trim_start().starts_with('['))
            .unwrap_or("[]");
        serde_json::from_str(line).unwrap()
    }

    /// For every app of this shop: (name, pm_cwd as PM2 stores it, the real cwd of its process).
    pub fn app_cwds(&self) -> Vec<(String, String, PathBuf)> {
        self.jlist()
            .into_iter()
            .filter(|a| a["name"].as_str().unwrap_or("").starts_with(&self.domain))
            .map(|a| {
                let pid = a["pid"].as_u64().unwrap_or(0);
                let real = std::fs::read_link(format!("/proc/{pid}/cwd")).unwrap_or_default();
                (
                    a["name"].as_str().unwrap_or("").to_owned(),
                    a["pm2_env"]["pm_cwd"].as_str().unwrap_or("").to_owned(),
                    real,
                )
            })
            .collect()
    }
}

impl Drop for Shop {
    fn drop(&mut self) {
        let _ = self.pm2(&["kill"]);
    }
}

/// A plain HTTP GET with a short timeout.
pub fn get(port: u16, path: &str) -> (u16, String) {
    let agent = ureq::AgentBuilder::new()
        .timeout(Duration::from_secs(2))
        .build();
    match agent.get(&format!("http://127.0.0.1:{port}{path}")).call() {
        Ok(r) => (r.status(), r.into_string().unwrap_or_default()),
        Err(ureq::Error::Status(s, r)) => (s, r.into_string().unwrap_or_default()),
        Err(e) => (0, e.to_string()),
    }
}

/// Polls ports every 10 ms until stopped; counts answers that were not 200.
pub struct Poller {
    stop: Arc<AtomicBool>,
    handle: JoinHandle<Polled>,
}

/// What a poller saw.
#[derive(Debug, Clone, Default)]
pub struct Polled {
    pub ok: u64,
    pub failed: u64,
    /// The longest stretch without answers on one port, from the start of the first failed
    /// request to the next success.
    pub longest_outage: Duration,
}

impl Poller {
    /// Starts polling `GET <path>` on each port.
    pub fn start(ports: &[u16], path: &str) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let (ports, path, flag) = (ports.to_vec(), path.to_owned(), stop.clone());
        let handle = std::thread::spawn(move || {
            let mut seen = Polled::default();
            let mut down_since: Vec<Option<Instant>> = vec![None; ports.len()];
            while !flag.load(Ordering::SeqCst) {
                for (i, port) in ports.iter().enumerate() {
                    let sent = Instant::now();
                    let (status, _) = get(*port, &path);
                    if status == 200 {
                        seen.ok += 1;
                        if let Some(t) = down_since[i].take() {
                            seen.longest_outage = seen.longest_outage.max(t.elapsed());
                        }
                    } else {
                        seen.failed += 1;
                        // A hung request counts from when it was sent.
                        down_since[i].get_or_insert(sent);
                    }
                }
                std::thread::sleep(Duration::from_millis(10));
            }
            for t in down_since.into_iter().flatten() {
                seen.longest_outage = seen.longest_outage.max(t.elapsed());
            }
            seen
        });
        Poller { stop, handle }
    }

    /// Stops and reports.
    pub fn stop(self) -> Polled {
        self.stop.store(true, Ordering::SeqCst);
        self.handle.join().unwrap()
    }
}

/// The target of a symlink, as stored.
pub fn link(path: &Path) -> String {
    std::fs::read_link(path)
        .map(|t| t.to_string_lossy().into_owned())
        .unwrap_or_default()
}
