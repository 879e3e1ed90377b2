//! `cargo xtask bench --api-only`: the real `qodify-host serve` (release build) on a loopback port.
//! First `clients` threads, each with its own registered customer, loop "POST a backup, poll the
//! run until it ends" for a fixed time: POST and poll latency, runs and requests per second,
//! errors. Then one customer with `history_runs` finished runs: its history and its run list.
//! The baseline is `GET /healthz` (no token, no store) on the same server at the same time, so
//! every figure also reads as a ratio against a no-op HTTP round trip.
//!
//! The `backup` pipeline is shadowed by a no-op one (one step running the `noop` test plugin): this
//! measures the API, the store and the queue, not archiving. A benchmark, not a test: nothing here
//! fails on a number.

use std::io::{BufRead as _, BufReader, Read as _};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result};

pub(crate) const TOKEN: &str = "bench-api-token";
const HISTORY_CUSTOMER: &str = "history";
/// Targets from the issue, printed next to the figures (never enforced).
pub(crate) const POST_P99_TARGET: Duration = Duration::from_millis(20);
pub(crate) const HISTORY_P99_TARGET: Duration = Duration::from_millis(5);

/// Shadows the shipped `backup` pipeline: `POST /api/customers/{id}/backups` always queues the
/// pipeline named `backup`, and passes the `type` param.
const NOOP_BACKUP: &str = r#"# cargo xtask bench --api-only: a no-op stand-in for the shipped backup pipeline.
name = "backup"
description = "no-op backup for the API benchmark"

[params.type]
type = "enum"
values = ["fast", "custom"]
default = "fast"

[[steps]]
id = "noop"
plugin = "noop"
"#;

/// Options of the API benchmark (`cargo xtask bench --clients N …`).
pub struct Opts {
    /// Concurrent clients, one customer each.
    pub clients: usize,
    /// How long the clients post and poll.
    pub duration: Duration,
    /// How long a client waits between two polls of its run.
    pub poll: Duration,
    /// `serve --workers`.
    pub workers: usize,
    /// Finished runs in the history customer.
    pub history_runs: usize,
    /// Sequential requests per route in the history measurement.
    pub samples: usize,
}

impl Default for Opts {
    fn default() -> Self {
        Self {
            clients: 200,
            duration: Duration::from_secs(30),
            poll: Duration::from_millis(100),
            workers: 4,
            history_runs: 1000,
            samples: 500,
        }
    }
}

pub fn run(target: &Path, opts: &Opts) -> Result<()> {
    let dir = target.join("bench-api");
    if dir.exists() {
        std::fs::remove_dir_all(&dir).with_context(|| format!("removing {}", dir.display()))?;
    }
    std::fs::create_dir_all(dir.join("pipelines"))?;
    std::fs::create_dir_all(dir.join("customers"))?;
    std::fs::write(dir.join("pipelines/backup.toml"), NOOP_BACKUP)?;

    let server = Server::start(
        &target.join("release/qodify-host"),
        &dir,
        &target.join("test-plugins"),
        opts.workers,
    )?;
    let http = Http::new(&server.base);

    // The load customers, the history customer and one to warm up with (the first run compiles
    // the plugin into the cache; it must not count).
    let ids: Vec<String> = (0..opts.clients).map(|i| format!("load-{i}")).collect();
    for id in ids
        .iter()
        .map(String::as_str)
        .chain([HISTORY_CUSTOMER, "warmup"])
    {
        let domain = format!("{id}.api-bench.example.com");
        std::fs::create_dir_all(dir.join("customers").join(&domain))?;
        let r = http.put_json(
            &format!("/api/customers/{id}"),
            &serde_json::json!({ "domain": domain }).to_string(),
        );
        anyhow::ensure!(
            r.status == 200,
            "registering customer {id}: {} {}",
            r.status,
            r.body
        );
    }
    let warm = Instant::now();
    let r = http.post_json("/api/customers/warmup/backups", "{}");
    anyhow::ensure!(r.status == 202, "warm-up POST: {} {}", r.status, r.body);
    let state = http.wait_ended(&run_id(&r.body)?, Duration::from_secs(120))?;
    anyhow::ensure!(
        state == "succeeded",
        "the warm-up run ended {state}; see {}",
        dir.join("serve.log").display()
    );
    eprintln!(
        "warm-up run (compiles the noop plugin): {:.0} ms",
        warm.elapsed().as_secs_f64() * 1e3
    );

    load(&server, &ids, opts)?;
    history(&server, opts)?;
    Ok(())
}

