//! Three hosts, one PostgreSQL (issue 13): three real `qodify-host serve` processes, nodes
//! `node-a`, `node-b` and `node-c`, each in its own network namespace (a veth pair to this
//! test's namespace, `10.213.x.y/30`) with its own customers root and data dir, sharing one fresh
//! PostgreSQL database reached through the server's unix socket. Only C has the customer's
//! folder. The suite proves:
//! - a backup posted to A runs on C; SSE on A and Socket.IO on B stream the same live events
//!   (same seq, no gaps, no duplicates); downloads through A are redirected to C's advertised
//!   URL and give the manifest's sha256; a signed link made through B works through A;
//! - 100 parallel posts spread over the three hosts never make a second active run;
//! - after `kill -9` of C mid-backup, A and B never take the run, it shows `interrupted` after the
//!   lease, and C cleans up when it comes back; the next backup succeeds at once;
//! - after `kill -STOP` of C past its lease and `kill -CONT`, C's late writes are fenced off (no
//!   event, no finish), the run is recovered exactly once and C's disk is cleaned;
//! - an approval decided through B unblocks the run on C, one rejected through A fails it.
//!
//! Without `ip netns` (not root) the three serves listen on 127.0.0.1 instead, with a note.

mod common;
#[path = "common/netns.rs"]
mod netns;
mod pg;

use std::io::{BufRead as _, BufReader, Read as _, Write as _};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc::{self, Receiver};
use std::time::{Duration, Instant, SystemTime};

use common::{Host, json_of, repo, write};
use netns::Netns;
use pg::{TestDb, psql};
use serde_json::{Value, json};

const TOKEN: &str = "test-token-hosts";
const DOMAIN: &str = "shop.example.com";
/// `[runs] lease` of every host: how long a claim lasts without renewal.
const LEASE: Duration = Duration::from_secs(3);
/// The port every serve listens on, inside its own namespace.
const PORT: u16 = 8610;
const NAMES: [&str; 3] = ["node-a", "node-b", "node-c"];
/// What the backup pipeline writes into until the backup is complete.
const PARTIAL_PREFIX: &str = ".partial-";

/// One cluster at a time: three serves with a 3 s lease on a small machine must not starve each
/// other, or a healthy node would lose its lease.
fn serial() -> std::sync::MutexGuard<'static, ()> {
    static SERIAL: Mutex<()> = Mutex::new(());
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

/// One host: its folders, its settings, its namespace and its running serve.
struct Node {
    /// The running serve (killed on drop, before the namespace goes).
    child: Option<Child>,
    name: &'static str,
    /// `ip:port` it listens on.
    listen: String,
    /// `http://ip:port`: where this test reaches it, and its `advertise_url`.
    base: String,
    ns: Option<Netns>,
    host: Host,
    pipelines: PathBuf,
    store: String,
    config: PathBuf,
    log: PathBuf,
}

impl Drop for Node {
    fn drop(&mut self) {
        self.kill();
    }
}

impl Node {
    fn new(name: &'static str, store: &str, pipelines: &Path, releases: &Path) -> Self {
        let host = Host::new();
        let ns = match Netns::usable() {
            Ok(()) => Some(Netns::new().unwrap_or_else(|e| panic!("a namespace for {name}: {e}"))),
            Err(e) => {
                static NOTE: std::sync::Once = std::sync::Once::new();
                NOTE.call_once(|| {
                    eprintln!(
                        "note: network namespaces are not usable here ({e}); the three hosts \
                         listen on 127.0.0.1 instead"
                    )
                });
                None
            }
        };
        let listen = match &ns {
            Some(ns) => format!("{}:{PORT}", ns.addr),
            None => {
                let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
                l.local_addr().unwrap().to_string()
            }
        };
        let base = format!("http://{listen}");
        let config = host.tmp.path().join("qodify-host.toml");
        write(
            &config,
            format!(
                "node = \"{name}\"\nadvertise_url = \"{base}\"\nreleases_dir = \"{}\"\n\n\
                 [runs]\nlease = \"{}s\"\n",
                releases.display(),
                LEASE.as_secs()
            ),
        );
        let log = host.tmp.path().join(format!("serve-{name}.log"));
        Self {
            child: None,
            name,
            listen,
            base,
            ns,
            host,
            pipelines: pipelines.to_owned(),
            store: store.to_owned(),
            config,
            log,
        }
    }

    /// Starts `serve` (again: same data dir, customers root and namespace) and waits until it
    /// listens.
    fn start(&mut self) {
        assert!(self.child.is_none(), "{} is running", self.name);
        let mut cmd = self.host.cmd_with_pipelines(&self.pipelines);
        cmd.env("QODIFY_CONFIG", &self.config)
            .env("QODIFY_STORE", &self.store)
            .env("QODIFY_LOG", "info")
            .env("NO_COLOR", "1")
            .env("QODIFY_API_TOKEN", TOKEN)
            .args(["serve", "--listen", &self.listen, "--workers", "2"]);
        let mut cmd = match &self.ns {
            Some(ns) => ns.wrap(&cmd),
            None => cmd,
        };
        let mut log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .unwrap();
        writeln!(log, "---- {} starts", self.name).unwrap();
        let mut child = cmd
            .stdout(Stdio::piped())
            .stderr(Stdio::from(log))
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        self.child = Some(child);
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let mut lines = BufReader::new(stdout).lines();
            let first = lines.next().and_then(Result::ok).unwrap_or_default();
            let _ = tx.send(first);
            // Keep the pipe read: a serve never blocks on a full stdout.
            for _ in lines {}
        });
        let line = rx.recv_timeout(Duration::from_secs(60)).unwrap_or_default();
        assert_eq!(
            line.trim(),
            format!("listening on {}", self.base),
            "{} did not start; log:\n{}",
            self.name,
            tail(&self.log, 60)
        );
    }

    /// `kill -9` and reaped; nothing when not running.
    fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    fn signal(&self, sig: &str) {
        let pid = self.child.as_ref().expect("not running").id().to_string();
        let ok = Command::new("kill")
            .args([sig, &pid])
            .status()
            .unwrap()
            .success();
        assert!(ok, "kill {sig} {pid}");
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    fn get(&self, path: &str) -> (u16, Value) {
        json_of(common::api(TOKEN, "GET", &self.url(path)).call())
    }

    fn post(&self, path: &str, body: Value) -> (u16, Value) {
        json_of(common::api(TOKEN, "POST", &self.url(path)).send_json(body))
    }

    fn put(&self, path: &str, body: Value) -> (u16, Value) {
        json_of(common::api(TOKEN, "PUT", &self.url(path)).send_json(body))
    }

    /// The customer's folder on this host's disk.
    fn customer(&self) -> PathBuf {
        self.host.customer(DOMAIN)
    }

    /// Names of partial backup folders in the customer's `backups/` on this host.
    fn partials(&self) -> Vec<String> {
        std::fs::read_dir(self.customer().join("backups"))
            .map(|rd| {
                rd.flatten()
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .filter(|n| n.starts_with(PARTIAL_PREFIX))
                    .collect()
            })
            .unwrap_or_default()
    }
}

