//! `cargo xtask bench --nodes-only`: several hosts sharing one PostgreSQL store (issue 13) against
//! one host on SQLite, in one run on this machine. The API bench's load ([`crate::bench_api`]:
//! clients posting a no-op backup and polling it to its end) first on one SQLite host, then on
//! three `serve` processes (`node-a`, `node-b`, `node-c`) with one fresh PostgreSQL database,
//! the customers spread over the nodes and each client posting to the three hosts in turn; the
//! history of a customer with 1000 finished runs read through a host that is not its node; and
//! the latency of run events from the node that stores them to an SSE client on another host.
//!
//! Needs PostgreSQL on 127.0.0.1:5432 (user `postgres`, trust); skipped without it. The database
//! (`qodify_bench_nodes_<pid>`) is dropped and the folders removed at the end. A benchmark, not
//! a test: nothing here fails on a number.

use std::collections::{BTreeMap, VecDeque};
use std::io::{BufRead as _, BufReader};
use std::path::Path;
use std::sync::mpsc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context as _, Result};

use crate::bench::psql;
use crate::bench_api::{
    self, Base, HISTORY_P99_TARGET, HistoryRoutes, Http, POST_P99_TARGET, Samples, ServeOpts,
    Server, TOKEN, cell, ended, ms, run_id, verdict,
};

const NODES: [&str; 3] = ["node-a", "node-b", "node-c"];
/// Belongs to node-a; its history is read through node-b.
const HISTORY_CUSTOMER: &str = "history";
/// Belongs to node-c; its runs are followed over SSE on node-a (and on node-c itself).
const EVENTS_CUSTOMER: &str = "events";
/// Extra no-op steps of a `custom` backup: each stores two events (started, done).
const EVENT_STEPS: usize = 30;
/// Follow runs until at least this many events were measured on the other host.
const MIN_EVENTS: usize = 1000;
/// Targets from the issue, printed next to the figures (never enforced).
const RUNS_RATIO_TARGET: f64 = 0.8;
const EVENT_P99_TARGET: Duration = Duration::from_millis(50);

/// The `backup` pipeline of this bench: a `fast` backup (what the load posts) is one `noop` step,
/// as in the API bench; a `custom` one adds [`EVENT_STEPS`] more, so that a run sends many events.
fn backup_pipeline() -> String {
    let mut toml = String::from(
        r#"# cargo xtask bench --nodes-only: a no-op stand-in for the shipped backup pipeline.
name = "backup"
description = "no-op backup for the nodes benchmark (custom: many steps, many events)"

[params.type]
type = "enum"
values = ["fast", "custom"]
default = "fast"

[[steps]]
id = "noop"
plugin = "noop"
"#,
    );
    for i in 1..=EVENT_STEPS {
        toml.push_str(&format!(
            "\n[[steps]]\nid = \"event-{i}\"\nplugin = \"noop\"\nwhen = \"type == 'custom'\"\n"
        ));
    }
    toml
}

pub fn run(target: &Path, opts: &bench_api::Opts) -> Result<()> {
    if psql("postgres", "SELECT 1").is_err() {
        eprintln!("PostgreSQL is not reachable on 127.0.0.1:5432: skipping the nodes benchmark");
        return Ok(());
    }
    let dir = target.join("bench-nodes");
    if dir.exists() {
        std::fs::remove_dir_all(&dir).with_context(|| format!("removing {}", dir.display()))?;
    }
    std::fs::create_dir_all(dir.join("pipelines"))?;
    std::fs::write(dir.join("pipelines/backup.toml"), backup_pipeline())?;
    let result = measure(target, &dir, opts);
    match &result {
        Ok(()) => {
            std::fs::remove_dir_all(&dir).with_context(|| format!("removing {}", dir.display()))?
        }
        Err(_) => eprintln!("the serve logs are kept in {}", dir.display()),
    }
    result
}

/// A fresh PostgreSQL database, dropped (with whatever is still connected) when dropped.
struct Database {
    name: String,
    url: String,
}