/// `qodify-host serve` on 127.0.0.1:<free port>, killed when dropped.
pub(crate) struct Server {
    child: Child,
    pub(crate) base: String,
    pub(crate) log: PathBuf,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Server {
    fn start(bin: &Path, dir: &Path, plugins: &Path, workers: usize) -> Result<Self> {
        Self::spawn(
            bin,
            &ServeOpts {
                dir,
                pipelines: &dir.join("pipelines"),
                plugins,
                workers,
                listen: "127.0.0.1:0",
                env: &[],
            },
        )
    }

    /// `serve` with its customers root, data dir and log (`serve.log`) in `o.dir`.
    pub(crate) fn spawn(bin: &Path, o: &ServeOpts<'_>) -> Result<Self> {
        let dir = o.dir;
        let log = dir.join("serve.log");
        let mut cmd = Command::new(bin);
        cmd.arg("--plugins-dir")
            .arg(o.plugins)
            .arg("--pipelines-dir")
            .arg(o.pipelines)
            .args(["serve", "--listen", o.listen, "--workers"])
            .arg(o.workers.to_string())
            .env("QODIFY_API_TOKEN", TOKEN)
            .env("QODIFY_CUSTOMERS_ROOT", dir.join("customers"))
            .env("QODIFY_DATA_DIR", dir.join("data"))
            .env_remove("QODIFY_CONFIG")
            .env_remove("QODIFY_LISTEN")
            .env_remove("QODIFY_STORE")
            .env_remove("QODIFY_NODE")
            .env_remove("QODIFY_ADVERTISE_URL");
        for (k, v) in o.env {
            cmd.env(k, v);
        }
        let mut child = cmd
            .current_dir(dir)
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&log)?)
            .spawn()
            .with_context(|| format!("starting {}", bin.display()))?;
        let stdout = child.stdout.take().context("serve: no stdout")?;
        let mut server = Self {
            child,
            base: String::new(),
            log,
        };
        let mut out = BufReader::new(stdout);
        let mut line = String::new();
        out.read_line(&mut line)?;
        // Nothing else is expected on stdout, but a full pipe must never stall the server.
        std::thread::spawn(move || std::io::copy(&mut out, &mut std::io::sink()));
        server.base = line
            .trim()
            .strip_prefix("listening on ")
            .with_context(|| {
                format!(
                    "qodify-host serve did not start (first line {line:?}); see {}",
                    server.log.display()
                )
            })?
            .to_owned();
        Ok(server)
    }

    /// CPU time (user + system) the server has used so far.
    pub(crate) fn cpu(&self) -> Option<Duration> {
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", self.child.id())).ok()?;
        // Fields after the command name, which is in parentheses and may hold spaces.
        let rest = &stat[stat.rfind(')')? + 2..];
        let f: Vec<&str> = rest.split(' ').collect();
        let ticks: u64 = f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?;
        Some(Duration::from_secs_f64(ticks as f64 / clock_ticks() as f64))
    }
}

/// How to start one `serve` ([`Server::spawn`]).
pub(crate) struct ServeOpts<'a> {
    /// Holds `customers/`, `data/` and `serve.log`; the working directory.
    pub(crate) dir: &'a Path,
    pub(crate) pipelines: &'a Path,
    pub(crate) plugins: &'a Path,
    /// `serve --workers`.
    pub(crate) workers: usize,
    /// `serve --listen`.
    pub(crate) listen: &'a str,
    /// More environment (the store, the node…).
    pub(crate) env: &'a [(&'a str, String)],
}

pub(crate) fn clock_ticks() -> u64 {
    Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8_lossy(&o.stdout).trim().parse().ok())
        .unwrap_or(100)
}

/// One HTTP answer; `status` 0 is a transport error (its text in `body`).
pub(crate) struct Reply {
    pub(crate) status: u16,
    pub(crate) body: String,
    pub(crate) took: Duration,
}