/// The last `n` lines of a file.
fn tail(path: &Path, n: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// What a cluster is made with.
struct Setup {
    tag: &'static str,
    /// MiB of incompressible uploads in the customer's folder.
    uploads_mib: u64,
    /// The pipelines every host loads (default: the shipped ones).
    pipelines: Option<PathBuf>,
    /// Extra files in the customer's folder (relative path, content).
    files: Vec<(&'static str, String)>,
}

/// Three hosts on one PostgreSQL database, the customer's folder on C, registered through A and
/// adopted by C.
struct Cluster {
    nodes: Vec<Node>,
    /// The hosts' shared state.
    state: TestDb,
    /// The customer's shop database (dumped by the backups), dropped with the cluster.
    _shop: TestDb,
    /// Every host's `releases_dir` (one folder: only C runs anything).
    releases: PathBuf,
    _scratch: tempfile::TempDir,
    _serial: std::sync::MutexGuard<'static, ()>,
}

/// A PostgreSQL URL through the server's unix socket: the only way to it from a namespace.
fn socket_url(user_info: &str, db: &str) -> String {
    format!("postgres://{user_info}@%2Fvar%2Frun%2Fpostgresql/{db}")
}

impl Drop for Cluster {
    fn drop(&mut self) {
        keep_compile_cache(&self.nodes[2]);
    }
}

impl Cluster {
    fn new(setup: Setup) -> Self {
        let serial = serial();
        let scratch = tempfile::tempdir().unwrap();
        let releases = scratch.path().join("releases");
        std::fs::create_dir_all(&releases).unwrap();
        let pipelines = setup
            .pipelines
            .clone()
            .unwrap_or_else(|| repo().join("pipelines"));
        let shop = TestDb::empty(&format!("{}_shop", setup.tag));
        psql(
            &shop.name,
            "CREATE TABLE orders (id serial PRIMARY KEY, note text); \
             INSERT INTO orders (note) SELECT md5(i::text) FROM generate_series(1, 2000) i;",
        );
        let state = TestDb::empty(&format!("{}_state", setup.tag));
        let store = socket_url("postgres", &state.name);
        let mut nodes: Vec<Node> = NAMES
            .iter()
            .map(|n| Node::new(n, &store, &pipelines, &releases))
            .collect();

        // The customer's folder, on C only.
        let dir = nodes[2].customer();
        write(
            &dir.join("backend/package.json"),
            r#"{"name":"backend","version":"1.0.0"}"#,
        );
        let mut env = format!("DATABASE_URL={}\n", socket_url("postgres:pw", &shop.name));
        for (path, content) in &setup.files {
            if *path == "backend/.env" {
                env.push_str(content);
            } else {
                write(&dir.join(path), content);
            }
        }
        write(&dir.join("backend/.env"), env);
        random_file(&dir.join("backend/uploads/photos.bin"), setup.uploads_mib);
        seed_compile_cache(&nodes[2]);

        for n in &mut nodes {
            n.start();
            let place =
                n.ns.as_ref()
                    .map_or("127.0.0.1".to_owned(), |ns| ns.name.clone());
            eprintln!("{} at {} ({place})", n.name, n.base);
        }
        let cluster = Self {
            nodes,
            state,
            _shop: shop,
            releases,
            _scratch: scratch,
            _serial: serial,
        };
        // Registered through A, which does not have the folder: C adopts it.
        let (code, body) = cluster
            .a()
            .put("/api/customers/42", json!({"domain": DOMAIN}));
        assert_eq!(code, 200, "{body}\n{}", cluster.logs());
        cluster.wait(
            "node-c to adopt the customer",
            Duration::from_secs(10),
            || {
                let (_, c) = cluster.a().get("/api/customers/42");
                if c["node"] == "node-c" {
                    Ok(())
                } else {
                    Err(c.to_string())
                }
            },
        );
        cluster
    }

    fn a(&self) -> &Node {
        &self.nodes[0]
    }

    fn b(&self) -> &Node {
        &self.nodes[1]
    }

    fn c(&self) -> &Node {
        &self.nodes[2]
    }

    /// The tail of every serve's log.
    fn logs(&self) -> String {
        self.nodes
            .iter()
            .map(|n| format!("==== {} ({}) log:\n{}\n", n.name, n.base, tail(&n.log, 40)))
            .collect()
    }

    /// Polls `probe` every 50 ms until it gives `Ok`; past `within`, fails with what it last
    /// saw and the logs.
    fn wait<T>(
        &self,
        what: &str,
        within: Duration,
        mut probe: impl FnMut() -> Result<T, String>,
    ) -> T {
        let until = Instant::now() + within;
        loop {
            match probe() {
                Ok(v) => return v,
                Err(seen) => assert!(
                    Instant::now() < until,
                    "timed out after {within:?} waiting for {what}; last seen: {seen}\n{}",
                    self.logs()
                ),
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// One value from the shared state database.
    fn sql(&self, query: &str) -> String {
        psql(&self.state.name, query)
    }

    /// Posts a fast backup through `node`; the run id.
    fn post_backup(&self, node: &Node) -> String {
        let (code, body) = node.post(
            "/api/customers/42/backups",
            json!({"type": "fast", "triggeredBy": "ayse@qodify"}),
        );
        assert_eq!(code, 202, "through {}: {body}\n{}", node.name, self.logs());
        body["runId"].as_str().unwrap().to_owned()
    }

    /// The run as `node` shows it.
    fn run(&self, node: &Node, run_id: &str) -> Value {
        let (code, run) = node.get(&format!("/api/runs/{run_id}"));
        assert_eq!(code, 200, "{run}\n{}", self.logs());
        run
    }

    /// Waits until the run has ended, as `node` shows it.
    fn ended(&self, node: &Node, run_id: &str, within: Duration) -> Value {
        self.wait(&format!("run {run_id} to end"), within, || {
            let run = self.run(node, run_id);
            match run["state"].as_str() {
                Some("queued" | "running") => Err(run.to_string()),
                _ => Ok(run),
            }
        })
    }

    /// Waits until the run is running on C with a partial backup folder on C's disk.
    fn running_on_c(&self, run_id: &str) {
        self.wait(
            "the backup to be under way on C",
            Duration::from_secs(30),
            || {
                let row = self.sql(&format!(
                    "SELECT state || ' ' || coalesce(node, '-') FROM runs WHERE id = '{run_id}'"
                ));
                if row == "running node-c" && !self.c().partials().is_empty() {
                    Ok(())
                } else {
                    Err(format!("{row}; partials on C: {:?}", self.c().partials()))
                }
            },
        );
    }

    /// `node`, `epoch`, `state` of the run in the store.
    fn run_row(&self, run_id: &str) -> String {
        self.sql(&format!(
            "SELECT coalesce(node, '-') || ' ' || epoch || ' ' || state FROM runs WHERE id = '{run_id}'"
        ))
    }

    /// The customer's `run.interrupted` audit entries, as `node` shows them.
    fn interrupted_audit(&self, node: &Node) -> Vec<Value> {
        let (code, audit) = node.get("/api/audit?customer=42&action=run.interrupted");
        assert_eq!(code, 200, "{audit}");
        audit["entries"].as_array().unwrap().clone()
    }

    /// The results of the run's lines in the customer's backup history, as `node` shows it.
    fn history(&self, node: &Node, run_id: &str) -> Vec<Value> {
        let (code, history) = node.get("/api/customers/42/backups");
        assert_eq!(code, 200, "{history}");
        history["backups"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|b| b["runId"] == run_id)
            .map(|b| b["result"].clone())
            .collect()
    }

    /// A backup posted through `node` right away is accepted and succeeds on C (the database and
    /// the services; the uploads are left out, to be quick).
    fn next_backup_succeeds(&self, node: &Node) {
        let (code, body) = node.post(
            "/api/customers/42/backups",
            json!({"type": "custom", "include": {"uploads": false}}),
        );
        assert_eq!(code, 202, "through {}: {body}\n{}", node.name, self.logs());
        let run_id = body["runId"].as_str().unwrap();
        let run = self.ended(node, run_id, Duration::from_secs(60));
        assert_eq!(run["state"], "succeeded", "{run}\n{}", self.logs());
        assert_eq!(run["node"], "node-c", "{run}");
        let backup_id = run["backupId"].as_str().unwrap();
        let dir = self.c().customer().join("backups").join(backup_id);
        assert!(dir.join("db.dump").is_file(), "{}", dir.display());
    }
}

/// Compiled plugins kept in the target folder between clusters (and test runs): C, the only host
/// that runs steps, starts with them and gives back what it compiled, so that the plugins are
/// compiled once rather than in every test (a dozen seconds each on a small machine). Safe to
/// share: the host loads an entry only when its MAC, made with the key that is copied along,
/// matches, and compiles again whatever does not.
fn compile_cache() -> PathBuf {
    common::target_dir().join("hosts_pg-compile-cache")
}

/// Past this size the shared cache is started afresh (entries of old builds pile up).
const COMPILE_CACHE_CAP: u64 = 1 << 30;

/// `cp -a from/. to` (a best effort: a cache).
fn copy_tree(from: &Path, to: &Path) {
    let _ = std::fs::create_dir_all(to);
    let _ = Command::new("cp")
        .arg("-a")
        .arg(from.join("."))
        .arg(to)
        .status();
}

/// The shared compiled plugins into `node`'s data dir, before it starts.
fn seed_compile_cache(node: &Node) {
    let shared = compile_cache();
    let size: u64 = walk_size(&shared);
    if size > COMPILE_CACHE_CAP {
        let _ = std::fs::remove_dir_all(&shared);
    } else if shared.is_dir() {
        let data = node.host.tmp.path().join("data");
        let _ = std::fs::create_dir_all(&data);
        common::chmod(&data, 0o700);
        copy_tree(&shared, &data.join("cache"));
    }
}

/// What `node` compiled, back into the shared cache.
fn keep_compile_cache(node: &Node) {
    let cache = node.host.tmp.path().join("data/cache");
    if cache.is_dir() {
        copy_tree(&cache, &compile_cache());
    }
}

/// Bytes of the files under `dir` (0 when it does not exist).
fn walk_size(dir: &Path) -> u64 {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return 0;
    };
    rd.flatten()
        .map(|e| match e.file_type() {
            Ok(t) if t.is_dir() => walk_size(&e.path()),
            _ => e.metadata().map(|m| m.len()).unwrap_or(0),
        })
        .sum()
}

/// `mib` MiB of random bytes (from the kernel: fast even in an unoptimised test build).
fn random_file(path: &Path, mib: u64) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    let mut f = std::fs::File::create(path).unwrap();
    let n = std::io::copy(
        &mut std::fs::File::open("/dev/urandom").unwrap().take(mib << 20),
        &mut f,
    )
    .unwrap();
    assert_eq!(n, mib << 20);
}

/// Lowercase hex sha256 of bytes.
fn sha256(bytes: &[u8]) -> String {
    use sha2::Digest as _;
    hex::encode(sha2::Sha256::digest(bytes))
}

/// An agent that shows redirects instead of following them.
fn no_redirects() -> ureq::Agent {
    ureq::AgentBuilder::new()
        .redirects(0)
        .timeout(Duration::from_secs(60))
        .build()
}

/// The status, `Location` and body of a GET (with the token when given), redirects not followed.
fn fetch(url: &str, token: Option<&str>) -> (u16, Option<String>, Vec<u8>) {
    let mut req = no_redirects().get(url);
    if let Some(t) = token {
        req = req.set("Authorization", &format!("Bearer {t}"));
    }
    let resp = match req.call() {
        Ok(r) => r,
        Err(ureq::Error::Status(_, r)) => r,
        Err(e) => panic!("GET {url}: {e}"),
    };
    let code = resp.status();
    let location = resp.header("Location").map(str::to_owned);
    let mut body = Vec::new();
    resp.into_reader().read_to_end(&mut body).unwrap();
    (code, location, body)
}

/// A run's events: `(seq, name, data)`.
type Events = Vec<(u64, String, Value)>;

/// A run's whole SSE stream, read on a thread until the stream ends; and when it was
/// connected (its headers arrived).
fn sse(node: &Node, run_id: &str) -> Receiver<Result<(SystemTime, Events), String>> {
    let url = node.url(&format!("/api/runs/{run_id}/events"));
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let read = || -> Result<(SystemTime, Events), String> {
            let resp = common::api(TOKEN, "GET", &url)
                .timeout(Duration::from_secs(90))
                .call()
                .map_err(|e| format!("GET {url}: {e}"))?;
            let connected = SystemTime::now();
            let (mut events, mut id, mut name) = (Vec::new(), 0, String::new());
            for line in BufReader::new(resp.into_reader()).lines() {
                let line = line.map_err(|e| format!("reading {url}: {e} after {events:?}"))?;
                if let Some(v) = line.strip_prefix("id:") {
                    id = v.trim().parse().map_err(|e| format!("id {v:?}: {e}"))?;
                } else if let Some(n) = line.strip_prefix("event:") {
                    name = n.trim().to_owned();
                } else if let Some(d) = line.strip_prefix("data:") {
                    let data = serde_json::from_str(d.trim()).map_err(|e| format!("{d}: {e}"))?;
                    events.push((id, name.clone(), data));
                }
            }
            Ok((connected, events))
        };
        let _ = tx.send(read());
    });
    rx
}

/// `watch.mjs` following one run over Socket.IO; its JSON lines, read on a thread.
struct Watcher {
    child: Child,
    lines: Receiver<Value>,
    seen: Vec<Value>,
}

impl Drop for Watcher {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Watcher {
    /// `watch.mjs` on `node` with `args` (`--run <id>` or `--customer <id>`).
    fn start(node: &Node, args: &[&str]) -> Self {
        common::ensure_socketio_client();
        let mut child = Command::new("node")
            .arg(common::socketio_client_dir().join("watch.mjs"))
            .arg(&node.base)
            .args(args)
            .args(["--token", TOKEN, "--timeout", "90"])
            .env_remove("QODIFY_API_TOKEN")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("node must be installed");
        let stdout = child.stdout.take().unwrap();
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                let v = serde_json::from_str(&line).unwrap_or(json!({ "unparsed": line }));
                if tx.send(v).is_err() {
                    break;
                }
            }
        });
        Self {
            child,
            lines,
            seen: Vec::new(),
        }
    }

    /// The next line that has `key`; every line so far when none came within `within`.
    fn wait_for(&mut self, key: &str, within: Duration) -> Result<Value, Vec<Value>> {
        let until = Instant::now() + within;
        loop {
            let left = until.saturating_duration_since(Instant::now());
            let Ok(v) = self.lines.recv_timeout(left) else {
                return Err(self.seen.clone());
            };
            self.seen.push(v.clone());
            if let Some(found) = v.get(key) {
                return Ok(found.clone());
            }
        }
    }

    /// Every line until the client exits (its code), or what came before `within` passed.
    fn finish(mut self, within: Duration) -> Result<(i32, Vec<Value>), Vec<Value>> {
        let until = Instant::now() + within;
        let mut seen = std::mem::take(&mut self.seen);
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                seen.extend(self.lines.try_iter());
                // The reader thread ends with the pipe.
                seen.extend(self.lines.iter());
                return Ok((status.code().unwrap_or(-1), seen));
            }
            seen.extend(self.lines.try_iter());
            if Instant::now() > until {
                return Err(seen);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

/// JavaScript has one number type: `0.0` comes back from node as `0`.
fn numbers_as_f64(v: Value) -> Value {
    match v {
        Value::Number(n) => json!(n.as_f64()),
        Value::Array(a) => a.into_iter().map(numbers_as_f64).collect(),
        Value::Object(o) => o.into_iter().map(|(k, v)| (k, numbers_as_f64(v))).collect(),
        other => other,
    }
}

/// The parts of a test: a part that fails is recorded (its panic message) instead of ending the
/// test, so that the parts after it, which do not depend on it, are checked too; [`Parts::finish`]
/// fails the test with every failure.
#[derive(Default)]
struct Parts {
    failed: Vec<String>,
}

impl Parts {
    fn check(&mut self, part: &str, f: impl FnOnce()) {
        if let Err(e) = std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)) {
            let message = e
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| e.downcast_ref::<&str>().map(|s| (*s).to_owned()))
                .unwrap_or_default();
            self.failed.push(format!("[{part}] {message}"));
        }
    }

    fn finish(self) {
        assert!(
            self.failed.is_empty(),
            "{} part(s) failed:\n{}",
            self.failed.len(),
            self.failed.join("\n\n")
        );
    }
}