impl Database {
    fn create(name: String) -> Result<Self> {
        psql(
            "postgres",
            &format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"),
        )?;
        psql("postgres", &format!("CREATE DATABASE {name}"))?;
        let url = format!("postgres://postgres@127.0.0.1:5432/{name}");
        Ok(Self { name, url })
    }
}

impl Drop for Database {
    fn drop(&mut self) {
        if let Err(e) = psql(
            "postgres",
            &format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name),
        ) {
            eprintln!("dropping database {}: {e:#}", self.name);
        }
    }
}

/// A port nothing listens on right now (a node's `advertise_url` must be known before it starts).
fn free_port() -> Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

/// Registers `id` (with `node`, when given) and makes its folder under `customers`.
fn register(http: &Http, customers: &Path, id: &str, node: Option<&str>) -> Result<()> {
    let domain = format!("{id}.nodes-bench.example.com");
    std::fs::create_dir_all(customers.join(&domain))?;
    let mut body = serde_json::json!({ "domain": domain });
    if let Some(node) = node {
        body["node"] = node.into();
    }
    let r = http.put_json(&format!("/api/customers/{id}"), &body.to_string());
    anyhow::ensure!(
        r.status == 200,
        "registering customer {id}: {} {}",
        r.status,
        r.body
    );
    Ok(())
}

/// One run for `customer` through `http`, waited for: the first run of a host compiles the
/// plugin into its cache, which must not count.
fn warm_up(http: &Http, customer: &str, log: &Path) -> Result<Duration> {
    let warm = Instant::now();
    let r = http.post_json(&format!("/api/customers/{customer}/backups"), "{}");
    anyhow::ensure!(r.status == 202, "warm-up POST: {} {}", r.status, r.body);
    let state = http.wait_ended(&run_id(&r.body)?, Duration::from_secs(120))?;
    anyhow::ensure!(
        state == "succeeded",
        "the warm-up run of {customer} ended {state}; see {}",
        log.display()
    );
    Ok(warm.elapsed())
}