/// A keep-alive connection to the server, one per client thread.
pub(crate) struct Http {
    agent: ureq::Agent,
    base: String,
}

impl Http {
    pub(crate) fn new(base: &str) -> Self {
        Self {
            agent: ureq::AgentBuilder::new()
                .timeout(Duration::from_secs(60))
                .build(),
            base: base.to_owned(),
        }
    }

    fn send(&self, method: &str, path: &str, body: Option<&str>) -> Reply {
        let req = self
            .agent
            .request(method, &format!("{}{path}", self.base))
            .set("Authorization", &format!("Bearer {TOKEN}"));
        let start = Instant::now();
        let result = match body {
            Some(b) => req.set("Content-Type", "application/json").send_string(b),
            None => req.call(),
        };
        // The time includes reading the whole body, as a client sees it.
        let (status, body) = match result {
            Ok(resp) | Err(ureq::Error::Status(_, resp)) => {
                let status = resp.status();
                let mut text = String::new();
                match resp.into_reader().read_to_string(&mut text) {
                    Ok(_) => (status, text),
                    Err(e) => (0, format!("reading the body: {e}")),
                }
            }
            Err(e) => (0, e.to_string()),
        };
        Reply {
            status,
            body,
            took: start.elapsed(),
        }
    }

    pub(crate) fn get(&self, path: &str) -> Reply {
        self.send("GET", path, None)
    }

    pub(crate) fn post_json(&self, path: &str, body: &str) -> Reply {
        self.send("POST", path, Some(body))
    }

    pub(crate) fn put_json(&self, path: &str, body: &str) -> Reply {
        self.send("PUT", path, Some(body))
    }