/// Seqs are 1, 2, 3, … with no gap and no duplicate.
fn assert_contiguous(what: &str, seqs: &[u64]) {
    let expected: Vec<u64> = (1..=seqs.len() as u64).collect();
    assert_eq!(
        seqs, expected,
        "{what}: seqs must be 1..n, no gaps, no duplicates"
    );
}

#[test]
fn a_backup_posted_to_a_runs_on_c_streams_to_a_and_b_and_downloads_through_a_redirect_to_c() {
    let cl = Cluster::new(Setup {
        tag: "hosts_run",
        uploads_mib: 24,
        pipelines: None,
        files: vec![],
    });
    // Socket.IO on B follows the customer's room from before the run exists: all it gets is
    // live. SSE on A follows the run from as soon as it exists.
    let mut sio_b = Watcher::start(cl.b(), &["--customer", "42"]);
    let ack = sio_b
        .wait_for("ack", Duration::from_secs(30))
        .unwrap_or_else(|seen| panic!("no ack from watch.mjs on B: {seen:?}\n{}", cl.logs()));
    assert_eq!(ack, json!({"ok": true, "replayed": 0}));
    let run_id = cl.post_backup(cl.a());
    let sse_a = sse(cl.a(), &run_id);

    let run = cl.ended(cl.a(), &run_id, Duration::from_secs(60));
    assert_eq!(run["state"], "succeeded", "{run}\n{}", cl.logs());
    assert_eq!(run["node"], "node-c", "{run}");
    assert_eq!(cl.run_row(&run_id), "node-c 1 succeeded");
    let backup_id = run["backupId"].as_str().unwrap().to_owned();
    let on_c = cl.c().customer().join("backups").join(&backup_id);
    assert!(on_c.join("backup.json").is_file(), "{}", on_c.display());
    for n in [cl.a(), cl.b()] {
        assert!(
            !n.customer().exists(),
            "{} has the customer's folder",
            n.name
        );
    }

    // The same story on both: same seq, names and payloads, 1..n, ending with completion.
    let (connected, events) = match sse_a.recv_timeout(Duration::from_secs(30)) {
        Ok(Ok(stream)) => stream,
        Ok(Err(e)) => panic!("SSE on A: {e}\n{}", cl.logs()),
        Err(_) => panic!("SSE on A did not end with the run\n{}", cl.logs()),
    };
    let seqs: Vec<u64> = events.iter().map(|e| e.0).collect();
    assert_contiguous("SSE on A", &seqs);
    let names: Vec<&str> = events.iter().map(|e| e.1.as_str()).collect();
    assert!(names.contains(&"backup-progress"), "{names:?}");
    assert_eq!(names.last(), Some(&"backup-completed"), "{names:?}");
    // SSE on A shows what C stored.
    let stored = cl.sql(&format!(
        "SELECT string_agg(seq || ':' || name, ',' ORDER BY seq) FROM events WHERE run_id = '{run_id}'"
    ));
    let streamed: Vec<String> = events.iter().map(|e| format!("{}:{}", e.0, e.1)).collect();
    assert_eq!(stored, streamed.join(","));
    // Live, not a replay of a finished run: A's stream was open before C stored the last event.
    let last_stored: f64 = cl
        .sql(&format!(
            "SELECT extract(epoch FROM at::timestamptz) * 1000 FROM events \
             WHERE run_id = '{run_id}' ORDER BY seq DESC LIMIT 1"
        ))
        .parse()
        .unwrap();
    let connected = connected.duration_since(SystemTime::UNIX_EPOCH).unwrap();
    assert!(
        (connected.as_millis() as f64) < last_stored,
        "SSE on A connected at {connected:?}, after the run's end ({last_stored} ms)"
    );
    let mut parts = Parts::default();
    parts.check("Socket.IO on B", || {
        // The run has ended: the client has had everything by now.
        let lines = match sio_b.finish(Duration::from_secs(15)) {
            Ok((0, lines)) => lines,
            Ok((code, lines)) => {
                panic!("watch.mjs on B exited {code}: {lines:?}\n{}", cl.logs())
            }
            Err(lines) => panic!("watch.mjs on B did not end: {lines:?}\n{}", cl.logs()),
        };
        let got: Events = lines
            .iter()
            .filter_map(|l| {
                Some((
                    l["data"]["seq"].as_u64()?,
                    l["event"].as_str()?.to_owned(),
                    numbers_as_f64(l["data"].clone()),
                ))
            })
            .collect();
        let expected: Events = events
            .iter()
            .map(|(seq, name, data)| {
                let mut d = data.clone();
                d["customerId"] = json!("42");
                d["seq"] = json!(seq);
                (*seq, name.clone(), numbers_as_f64(d))
            })
            .collect();
        assert_eq!(got, expected, "Socket.IO on B vs SSE on A");
    });

    // Downloads through A: a redirect to C's advertised URL, the manifest's bytes from there.
    let manifest: Value =
        serde_json::from_slice(&std::fs::read(on_c.join("backup.json")).unwrap()).unwrap();
    let artifacts = manifest["artifacts"].as_array().unwrap();
    let names: Vec<&str> = artifacts
        .iter()
        .map(|a| a["file"].as_str().unwrap())
        .collect();
    assert!(names.contains(&"db.dump"), "{manifest}");
    assert!(names.contains(&"uploads.tar.gz"), "{manifest}");
    let check = |what: &str, bytes: &[u8], artifact: &Value| {
        assert_eq!(
            sha256(bytes),
            artifact["sha256"].as_str().unwrap(),
            "{what}"
        );
        assert_eq!(
            bytes.len() as u64,
            artifact["size"].as_u64().unwrap(),
            "{what}"
        );
    };
    for artifact in artifacts {
        let file = artifact["file"].as_str().unwrap();
        let path = format!("/api/customers/42/backups/{backup_id}/download?file={file}");
        // C, which holds the backup, serves it.
        let (code, _, bytes) = fetch(&cl.c().url(&path), Some(TOKEN));
        assert_eq!(code, 200, "{}", String::from_utf8_lossy(&bytes));
        check(&format!("{file} from C"), &bytes, artifact);
        parts.check(&format!("{file} through A"), || {
            let (code, location, body) = fetch(&cl.a().url(&path), Some(TOKEN));
            assert_eq!(
                code,
                307,
                "download through A: {}\n{}",
                String::from_utf8_lossy(&body),
                cl.logs()
            );
            assert_eq!(location.as_deref(), Some(cl.c().url(&path).as_str()));
            let (code, _, bytes) = fetch(&location.unwrap(), Some(TOKEN));
            assert_eq!(code, 200, "{}", String::from_utf8_lossy(&bytes));
            check(&format!("{file} through A"), &bytes, artifact);
        });
    }

    // A signed link made through B works through A (redirected to C), without a token.
    parts.check("signed link made through B, used through A", || {
        let (code, link) = cl.b().post(
            &format!("/api/customers/42/backups/{backup_id}/download-url"),
            json!({"file": "db.dump", "ttlSeconds": 60}),
        );
        assert_eq!(code, 200, "download-url through B: {link}\n{}", cl.logs());
        let link = link["url"].as_str().unwrap().to_owned();
        let (code, location, body) = fetch(&cl.a().url(&link), None);
        assert_eq!(
            code,
            307,
            "signed link through A: {}",
            String::from_utf8_lossy(&body)
        );
        assert_eq!(location.as_deref(), Some(cl.c().url(&link).as_str()));
        let (code, _, bytes) = fetch(&location.unwrap(), None);
        assert_eq!(code, 200, "{}", String::from_utf8_lossy(&bytes));
        let dump = artifacts.iter().find(|a| a["file"] == "db.dump").unwrap();
        check("db.dump by a signed link", &bytes, dump);
    });
    parts.finish();
}