fn measure(target: &Path, dir: &Path, opts: &bench_api::Opts) -> Result<()> {
    let bin = target.join("release/qodify-host");
    let plugins = target.join("test-plugins");
    let pipelines = dir.join("pipelines");
    let serve = |dir: &Path, listen: &str, env: &[(&str, String)]| {
        std::fs::create_dir_all(dir.join("customers"))?;
        Server::spawn(
            &bin,
            &ServeOpts {
                dir,
                pipelines: &pipelines,
                plugins: &plugins,
                workers: opts.workers,
                listen,
                env,
            },
        )
    };
    let ids: Vec<String> = (0..opts.clients).map(|i| format!("load-{i}")).collect();

    println!(
        "\nnodes (issue 13): the API bench's load, {} clients (one customer each) posting a no-op backup \
         and polling it every {} ms until it ends, for {} s, first on one host with the embedded SQLite \
         store, then on three hosts (node-a, node-b, node-c: three `serve --workers {}` on loopback, each \
         with its own data dir and customers root) sharing one PostgreSQL database, the customers spread \
         evenly over the nodes and each client posting to the three hosts in turn, so that two POSTs in \
         three reach a host that is not the customer's node (the run is polled through the host it was \
         posted to). Then, on PostgreSQL, a customer's history of {} finished runs read through a host \
         that is not its node; and how long a run event takes from the node that stores it to an SSE \
         client on another host, against one on the executing host. Request latencies are also given \
         as ratios against GET /healthz measured at the same time.",
        opts.clients,
        opts.poll.as_millis(),
        opts.duration.as_secs(),
        opts.workers,
        opts.history_runs
    );

    // 1. One host, SQLite.
    let (mut single, pg_single) = {
        let sqlite_dir = dir.join("sqlite");
        let server = serve(&sqlite_dir, "127.0.0.1:0", &[])?;
        let http = Http::new(&server.base);
        for id in ids.iter().map(String::as_str).chain(["warmup"]) {
            register(&http, &sqlite_dir.join("customers"), id, None)?;
        }
        let took = warm_up(&http, "warmup", &server.log)?;
        eprintln!(
            "SQLite host: warm-up run (compiles the noop plugin): {:.0} ms",
            ms(took)
        );
        let (pg_before, started) = (postgres_cpu(), Instant::now());
        let load = bench_api::drive(&[&server], &ids, opts)?;
        let pg = postgres_cpu().saturating_sub(pg_before).as_secs_f64()
            / started.elapsed().as_secs_f64();
        (load, pg)
    };
    println!(
        "\n1 host, SQLite (the default store): {} clients, each posting to it:",
        single.clients
    );
    let single_post_p99 = single.table();
    print_postgres_cpu(pg_single);
    verdict("POST", single_post_p99, POST_P99_TARGET);

    // 2. Three hosts, one PostgreSQL database. The database outlives the servers (dropped after).
    let db = Database::create(format!("qodify_bench_nodes_{}", std::process::id()))?;
    let mut hosts = Vec::new();
    for node in NODES {
        let port = free_port()?;
        let url = format!("http://127.0.0.1:{port}");
        let env = [
            ("QODIFY_STORE", db.url.clone()),
            ("QODIFY_NODE", node.to_owned()),
            ("QODIFY_ADVERTISE_URL", url),
        ];
        hosts.push(serve(&dir.join(node), &format!("127.0.0.1:{port}"), &env)?);
    }
    let customers_of = |node: usize| dir.join(NODES[node]).join("customers");
    let via_a = Http::new(&hosts[0].base);
    for (i, id) in ids.iter().enumerate() {
        register(&via_a, &customers_of(i % 3), id, Some(NODES[i % 3]))?;
    }
    for (n, node) in NODES.iter().enumerate() {
        let id = format!("warmup-{node}");
        register(&via_a, &customers_of(n), &id, Some(node))?;
        let took = warm_up(&via_a, &id, &hosts[n].log)?;
        eprintln!(
            "{node}: warm-up run posted to node-a (compiles the noop plugin): {:.0} ms",
            ms(took)
        );
    }
    register(&via_a, &customers_of(0), HISTORY_CUSTOMER, Some(NODES[0]))?;
    register(&via_a, &customers_of(2), EVENTS_CUSTOMER, Some(NODES[2]))?;

    let servers: Vec<&Server> = hosts.iter().collect();
    let (pg_before, started) = (postgres_cpu(), Instant::now());
    let mut multi = bench_api::drive(&servers, &ids, opts)?;
    let pg_multi =
        postgres_cpu().saturating_sub(pg_before).as_secs_f64() / started.elapsed().as_secs_f64();
    // Client i starts at host i % 3, its customer's node.
    multi.first_other_labels = ["  to the customer's node", "  to another node"];
    let per_node: Vec<usize> = (0..3)
        .map(|n| ids.len() / 3 + usize::from(n < ids.len() % 3))
        .collect();
    println!(
        "\n3 hosts, one PostgreSQL database: customers per node {}/{}/{}, each client's POSTs \
         to node-a, node-b, node-c in turn; the healthz probe takes them in turn too:",
        per_node[0], per_node[1], per_node[2]
    );
    let multi_post_p99 = multi.table();
    print_postgres_cpu(pg_multi);
    println!("  {}", placement(&db.name)?);
    let ratio = multi.runs_per_sec() / single.runs_per_sec().max(1e-9);
    println!(
        "  no-op runs/s, 3 hosts PostgreSQL ÷ 1 host SQLite: {ratio:.2} ({:.1} / {:.1})",
        multi.runs_per_sec(),
        single.runs_per_sec()
    );
    verdict("POST", multi_post_p99, POST_P99_TARGET);
    println!(
        "  target runs/s ratio ≥ {RUNS_RATIO_TARGET:.1}: {} ({ratio:.2})",
        if ratio >= RUNS_RATIO_TARGET {
            "met"
        } else {
            "MISSED"
        }
    );

    history(&hosts, &db.name, opts)?;
    events(&hosts, &db)?;
    drop(hosts);
    drop(db);
    Ok(())
}