    /// Polls the run until it has ended; returns its final state.
    pub(crate) fn wait_ended(&self, run: &str, limit: Duration) -> Result<String> {
        let until = Instant::now() + limit;
        loop {
            let r = self.get(&format!("/api/runs/{run}"));
            if r.status == 200
                && let Some(state) = ended(&r.body)
            {
                return Ok(state);
            }
            anyhow::ensure!(
                Instant::now() < until,
                "run {run} has not ended after {limit:?} (last answer {} {})",
                r.status,
                r.body
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

pub(crate) fn run_id(body: &str) -> Result<String> {
    let v: serde_json::Value = serde_json::from_str(body)?;
    Ok(v["runId"].as_str().context("no runId")?.to_owned())
}

/// The run's state when it has ended.
pub(crate) fn ended(run_json: &str) -> Option<String> {
    let v: serde_json::Value = serde_json::from_str(run_json).ok()?;
    let state = v["state"].as_str()?;
    (state != "queued" && state != "running").then(|| state.to_owned())
}

/// Nearest-rank percentile.
pub(crate) fn pct(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

pub(crate) fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// A latency in an 11-character table cell: milliseconds, or seconds from 10 s on.
pub(crate) fn cell(d: Duration) -> String {
    if d >= Duration::from_secs(10) {
        format!("{:>9.2} s", d.as_secs_f64())
    } else {
        format!("{:>8.2} ms", ms(d))
    }
}

/// What a row's ratios are taken against.
#[derive(Clone, Copy)]
pub(crate) enum Base {
    /// This row is the baseline.
    Is,
    /// The baseline's p50 and p99.
    Against(Duration, Duration),
    /// No ratio (not a single request).
    None,
}

/// Latencies of one kind of request.
#[derive(Default)]
pub(crate) struct Samples(pub(crate) Vec<Duration>);

impl Samples {
    pub(crate) fn p50_p99(&mut self) -> (Duration, Duration) {
        self.0.sort();
        (pct(&self.0, 50.0), pct(&self.0, 99.0))
    }

    /// One table row: p50, p99, count, and the ratios against the baseline's p50 and p99.
    pub(crate) fn row(&mut self, label: &str, base: Base, extra: &str) -> (Duration, Duration) {
        let (p50, p99) = self.p50_p99();
        let ratio = match base {
            Base::Is => format!("{:>17}", "(baseline)"),
            Base::Against(b50, b99) => format!(
                "{:>7.1}x {:>7.1}x",
                p50.as_secs_f64() / b50.as_secs_f64().max(1e-9),
                p99.as_secs_f64() / b99.as_secs_f64().max(1e-9)
            ),
            Base::None => format!("{:>17}", ""),
        };
        let line = format!(
            "  {label:<44} {} {} {:>8}   {ratio}{extra}",
            cell(p50),
            cell(p99),
            self.0.len()
        );
        println!("{}", line.trim_end());
        (p50, p99)
    }
}

pub(crate) fn header() {
    println!(
        "  {:<44} {:>11} {:>11} {:>8}   {:>8} {:>8}",
        "", "p50", "p99", "samples", "p50/base", "p99/base"
    );
}

pub(crate) fn verdict(what: &str, p99: Duration, target: Duration) {
    println!(
        "  target {what} p99 < {:.0} ms: {} ({:.2} ms)",
        ms(target),
        if p99 < target { "met" } else { "MISSED" },
        ms(p99)
    );
}

/// What one load client saw.
#[derive(Default)]
struct ClientLog {
    post: Vec<Duration>,
    /// Each POST's host, counted from the client's first one (0: its first host).
    post_turn: Vec<usize>,
    poll: Vec<Duration>,
    /// From sending the POST to seeing the run ended.
    run: Vec<Duration>,
    succeeded: usize,
    other_end: usize,
    busy: usize,
    errors: usize,
    first_error: Option<String>,
}

impl ClientLog {
    fn error(&mut self, what: &str, r: &Reply) {
        self.errors += 1;
        if self.first_error.is_none() {
            self.first_error = Some(format!("{what}: {} {}", r.status, r.body.trim()));
        }
    }
}

/// One client: POST a backup for its customer, poll until the run ends, again, until `until`.
/// Its `k`-th POST goes to `bases[(first + k) % bases.len()]`, and the run is polled through the
/// host it was posted to. A run still going at `until` is cancelled and waited for, unmeasured,
/// so the queue is empty for what comes next.
fn client(
    bases: &[&str],
    first: usize,
    customer: &str,
    start_at: Instant,
    until: Instant,
    poll: Duration,
) -> ClientLog {
    let hosts: Vec<Http> = bases.iter().map(|b| Http::new(b)).collect();
    let mut log = ClientLog::default();
    std::thread::sleep(start_at.saturating_duration_since(Instant::now()));
    let mut in_flight = None;
    let mut turn = first;
    'runs: while Instant::now() < until {
        let http = &hosts[turn % hosts.len()];
        turn += 1;
        let posted = Instant::now();
        let r = http.post_json(
            &format!("/api/customers/{customer}/backups"),
            r#"{"triggeredBy":"bench"}"#,
        );
        log.post.push(r.took);
        log.post_turn.push((turn - 1 - first) % hosts.len());
        let id = match (r.status, run_id(&r.body)) {
            (202, Ok(id)) => id,
            (409, _) => {
                log.busy += 1;
                std::thread::sleep(poll);
                continue;
            }
            _ => {
                log.error("POST backups", &r);
                std::thread::sleep(poll);
                continue;
            }
        };
        loop {
            std::thread::sleep(poll);
            if Instant::now() >= until {
                in_flight = Some((http, id));
                break 'runs;
            }
            let r = http.get(&format!("/api/runs/{id}"));
            log.poll.push(r.took);
            if r.status != 200 {
                log.error("GET run", &r);
                continue;
            }
            if let Some(state) = ended(&r.body) {
                log.run.push(posted.elapsed());
                if state == "succeeded" {
                    log.succeeded += 1;
                } else {
                    log.other_end += 1;
                }
                break;
            }
        }
    }
    if let Some((http, id)) = in_flight {
        let _ = http.post_json(&format!("/api/runs/{id}/cancel"), "{}");
        if let Err(e) = http.wait_ended(&id, Duration::from_secs(300)) {
            log.errors += 1;
            log.first_error.get_or_insert(format!("{e:#}"));
        }
    }
    log
}

/// What the load clients saw, all together, and the baseline probe beside them.
pub(crate) struct Load {
    pub(crate) clients: usize,
    /// The measured window.
    pub(crate) window: Duration,
    pub(crate) poll_every: Duration,
    pub(crate) baseline: Samples,
    pub(crate) post: Samples,
    /// POSTs to each client's first host (`[0]`) and to the others (`[1]`); empty for one host.
    pub(crate) post_first_other: [Samples; 2],
    /// The table's labels of those two rows.
    pub(crate) first_other_labels: [&'static str; 2],
    pub(crate) poll: Samples,
    pub(crate) run: Samples,
    pub(crate) succeeded: usize,
    pub(crate) other_end: usize,
    pub(crate) busy: usize,
    pub(crate) errors: usize,
    pub(crate) first_error: Option<String>,
    /// CPU time of every server over the window, summed.
    pub(crate) cpu: Option<Duration>,
}

impl Load {
    /// Runs that ended, per second of the window.
    pub(crate) fn runs_per_sec(&self) -> f64 {
        (self.succeeded + self.other_end) as f64 / self.window.as_secs_f64()
    }

    /// The table (baseline, POST, poll, a run) and the counts below it; returns POST's p99.
    pub(crate) fn table(&mut self) -> Duration {
        let window = self.window.as_secs_f64();
        let requests = self.post.0.len() + self.poll.0.len();
        header();
        let (b50, b99) = self
            .baseline
            .row("GET /healthz (same load, every 10 ms)", Base::Is, "");
        let base = Base::Against(b50, b99);
        let (_, post_p99) = self.post.row("POST /api/customers/{id}/backups", base, "");
        for (s, label) in self
            .post_first_other
            .iter_mut()
            .zip(self.first_other_labels)
        {
            if !s.0.is_empty() {
                s.row(label, base, "");
            }
        }
        self.poll.row("GET /api/runs/{id} (poll)", base, "");
        self.run
            .row("a run: POST sent → seen ended", Base::None, "");
        println!(
            "  runs ended     {:>8.1} /s   ({} succeeded, {} ended otherwise)",
            self.runs_per_sec(),
            self.succeeded,
            self.other_end
        );
        println!(
            "  requests       {:>8.1} /s   ({} POST, {} GET; the baseline probe not counted)",
            requests as f64 / window,
            self.post.0.len(),
            self.poll.0.len()
        );
        println!(
            "  409 busy       {:>8}   (expected none: each client waits for its run)",
            self.busy
        );
        println!(
            "  errors         {:>8}{}",
            self.errors,
            self.first_error
                .as_ref()
                .map(|e| format!("   first: {e}"))
                .unwrap_or_default()
        );
        if let Some(cpu) = self.cpu {
            println!(
                "  server CPU     {:>8.2} cores of 2 (the clients share the machine)",
                cpu.as_secs_f64() / window
            );
        }
        post_p99
    }
}

/// `customers.len()` clients, one customer each, post and poll through `servers` (client `i`
/// starts at server `i`, then takes them in turn) for `opts.duration`, while a probe times
/// `GET /healthz` every 10 ms, taking the servers in turn too.
pub(crate) fn drive(servers: &[&Server], customers: &[String], opts: &Opts) -> Result<Load> {
    let n = customers.len();
    let bases: Vec<&str> = servers.iter().map(|s| s.base.as_str()).collect();
    eprintln!(
        "load: {n} clients for {} s, polling every {} ms…",
        opts.duration.as_secs(),
        opts.poll.as_millis()
    );
    // Clients start evenly over the first second rather than in one burst.
    let spread = Duration::from_secs(1);
    let start = Instant::now() + Duration::from_millis(200);
    let until = start + opts.duration;
    let cpu_all = || -> Option<Duration> { servers.iter().map(|s| s.cpu()).sum() };
    let (logs, baseline, cpu) = std::thread::scope(|scope| {
        let clients = customers
            .iter()
            .enumerate()
            .map(|(i, id)| {
                let at = start + spread.mul_f64(i as f64 / n as f64);
                let bases = &bases;
                std::thread::Builder::new()
                    .stack_size(256 << 10)
                    .spawn_scoped(scope, move || client(bases, i, id, at, until, opts.poll))
            })
            .collect::<std::io::Result<Vec<_>>>()?;
        // The baseline under the same load: a no-op round trip every 10 ms. It also reads the
        // servers' CPU time at both ends of the window.
        let probe = scope.spawn(|| {
            let hosts: Vec<Http> = bases.iter().map(|b| Http::new(b)).collect();
            let mut s = Samples::default();
            std::thread::sleep(start.saturating_duration_since(Instant::now()));
            let before = cpu_all();
            let mut turn = 0;
            while Instant::now() < until {
                s.0.push(hosts[turn % hosts.len()].get("/healthz").took);
                turn += 1;
                std::thread::sleep(Duration::from_millis(10));
            }
            let cpu = before.zip(cpu_all()).map(|(a, b)| b.saturating_sub(a));
            (s, cpu)
        });
        let logs: Vec<ClientLog> = clients
            .into_iter()
            .map(|h| h.join().expect("a client thread panicked"))
            .collect();
        let (baseline, cpu) = probe.join().expect("the probe thread panicked");
        anyhow::Ok((logs, baseline, cpu))
    })?;

    let mut load = Load {
        clients: n,
        window: opts.duration,
        poll_every: opts.poll,
        baseline,
        post: Samples::default(),
        post_first_other: Default::default(),
        first_other_labels: ["  to the client's first host", "  to its other hosts"],
        poll: Samples::default(),
        run: Samples::default(),
        succeeded: 0,
        other_end: 0,
        busy: 0,
        errors: 0,
        first_error: None,
        cpu,
    };
    for l in logs {
        if servers.len() > 1 {
            for (took, turn) in l.post.iter().zip(&l.post_turn) {
                load.post_first_other[usize::from(*turn != 0)].0.push(*took);
            }
        }
        load.post.0.extend(l.post);
        load.poll.0.extend(l.poll);
        load.run.0.extend(l.run);
        load.succeeded += l.succeeded;
        load.other_end += l.other_end;
        load.busy += l.busy;
        load.errors += l.errors;
        load.first_error = load.first_error.or(l.first_error);
    }
    Ok(load)
}

fn load(server: &Server, ids: &[String], opts: &Opts) -> Result<()> {
    let mut load = drive(&[server], ids, opts)?;
    println!(
        "\nAPI under load: qodify-host serve --workers {}, {} clients (one customer each) for {} s;",
        opts.workers,
        load.clients,
        load.window.as_secs()
    );
    println!(
        "each: POST a backup (a no-op `backup` pipeline: one `noop` step), poll the run every {} ms until it ends, again:",
        load.poll_every.as_millis()
    );
    let post_p99 = load.table();
    verdict("POST", post_p99, POST_P99_TARGET);
    Ok(())
}

/// `n` runs queued at once for `customer` through `http`, all waited for.
pub(crate) struct Seeded {
    /// The POSTs that queued them, one by one.
    pub(crate) queued_post: Samples,
    /// From the last POST to the last run ended.
    pub(crate) took: Duration,
    /// Lines in the customer's history afterwards.
    pub(crate) have: usize,
}

/// Queues `n` no-op runs for `customer` (`queue: true`, one behind the other) and waits until
/// the last one has ended; `log` is named when that takes more than an hour.
pub(crate) fn seed_history(http: &Http, customer: &str, n: usize, log: &Path) -> Result<Seeded> {
    let backups = format!("/api/customers/{customer}/backups");
    eprintln!("history: queueing {n} no-op runs for customer {customer}…");
    // Queued behind each other (`queue: true`), they run one after the other at the queue's pace.
    let mut queued_post = Samples::default();
    let mut last = None;
    for _ in 0..n {
        let r = http.post_json(&backups, r#"{"queue":true,"triggeredBy":"bench"}"#);
        anyhow::ensure!(r.status == 202, "queueing a run: {} {}", r.status, r.body);
        queued_post.0.push(r.took);
        last = Some(run_id(&r.body)?);
    }
    let seeding = Instant::now();
    if let Some(last) = &last {
        let mut report = Instant::now();
        loop {
            let r = http.get(&format!("/api/runs/{last}"));
            if r.status == 200 && ended(&r.body).is_some() {
                break;
            }
            anyhow::ensure!(
                seeding.elapsed() < Duration::from_secs(3600),
                "the history runs have not ended after an hour; see {}",
                log.display()
            );
            if report.elapsed() >= Duration::from_secs(15) {
                report = Instant::now();
                let done = history_len(http, &backups);
                let rate = done as f64 / seeding.elapsed().as_secs_f64();
                eprintln!(
                    "history: {done} of {n} runs ended ({rate:.1}/s, about {:.0} s to go)",
                    (n - done.min(n)) as f64 / rate.max(1e-3)
                );
            }
            std::thread::sleep(Duration::from_millis(250));
        }
    }
    Ok(Seeded {
        queued_post,
        took: seeding.elapsed(),
        have: history_len(http, &backups),
    })
}

/// `samples` sequential rounds of `GET /healthz`, the customer's history and its run list
/// (default page and 1000), interleaved, through `http`.
pub(crate) struct HistoryRoutes {
    routes: Vec<(String, String)>,
    samples: Vec<Samples>,
    sizes: Vec<usize>,
}

impl HistoryRoutes {
    pub(crate) fn measure(http: &Http, customer: &str, samples: usize) -> Result<Self> {
        let backups = format!("/api/customers/{customer}/backups");
        let routes = vec![
            ("GET /healthz".to_owned(), "/healthz".to_owned()),
            (format!("GET {backups}"), backups.clone()),
            (
                format!("GET /api/runs?customer={customer}"),
                format!("/api/runs?customer={customer}"),
            ),
            (
                format!("GET /api/runs?customer={customer}&limit=1000"),
                format!("/api/runs?customer={customer}&limit=1000"),
            ),
        ];
        let mut out = Self {
            samples: routes.iter().map(|_| Samples::default()).collect(),
            sizes: vec![0; routes.len()],
            routes,
        };
        // Interleaved, so that any drift in the machine's speed touches every route alike.
        for _ in 0..samples {
            for (i, (label, path)) in out.routes.iter().enumerate() {
                let r = http.get(path);
                anyhow::ensure!(r.status == 200, "{label}: {} {}", r.status, r.body);
                out.samples[i].0.push(r.took);
                out.sizes[i] = r.body.len();
            }
        }
        Ok(out)
    }

    /// The table, with `queued_post` as its last row; returns the history route's p99.
    pub(crate) fn table(&mut self, queued_post: &mut Samples) -> Duration {
        header();
        let mut base = Base::Is;
        let mut history_p99 = Duration::ZERO;
        for (i, ((label, _), s)) in self.routes.iter().zip(self.samples.iter_mut()).enumerate() {
            let (p50, p99) = s.row(label, base, &format!("   {} bytes", self.sizes[i]));
            if i == 0 {
                base = Base::Against(p50, p99);
            }
            if i == 1 {
                history_p99 = p99;
            }
        }
        queued_post.row("POST backups (queue: true, one by one)", base, "");
        history_p99
    }
}

fn history(server: &Server, opts: &Opts) -> Result<()> {
    let http = Http::new(&server.base);
    let n = opts.history_runs;
    let mut seeded = seed_history(&http, HISTORY_CUSTOMER, n, &server.log)?;
    let mut routes = HistoryRoutes::measure(&http, HISTORY_CUSTOMER, opts.samples)?;
    println!(
        "\nhistory: customer `{HISTORY_CUSTOMER}` with {} finished no-op runs ({n} queued at once, all ended in {:.1} s = {:.1} runs/s);",
        seeded.have,
        seeded.took.as_secs_f64(),
        n as f64 / seeded.took.as_secs_f64().max(1e-9)
    );
    println!(
        "{} sequential rounds of each route on the otherwise idle server, one keep-alive connection:",
        opts.samples
    );
    let history_p99 = routes.table(&mut seeded.queued_post);
    verdict("history", history_p99, HISTORY_P99_TARGET);
    Ok(())
}

fn history_len(http: &Http, path: &str) -> usize {
    let r = http.get(path);
    serde_json::from_str::<serde_json::Value>(&r.body)
        .ok()
        .and_then(|v| v["backups"].as_array().map(Vec::len))
        .unwrap_or(0)
}