/// One psql session, one query after the other: a sample of the store in a millisecond, where a
/// psql process per query takes a hundred.
struct Session {
    child: Child,
    out: BufReader<std::process::ChildStdout>,
}

impl Session {
    fn open(db: &str) -> Self {
        let mut child = Command::new("psql")
            .args(["-h", "127.0.0.1", "-U", "postgres", "-X", "-q", "-t", "-A"])
            .args(["-v", "ON_ERROR_STOP=1", "-d", db])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("psql must be installed");
        let out = BufReader::new(child.stdout.take().unwrap());
        Self { child, out }
    }

    /// The one line a one-line query answers.
    fn query(&mut self, sql: &str) -> String {
        let stdin = self.child.stdin.as_mut().unwrap();
        writeln!(stdin, "{};", sql.replace('\n', " ")).unwrap();
        stdin.flush().unwrap();
        let mut line = String::new();
        let n = self.out.read_line(&mut line).unwrap();
        assert!(n > 0, "psql ended: {sql}");
        line.trim().to_owned()
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Sets its flag when dropped.
struct StopOnDrop<'a>(&'a AtomicBool);

impl Drop for StopOnDrop<'_> {
    fn drop(&mut self) {
        self.0.store(true, Ordering::SeqCst);
    }
}

#[test]
fn a_hundred_parallel_posts_spread_over_three_hosts_make_one_active_run_at_a_time() {
    let cl = Cluster::new(Setup {
        tag: "hosts_many",
        uploads_mib: 16,
        pipelines: None,
        files: vec![],
    });
    const ACTIVE: &str = "SELECT count(*) FILTER (WHERE state = 'running') || ' ' || \
                                 count(*) FILTER (WHERE state IN ('queued', 'running')) \
                          FROM runs WHERE customer_id = '42'";
    let done = AtomicBool::new(false);
    let samples = AtomicUsize::new(0);
    let (codes, worst) = std::thread::scope(|scope| {
        // Samples the store while the posts and their runs go on.
        let sampler = scope.spawn(|| {
            let mut session = Session::open(&cl.state.name);
            let mut worst = (0u32, 0u32);
            while !done.load(Ordering::SeqCst) {
                let row = session.query(ACTIVE);
                let (running, active) = row.split_once(' ').unwrap();
                let (running, active): (u32, u32) =
                    (running.parse().unwrap(), active.parse().unwrap());
                worst = (worst.0.max(running), worst.1.max(active));
                samples.fetch_add(1, Ordering::SeqCst);
            }
            worst
        });
        // Stops the sampler however this closure ends (a panic too), or the scope never would.
        let stop = StopOnDrop(&done);
        let posts: Vec<_> = (0..100)
            .map(|i| {
                let node = &cl.nodes[i % 3];
                scope.spawn(move || {
                    let (code, body) =
                        node.post("/api/customers/42/backups", json!({"type": "fast"}));
                    (node.name, code, body)
                })
            })
            .collect();
        let codes: Vec<(&str, u16, Value)> = posts.into_iter().map(|h| h.join().unwrap()).collect();
        // Until every accepted run has ended.
        cl.wait("the accepted runs to end", Duration::from_secs(90), || {
            let row = cl.sql(ACTIVE);
            if row == "0 0" { Ok(()) } else { Err(row) }
        });
        drop(stop);
        (codes, sampler.join().unwrap())
    });
    let odd: Vec<_> = codes
        .iter()
        .filter(|(_, code, _)| ![202, 409].contains(code))
        .collect();
    assert!(odd.is_empty(), "answers other than 202 and 409: {odd:?}");
    for (name, code, body) in &codes {
        if *code == 409 {
            assert!(body["activeRunId"].is_string(), "{name}: {body}");
        }
    }
    let accepted: Vec<&str> = codes
        .iter()
        .filter(|(_, code, _)| *code == 202)
        .map(|(_, _, body)| body["runId"].as_str().unwrap())
        .collect();
    assert!(!accepted.is_empty(), "{codes:?}");
    eprintln!(
        "{} posts accepted, {} refused as busy; {} samples of the store",
        accepted.len(),
        codes.len() - accepted.len(),
        samples.load(Ordering::SeqCst)
    );
    assert!(samples.load(Ordering::SeqCst) >= 100, "too few samples");
    assert_eq!(
        worst,
        (1, 1),
        "at most one active run, and there was one: (running, active)"
    );
    // Every accepted run, and only those, exists; each ran on C and succeeded.
    let runs = cl.sql(
        "SELECT string_agg(id || ' ' || state || ' ' || coalesce(node, '-'), ',' ORDER BY id) \
         FROM runs WHERE customer_id = '42'",
    );
    let mut expected: Vec<String> = accepted
        .iter()
        .map(|id| format!("{id} succeeded node-c"))
        .collect();
    expected.sort();
    assert_eq!(runs, expected.join(","), "{}", cl.logs());
    assert_eq!(cl.c().partials(), Vec::<String>::new());
}