/// CPU time (user + system) of every `postgres` process on the machine so far (connections that
/// ended since are not counted).
fn postgres_cpu() -> Duration {
    let mut ticks = 0u64;
    for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else {
            continue;
        };
        let (Some(open), Some(close)) = (stat.find('('), stat.rfind(')')) else {
            continue;
        };
        if &stat[open + 1..close] != "postgres" {
            continue;
        }
        let f: Vec<&str> = stat[close + 2..].split(' ').collect();
        let cpu = |i: usize| f.get(i).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
        ticks += cpu(11) + cpu(12);
    }
    Duration::from_secs_f64(ticks as f64 / bench_api::clock_ticks() as f64)
}

fn print_postgres_cpu(cores: f64) {
    println!("  PostgreSQL CPU {cores:>8.2} cores of 2 (every postgres process on the machine)");
}

/// Where the load's runs were executed, from the database: per node, and how many on a node that
/// is not their customer's (expected none).
fn placement(db: &str) -> Result<String> {
    let rows = psql(
        db,
        "SELECT coalesce(r.node, '-'), count(*), \
                count(*) FILTER (WHERE r.node IS DISTINCT FROM c.node) \
         FROM runs r JOIN customers c ON c.id = r.customer_id \
         WHERE r.customer_id LIKE 'load-%' AND r.started_at IS NOT NULL \
         GROUP BY 1 ORDER BY 1",
    )?;
    let (mut per, mut elsewhere) = (Vec::new(), 0u64);
    for line in rows.lines() {
        let f: Vec<&str> = line.split('|').collect();
        if let [node, n, wrong] = f[..] {
            per.push(format!("{node} {n}"));
            elsewhere += wrong.parse::<u64>().unwrap_or(0);
        }
    }
    Ok(format!(
        "runs executed by node: {}; on a node not the customer's: {elsewhere} (expected 0)",
        per.join(", ")
    ))
}

/// The history of a customer of node-a, seeded and read through node-b.
fn history(hosts: &[Server], db: &str, opts: &bench_api::Opts) -> Result<()> {
    let via_b = Http::new(&hosts[1].base);
    let n = opts.history_runs;
    let mut seeded = bench_api::seed_history(&via_b, HISTORY_CUSTOMER, n, &hosts[0].log)?;
    let mut routes = HistoryRoutes::measure(&via_b, HISTORY_CUSTOMER, opts.samples)?;
    // The history route answers a page (100 lines by default): count what is stored.
    let stored = psql(
        db,
        &format!(
            "SELECT count(*) FILTER (WHERE r.state = 'succeeded'), \
                    (SELECT count(*) FROM backups b WHERE b.customer_id = '{HISTORY_CUSTOMER}') \
             FROM runs r WHERE r.customer_id = '{HISTORY_CUSTOMER}'"
        ),
    )?;
    let (succeeded, lines) = stored.split_once('|').unwrap_or((&stored, "?"));
    println!(
        "\nhistory on PostgreSQL: customer `{HISTORY_CUSTOMER}` of node-a with {succeeded} succeeded \
         no-op runs and {lines} history lines ({n} queued at once through node-b, all ended in {:.1} s \
         = {:.1} runs/s; the history route answers its first {} lines);",
        seeded.took.as_secs_f64(),
        n as f64 / seeded.took.as_secs_f64().max(1e-9),
        seeded.have
    );
    println!(
        "{} sequential rounds of each route through node-b (not the customer's node), the hosts \
         otherwise idle, one keep-alive connection:",
        opts.samples
    );
    let history_p99 = routes.table(&mut seeded.queued_post);
    verdict("history", history_p99, HISTORY_P99_TARGET);
    Ok(())
}

/// Unix microseconds.
fn micros(t: SystemTime) -> i64 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_micros()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// What one SSE client saw of one run.
struct Followed {
    /// When the response's headers arrived (the stream subscribes before answering).
    connected: i64,
    /// Event seq → arrival (unix µs), taken when the frame's closing blank line arrived.
    arrivals: BTreeMap<u64, i64>,
    /// The last event's name.
    last: Option<String>,
}

/// Follows `GET /api/runs/{run}/events` on `base` to its end; says on `ready` once connected.
fn follow(base: &str, run: &str, ready: &mpsc::Sender<()>) -> Result<Followed> {
    let agent = ureq::AgentBuilder::new()
        .timeout(Duration::from_secs(120))
        .build();
    let resp = agent
        .get(&format!("{base}/api/runs/{run}/events"))
        .set("Authorization", &format!("Bearer {TOKEN}"))
        .set("Accept", "text/event-stream")
        .call()
        .with_context(|| format!("following the events of run {run} on {base}"))?;
    let mut out = Followed {
        connected: micros(SystemTime::now()),
        arrivals: BTreeMap::new(),
        last: None,
    };
    let _ = ready.send(());
    let mut reader = BufReader::new(resp.into_reader());
    let (mut line, mut id, mut name) = (String::new(), None, None);
    loop {
        line.clear();
        if reader.read_line(&mut line)? == 0 {
            break;
        }
        let at = micros(SystemTime::now());
        let l = line.trim_end_matches(['\r', '\n']);
        if l.is_empty() {
            if let Some(seq) = id.take() {
                out.arrivals.insert(seq, at);
            }
            if name.is_some() {
                out.last = name.take();
            }
        } else if let Some(v) = l.strip_prefix("id:") {
            id = v.trim().parse::<u64>().ok();
        } else if let Some(v) = l.strip_prefix("event:") {
            name = Some(v.trim().to_owned());
        }
    }
    Ok(out)
}

/// Each event's stored time (`at`, written by the executing node as it stored the event), in
/// unix microseconds, by seq.
fn stored_times(db: &str, run: &str) -> Result<BTreeMap<u64, i64>> {
    let rows = psql(
        db,
        &format!(
            "SELECT seq, (extract(epoch FROM at::timestamptz) * 1000000)::bigint \
             FROM events WHERE run_id = '{run}' ORDER BY seq"
        ),
    )?;
    let mut out = BTreeMap::new();
    for line in rows.lines() {
        let (seq, at) = line.split_once('|').context("psql: seq|at")?;
        out.insert(seq.parse()?, at.parse()?);
    }
    Ok(out)
}

/// What one host's SSE clients saw, measured against the stored times.
#[derive(Default)]
struct Latency {
    samples: Samples,
    max: Duration,
    /// Stored before the client connected: replayed, not counted.
    replayed: usize,
    /// Stored but never received: a gap (expected none).
    missing: usize,
    /// Arrived before its stored time (clock or rounding; counted as 0).
    early: usize,
}

impl Latency {
    fn add(&mut self, stored: &BTreeMap<u64, i64>, seen: &Followed) {
        for (seq, at) in stored {
            let Some(arrived) = seen.arrivals.get(seq) else {
                self.missing += 1;
                continue;
            };
            if *at < seen.connected {
                self.replayed += 1;
                continue;
            }
            let d = arrived - at;
            if d < 0 {
                self.early += 1;
            }
            let d = Duration::from_micros(d.max(0) as u64);
            self.max = self.max.max(d);
            self.samples.0.push(d);
        }
    }
}