#[test]
fn kill_9_of_c_mid_backup_leaves_the_run_to_c_interrupted_after_the_lease_and_cleaned_when_c_returns()
 {
    let mut cl = Cluster::new(Setup {
        tag: "hosts_kill",
        uploads_mib: 300,
        pipelines: None,
        files: vec![],
    });
    let run_id = cl.post_backup(cl.a());
    cl.running_on_c(&run_id);
    assert_eq!(cl.run_row(&run_id), "node-c 1 running");
    cl.nodes[2].kill();
    let killed = Instant::now();

    // A and B never take the run; after the lease it shows interrupted through A.
    let mut parts = Parts::default();
    parts.check("interrupted after the lease, through A", || {
        let run = cl.wait(
            "A to show the run interrupted after C's lease",
            LEASE + Duration::from_secs(7),
            || {
                let row = cl.run_row(&run_id);
                assert!(
                    row.starts_with("node-c 1 "),
                    "another node took the run: {row}\n{}",
                    cl.logs()
                );
                let run = cl.run(cl.a(), &run_id);
                if run["state"] == "interrupted" {
                    Ok(run)
                } else {
                    Err(run.to_string())
                }
            },
        );
        assert!(
            killed.elapsed() >= LEASE - Duration::from_millis(500),
            "interrupted {:?} after the kill, before the lease ran out",
            killed.elapsed()
        );
        assert_eq!(run["node"], "node-c", "{run}");
    });
    // Still C's, still its first claim: nobody else ran it meanwhile.
    let row = cl.run_row(&run_id);
    assert!(row.starts_with("node-c 1 "), "{row}");

    // C comes back (same folders, same namespace): its partial backup is removed, the run stays
    // (or, without a node to mark it, becomes) interrupted, recovered once.
    cl.nodes[2].start();
    assert_eq!(cl.c().partials(), Vec::<String>::new(), "{}", cl.logs());
    assert_eq!(cl.run(cl.a(), &run_id)["state"], "interrupted");
    assert_eq!(cl.run_row(&run_id), "node-c 1 interrupted");
    let audit = cl.interrupted_audit(cl.a());
    assert_eq!(audit.len(), 1, "{audit:?}");
    assert_eq!(audit[0]["runId"], run_id.as_str(), "{audit:?}");
    assert_eq!(cl.history(cl.b(), &run_id), ["interrupted"]);
    cl.next_backup_succeeds(cl.a());
    parts.finish();
}

#[test]
fn kill_stop_of_c_past_its_lease_fences_its_late_writes_and_recovers_the_run_once() {
    let cl = Cluster::new(Setup {
        tag: "hosts_stop",
        uploads_mib: 300,
        pipelines: None,
        files: vec![],
    });
    let run_id = cl.post_backup(cl.a());
    cl.running_on_c(&run_id);
    cl.c().signal("-STOP");
    let stopped = Instant::now();

    // While C is stopped, A or B marks the run interrupted. The run's row and its newest event,
    // read in one statement, when it was first seen marked.
    let marked = {
        let until = stopped + LEASE * 3;
        let mut marked = None;
        while Instant::now() < until {
            let row = cl.sql(&format!(
                "SELECT state || '|' || coalesce(finished_at, '-') || '|' || coalesce(node, '-') \
                 || '|' || epoch || '|' || \
                 (SELECT coalesce(max(seq), 0) FROM events e WHERE e.run_id = r.id) \
                 FROM runs r WHERE id = '{run_id}'"
            ));
            if marked.is_none() && row.starts_with("interrupted|") {
                marked = Some((row, stopped.elapsed()));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        marked
    };
    cl.c().signal("-CONT");
    let (row, after) = marked.unwrap_or_else(|| {
        panic!(
            "the run was not marked interrupted while C was stopped for {:?}: {}\n{}",
            LEASE * 3,
            cl.run_row(&run_id),
            cl.logs()
        )
    });
    assert!(
        after >= LEASE - Duration::from_millis(500),
        "marked {after:?} after the stop, before the lease ran out"
    );
    let fields: Vec<&str> = row.split('|').collect();
    let (finished_at, last_seq) = (fields[1].to_owned(), fields[4].to_owned());
    assert_eq!(fields[2..4], ["node-c", "1"], "{row}");

    // C wakes up, finds its lease gone and cleans its disk.
    cl.wait(
        "C to remove its partial backup folder after CONT",
        Duration::from_secs(10),
        || {
            let p = cl.c().partials();
            if p.is_empty() {
                Ok(())
            } else {
                Err(format!("{p:?}"))
            }
        },
    );
    // The customer is free at once, which also means C's stale run has let go of it: whatever
    // it tried to write has been tried.
    cl.next_backup_succeeds(cl.b());

    // Fenced: the interruption is the run's last event, C added none after it and did not
    // finish the run again.
    let events = cl.sql(&format!(
        "SELECT string_agg(seq || ':' || name || ':' || coalesce(data->>'state', '-'), ',' \
         ORDER BY seq) FROM events WHERE run_id = '{run_id}'"
    ));
    let events: Vec<&str> = events.split(',').collect();
    // The run is marked first and its interruption event stored right after, so the newest seq
    // seen with the mark is the event's or the one before it; C, stopped, added nothing between.
    let last = events.last().copied().unwrap_or_default();
    let seen: u64 = last_seq.parse().unwrap();
    let interrupted_at = [seen, seen + 1].map(|s| format!("{s}:backup-failed:interrupted"));
    assert!(
        interrupted_at.iter().any(|e| e == last),
        "after the interruption (seq {seen} or {}) nothing may be stored: {events:?}\n{}",
        seen + 1,
        cl.logs()
    );
    let interruptions = events
        .iter()
        .filter(|e| e.ends_with(":interrupted"))
        .count();
    assert_eq!(interruptions, 1, "{events:?}");
    let now = cl.sql(&format!(
        "SELECT state || '|' || coalesce(finished_at, '-') FROM runs WHERE id = '{run_id}'"
    ));
    assert_eq!(
        now,
        format!("interrupted|{finished_at}"),
        "the run was finished again"
    );
    assert_eq!(cl.run(cl.b(), &run_id)["state"], "interrupted");
    let audit = cl.interrupted_audit(cl.b());
    assert_eq!(audit.len(), 1, "{audit:?}");
    assert_eq!(audit[0]["runId"], run_id.as_str(), "{audit:?}");
    assert_eq!(cl.history(cl.a(), &run_id), ["interrupted"]);
    assert_eq!(cl.c().partials(), Vec::<String>::new());
}

/// A pipeline named `upgrade` (so `POST …/upgrades` runs it) with one step, `env-merge`, which
/// asks for approval: the release catalog changes the live `API_KEY`.
const APPROVAL_PIPELINE: &str = r#"
name = "upgrade"
description = "three-host test: the .env merge of an upgrade, which needs an approval"

[params.targetVersion]
type = "string"
description = "the release"

[[steps]]
id = "env-merge"
plugin = "env-merge"
[steps.config]
services = ["backend"]
current = "/customer"
version = "{{params.targetVersion}}"
approval_timeout = "2m"
[[steps.mounts]]
guest = "/customer"
path = ""
access = "rw"
reason = "read the live backend/.env, write the release's"
[[steps.mounts]]
guest = "/releases"
from = "releases"
path = ""
reason = "the release's deliberate .env changes"
"#;

#[test]
fn an_approval_decided_through_b_unblocks_the_run_on_c_and_one_rejected_through_a_fails_it() {
    let pipelines = tempfile::tempdir().unwrap();
    write(&pipelines.path().join("upgrade.toml"), APPROVAL_PIPELINE);
    let cl = Cluster::new(Setup {
        tag: "hosts_approve",
        uploads_mib: 1,
        pipelines: Some(pipelines.path().to_owned()),
        files: vec![
            ("backend/.env", "API_KEY=old-key\n".to_owned()),
            ("releases/v2/backend/.env.example", "API_KEY=\n".to_owned()),
        ],
    });
    let catalog = json!({"releases": [{
        "version": "v2",
        "package": {"path": "v2.tar.gz", "sha256": "0".repeat(64)},
        "compat": {"node": ">=18", "postgres": ">=13", "upgradeFrom": []},
        "env": {"backend": {"set": {"API_KEY": "new-key"}}},
    }]});
    write(&cl.releases.join("releases.json"), catalog.to_string());
    let written = cl.c().customer().join("releases/v2/backend/.env");

    // Decided through another host than the one it was posted to, the run on C goes on.
    let mut parts = Parts::default();
    for (post_to, decide_on, approve) in [(cl.a(), cl.b(), true), (cl.b(), cl.a(), false)] {
        let (code, body) = post_to.post(
            "/api/customers/42/upgrades",
            json!({"targetVersion": "v2", "triggeredBy": "ayse@qodify"}),
        );
        assert_eq!(code, 202, "{body}\n{}", cl.logs());
        let run_id = body["runId"].as_str().unwrap().to_owned();
        let pending = |node: &Node, within: Duration| {
            cl.wait(
                &format!("{} to show the run's pending approval", node.name),
                within,
                || {
                    let run = cl.run(node, &run_id);
                    assert!(
                        matches!(run["state"].as_str(), Some("queued" | "running")),
                        "{run}\n{}",
                        cl.logs()
                    );
                    if run["approval"].is_object() {
                        Ok(run)
                    } else {
                        Err(run.to_string())
                    }
                },
            )
        };
        // C, where it runs, shows what it waits for.
        let run = pending(cl.c(), Duration::from_secs(30));
        assert_eq!(run["node"], "node-c", "{run}");
        assert_eq!(run["approval"]["step"], "env-merge", "{run}");
        let summary = run["approval"]["summary"].as_str().unwrap();
        assert!(summary.contains("API_KEY"), "{summary}");
        assert!(!written.exists(), "written before the decision");

        let decide = |node: &Node| {
            let (code, decided) = node.post(
                &format!("/api/runs/{run_id}/approval"),
                json!({"approve": approve, "by": "mehmet@qodify"}),
            );
            assert_eq!(code, 200, "through {}: {decided}\n{}", node.name, cl.logs());
            assert_eq!(decided["approved"], approve, "{decided}");
            assert_eq!(decided["step"], "env-merge", "{decided}");
        };
        let mut decided = false;
        parts.check(
            &format!("approval shown and decided through {}", decide_on.name),
            || {
                let run = pending(decide_on, Duration::from_secs(10));
                assert_eq!(run["approval"]["summary"].as_str(), Some(summary), "{run}");
                decide(decide_on);
                decided = true;
            },
        );
        if !decided {
            // So that the rest is still checked: decided where the run is.
            decide(cl.c());
        }
        let run = cl.ended(post_to, &run_id, Duration::from_secs(30));
        assert_eq!(run["node"], "node-c", "{run}");
        if approve {
            assert_eq!(run["state"], "succeeded", "{run}\n{}", cl.logs());
            let env = std::fs::read_to_string(&written).unwrap();
            assert!(env.contains("API_KEY=new-key"), "{env}");
            std::fs::remove_file(&written).unwrap();
        } else {
            assert_eq!(run["state"], "failed", "{run}\n{}", cl.logs());
            let error = run["error"].as_str().unwrap_or_default();
            assert!(error.contains("rejected"), "{run}");
            assert!(!written.exists(), "a rejected merge wrote the .env");
        }
    }
    parts.finish();
}