/// Runs of node-c's customer with many events, posted to node-a; each followed over SSE on
/// node-a and, for comparison, on node-c, from before it starts (each run is queued behind the
/// one before, so its stream connects while it waits).
fn events(hosts: &[Server], db: &Database) -> Result<()> {
    let via_a = Http::new(&hosts[0].base);
    let post = || -> Result<String> {
        let r = via_a.post_json(
            &format!("/api/customers/{EVENTS_CUSTOMER}/backups"),
            r#"{"type":"custom","queue":true,"triggeredBy":"bench"}"#,
        );
        anyhow::ensure!(
            r.status == 202,
            "POST a custom backup: {} {}",
            r.status,
            r.body
        );
        run_id(&r.body)
    };
    eprintln!("events: following runs of `{EVENTS_CUSTOMER}` (node-c) on node-a and node-c…");
    // The first run only holds the queue, so that the next one's streams connect before it starts.
    let blocker = post()?;
    type Handle = std::thread::JoinHandle<Result<Followed>>;
    let mut pending: VecDeque<(String, Handle, Handle)> = VecDeque::new();
    let mut done: Vec<(String, Followed, Followed)> = Vec::new();
    let mut seen = 0;
    let start = Instant::now();
    while seen + pending.len() * (2 * EVENT_STEPS + 3) < MIN_EVENTS {
        let run = post()?;
        let (tx, rx) = mpsc::channel();
        let spawn = |base: &str| {
            let (base, run, tx) = (base.to_owned(), run.clone(), tx.clone());
            std::thread::spawn(move || follow(&base, &run, &tx))
        };
        let (on_a, on_c) = (spawn(&hosts[0].base), spawn(&hosts[2].base));
        drop(tx);
        for _ in 0..2 {
            if rx.recv_timeout(Duration::from_secs(30)).is_err() {
                // A stream that failed to connect: its error says why.
                let a = on_a.join().expect("an SSE thread panicked");
                let c = on_c.join().expect("an SSE thread panicked");
                a.and(c)?;
                anyhow::bail!("the event streams of run {run} did not connect in 30 s");
            }
        }
        pending.push_back((run, on_a, on_c));
        while pending.len() > 2 {
            let (run, a, c) = pending.pop_front().expect("not empty");
            let (a, c) = (
                a.join().expect("an SSE thread panicked")?,
                c.join().expect("an SSE thread panicked")?,
            );
            seen += a.arrivals.len();
            done.push((run, a, c));
        }
        anyhow::ensure!(
            start.elapsed() < Duration::from_secs(600),
            "the event runs take too long; see {}",
            hosts[2].log.display()
        );
    }
    for (run, a, c) in pending {
        let (a, c) = (
            a.join().expect("an SSE thread panicked")?,
            c.join().expect("an SSE thread panicked")?,
        );
        done.push((run, a, c));
    }
    let took = start.elapsed();
    via_a.wait_ended(&blocker, Duration::from_secs(60))?;

    let (mut other, mut own) = (Latency::default(), Latency::default());
    let mut endings: BTreeMap<String, usize> = BTreeMap::new();
    for (run, a, c) in &done {
        let stored = stored_times(&db.name, run)?;
        other.add(&stored, a);
        own.add(&stored, c);
        *endings
            .entry(a.last.clone().unwrap_or_else(|| "(no event)".into()))
            .or_default() += 1;
        // A run that did not succeed would send fewer events: say so.
        let r = via_a.get(&format!("/api/runs/{run}"));
        let state = ended(&r.body).unwrap_or_else(|| format!("{} {}", r.status, r.body));
        if state != "succeeded" {
            *endings.entry(format!("run {state}")).or_default() += 1;
        }
    }
    println!(
        "\nevents across hosts: {} runs of customer `{EVENTS_CUSTOMER}` (node-c), a no-op backup of \
         {} steps, posted to node-a one behind the other in {:.1} s; each run followed over SSE \
         (GET /api/runs/{{id}}/events) on node-a and on node-c from before it started. Latency = \
         arrival at the client (wall clock) − the `at` node-c stored with the event (milliseconds: \
         up to 1 ms more), same machine clock:",
        done.len(),
        EVENT_STEPS + 1,
        took.as_secs_f64()
    );
    println!(
        "  {:<44} {:>11} {:>11} {:>8}   {:>8} {:>8}",
        "", "p50", "p99", "events", "p50/own", "p99/own"
    );
    let own_max = own.max;
    let (o50, o99) = own.samples.row(
        "SSE on node-c (the executing host)",
        Base::Is,
        &format!("   max {}", cell(own_max).trim()),
    );
    let other_max = other.max;
    let (_, other_p99) = other.samples.row(
        "SSE on node-a (another host: NOTIFY)",
        Base::Against(o50, o99),
        &format!("   max {}", cell(other_max).trim()),
    );
    for (host, l) in [("node-c", &own), ("node-a", &other)] {
        println!(
            "  {host}: {} events measured, {} replayed (stored before the stream connected: the POST's \
             `queued` event; not counted), {} stored but never received, {} arrived before their stored time",
            l.samples.0.len(),
            l.replayed,
            l.missing,
            l.early
        );
    }
    println!(
        "  streams ended with: {}",
        endings
            .iter()
            .map(|(k, v)| format!("{k} ×{v}"))
            .collect::<Vec<_>>()
            .join(", ")
    );
    verdict(
        "event (node-c → SSE on node-a)",
        other_p99,
        EVENT_P99_TARGET,
    );
    Ok(())
}
