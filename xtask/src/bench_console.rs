//! `cargo xtask bench --console-only`: the web console's first-load JavaScript (gzipped, against
//! the 150 KB budget) and how long its Customers page with 1,000 customers and a customer's
//! Backups page with 1,000 backups take to render in headless Chromium, each against a baseline
//! run in the same browser session: the same API answer fetched and drawn as a plain DOM table
//! by a few lines of script (what any page must at least do). A benchmark, not a test: nothing
//! here fails on a number.
//!
//! The 1,000 backups are one real backup (the shipped pipeline, uploads and .env) copied with
//! new ids and run ids in their `backup.json`, which `serve` adopts into its history at start
//! (its reconcile of disk and record).

use std::io::{BufRead as _, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result};

const TOKEN: &str = "bench-console-token";
const CUSTOMERS: usize = 1000;
const BACKUPS: usize = 1000;
const HISTORY_ID: &str = "history";
const HISTORY_DOMAIN: &str = "history.bench.test";
const JS_BUDGET: u64 = 150 * 1024;
const RENDER_TARGET_MS: f64 = 300.0;

pub fn run(target: &Path, samples: usize) -> Result<()> {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .context("xtask has no parent folder")?;
    let dist = repo.join("console/dist");
    first_load_js(&dist)?;

    let e2e = repo.join("tests/console-e2e");
    anyhow::ensure!(
        e2e.join("node_modules/@playwright/test").is_dir(),
        "the console benchmark drives Chromium with Playwright: run \
         `PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 npm ci` in tests/console-e2e"
    );
    let chromium = std::env::var_os("CHROMIUM")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/usr/bin/chromium"));
    anyhow::ensure!(
        chromium.is_file(),
        "{} is missing: `apt-get install chromium` (or set CHROMIUM)",
        chromium.display()
    );

    let dir = target.join("bench-console");
    if dir.exists() {
        std::fs::remove_dir_all(&dir).with_context(|| format!("removing {}", dir.display()))?;
    }
    let customers = dir.join("customers");
    std::fs::create_dir_all(&customers)?;
    let bin = target.join("release/qodify-host");
    let plugins = target.join("plugins");

    // One real backup of the history customer.
    crate::demo::make_customer(&customers.join(HISTORY_DOMAIN))?;
    let server = Server::start(&bin, &dir, &plugins)?;
    let http = Http::new(&server.base);
    http.put(
        &format!("/api/customers/{HISTORY_ID}"),
        &format!(r#"{{"domain":"{HISTORY_DOMAIN}"}}"#),
    )?;
    let posted = http.post(
        &format!("/api/customers/{HISTORY_ID}/backups"),
        r#"{"type":"custom","include":{"db":false},"triggeredBy":"bench"}"#,
    )?;
    let run: serde_json::Value = serde_json::from_str(&posted)?;
    let run = run["runId"].as_str().context("no runId")?.to_owned();
    http.wait_succeeded(&run)?;
    drop(server);
    copy_backups(&customers.join(HISTORY_DOMAIN).join("backups"), BACKUPS)?;

    // 1,000 customers, each with a (small) folder; the history customer's backups adopted.
    for i in 0..CUSTOMERS - 1 {
        let folder = customers.join(format!("c{i:04}.bench.test"));
        for svc in ["backend", "admin", "store"] {
            std::fs::create_dir_all(folder.join(svc))?;
        }
    }
    let server = Server::start(&bin, &dir, &plugins)?;
    let http = Http::new(&server.base);
    let registering = Instant::now();
    for i in 0..CUSTOMERS - 1 {
        http.put(
            &format!("/api/customers/c{i:04}"),
            &format!(r#"{{"domain":"c{i:04}.bench.test","tier":null}}"#),
        )?;
    }
    eprintln!(
        "console bench: {} customers registered in {:.1} s",
        CUSTOMERS - 1,
        registering.elapsed().as_secs_f64()
    );
    let listed: serde_json::Value = serde_json::from_str(
        &http.get(&format!("/api/customers/{HISTORY_ID}/backups?limit=1000"))?,
    )?;
    let have = listed["backups"].as_array().map_or(0, Vec::len);
    anyhow::ensure!(
        have >= BACKUPS,
        "the history customer lists {have} backups, not {BACKUPS}; see {}",
        server.log.display()
    );

    let out = Command::new("node")
        .arg("bench.mjs")
        .current_dir(&e2e)
        .env("QODIFY_BASE", &server.base)
        .env("QODIFY_TOKEN", TOKEN)
        .env("CHROMIUM", &chromium)
        .env("HISTORY_ID", HISTORY_ID)
        .env("CUSTOMERS", CUSTOMERS.to_string())
        .env("BACKUPS", BACKUPS.to_string())
        .env("SAMPLES", samples.to_string())
        .stderr(Stdio::inherit())
        .output()
        .context("running node tests/console-e2e/bench.mjs")?;
    anyhow::ensure!(out.status.success(), "bench.mjs failed");
    let results: serde_json::Value = serde_json::from_slice(&out.stdout).with_context(|| {
        format!(
            "bench.mjs printed {:?}",
            String::from_utf8_lossy(&out.stdout)
        )
    })?;
    println!(
        "\nconsole render in headless Chromium ({samples} samples each, median and worst; \
         baseline: the same API answer fetched and drawn as a plain table by a script):"
    );
    println!(
        "{:<44} {:>7} {:>10} {:>10} {:>10} {:>9}",
        "page", "rows", "median ms", "worst ms", "base ms", "× base"
    );
    for page in results["pages"].as_array().context("no pages")? {
        let (median, worst, base) = (
            page["medianMs"].as_f64().unwrap_or(f64::NAN),
            page["worstMs"].as_f64().unwrap_or(f64::NAN),
            page["baselineMedianMs"].as_f64().unwrap_or(f64::NAN),
        );
        println!(
            "{:<44} {:>7} {:>10.0} {:>10.0} {:>10.0} {:>8.1}×   {}",
            page["name"].as_str().unwrap_or("?"),
            page["rows"],
            median,
            worst,
            base,
            median / base,
            if median <= RENDER_TARGET_MS {
                "within the 300 ms target"
            } else {
                "OVER the 300 ms target"
            }
        );
    }
    Ok(())
}

/// The JavaScript `index.html` loads at first (its module script and modulepreloads), gzipped
/// with `gzip -6` as a server or CDN would send it, against the budget.
fn first_load_js(dist: &Path) -> Result<()> {
    let index = std::fs::read_to_string(dist.join("index.html")).with_context(|| {
        format!(
            "{} is missing: `cargo xtask build` builds the console",
            dist.join("index.html").display()
        )
    })?;
    let mut files: Vec<String> = Vec::new();
    for tag in index.split('<').skip(1) {
        let is_script = tag.starts_with("script") && tag.contains("src=");
        let is_preload = tag.starts_with("link") && tag.contains("modulepreload");
        if !(is_script || is_preload) {
            continue;
        }
        let attr = if is_script { "src=\"" } else { "href=\"" };
        if let Some(rest) = tag.split(attr).nth(1)
            && let Some(url) = rest.split('"').next()
        {
            files.push(url.trim_start_matches('/').to_owned());
        }
    }
    anyhow::ensure!(!files.is_empty(), "no script in {}", dist.display());
    let (mut raw, mut gz) = (0u64, 0u64);
    for f in &files {
        let path = dist.join(f);
        raw += std::fs::metadata(&path)
            .with_context(|| format!("{}", path.display()))?
            .len();
        let out = Command::new("gzip").arg("-6c").arg(&path).output()?;
        anyhow::ensure!(out.status.success(), "gzip {}", path.display());
        gz += out.stdout.len() as u64;
    }
    let all: u64 = std::fs::read_dir(dist.join("assets"))?
        .flatten()
        .filter(|e| e.path().extension().is_some_and(|x| x == "js"))
        .filter_map(|e| e.metadata().ok())
        .map(|m| m.len())
        .sum();
    println!(
        "console first load: {} JS file(s), {:.1} KB, {:.1} KB gzipped = {:.0}% of the {} KB budget \
         ({:.1} KB of JS in all, the rest loaded on demand)",
        files.len(),
        raw as f64 / 1024.0,
        gz as f64 / 1024.0,
        gz as f64 * 100.0 / JS_BUDGET as f64,
        JS_BUDGET / 1024,
        all as f64 / 1024.0
    );
    Ok(())
}

/// Copies the one backup in `backups` until there are `n`, each with its own id (one minute
/// apart, older than the original) and run id in its `backup.json`.
fn copy_backups(backups: &Path, n: usize) -> Result<()> {
    let original = std::fs::read_dir(backups)?
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .find(|name| name.len() == 15 && name.as_bytes()[8] == b'-')
        .context("the benchmark's backup did not complete")?;
    let manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(backups.join(&original).join("backup.json"))?)?;
    for i in 1..n {
        let id = format!("20250101-{:02}{:02}00", i / 60, i % 60);
        let dest = backups.join(&id);
        let status = Command::new("cp")
            .arg("-a")
            .arg(backups.join(&original))
            .arg(&dest)
            .status()?;
        anyhow::ensure!(status.success(), "cp -a {original} {id}");
        let mut m = manifest.clone();
        m["id"] = serde_json::Value::String(id.clone());
        if m["run"].is_object() {
            m["run"]["id"] = serde_json::Value::String(format!("bench-copy-{i:04}"));
        }
        std::fs::write(dest.join("backup.json"), serde_json::to_vec_pretty(&m)?)?;
    }
    Ok(())
}

/// `qodify-host serve` (release build) on a free loopback port, killed when dropped.
struct Server {
    child: Child,
    base: String,
    log: PathBuf,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Server {
    fn start(bin: &Path, dir: &Path, plugins: &Path) -> Result<Self> {
        let log = dir.join("serve.log");
        let mut child = Command::new(bin)
            .arg("--plugins-dir")
            .arg(plugins)
            .args(["serve", "--listen", "127.0.0.1:0"])
            .env("QODIFY_API_TOKEN", TOKEN)
            .env("QODIFY_CUSTOMERS_ROOT", dir.join("customers"))
            .env("QODIFY_DATA_DIR", dir.join("data"))
            .env_remove("QODIFY_CONFIG")
            .env_remove("QODIFY_LISTEN")
            .current_dir(dir)
            .stdout(Stdio::piped())
            .stderr(
                std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(&log)?,
            )
            .spawn()
            .with_context(|| format!("starting {}", bin.display()))?;
        let stdout = child.stdout.take().context("serve: no stdout")?;
        let mut out = BufReader::new(stdout);
        let mut line = String::new();
        out.read_line(&mut line)?;
        std::thread::spawn(move || std::io::copy(&mut out, &mut std::io::sink()));
        let base = line
            .trim()
            .strip_prefix("listening on ")
            .with_context(|| {
                format!(
                    "qodify-host serve did not start (first line {line:?}); see {}",
                    log.display()
                )
            })?
            .to_owned();
        Ok(Self { child, base, log })
    }
}

/// The few API calls the set-up makes, with the bench token.
struct Http {
    agent: ureq::Agent,
    base: String,
}

impl Http {
    fn new(base: &str) -> Self {
        Self {
            agent: ureq::AgentBuilder::new()
                .timeout(Duration::from_secs(60))
                .build(),
            base: base.to_owned(),
        }
    }

    fn send(&self, method: &str, path: &str, body: Option<&str>) -> Result<String> {
        let req = self
            .agent
            .request(method, &format!("{}{path}", self.base))
            .set("Authorization", &format!("Bearer {TOKEN}"));
        let res = match body {
            Some(b) => req.set("Content-Type", "application/json").send_string(b),
            None => req.call(),
        };
        match res {
            Ok(r) => Ok(r.into_string()?),
            Err(ureq::Error::Status(s, r)) => {
                anyhow::bail!(
                    "{method} {path}: {s} {}",
                    r.into_string().unwrap_or_default()
                )
            }
            Err(e) => Err(e).with_context(|| format!("{method} {path}")),
        }
    }

    fn get(&self, path: &str) -> Result<String> {
        self.send("GET", path, None)
    }

    fn put(&self, path: &str, body: &str) -> Result<String> {
        self.send("PUT", path, Some(body))
    }

    fn post(&self, path: &str, body: &str) -> Result<String> {
        self.send("POST", path, Some(body))
    }

    fn wait_succeeded(&self, run: &str) -> Result<()> {
        let until = Instant::now() + Duration::from_secs(300);
        loop {
            let v: serde_json::Value =
                serde_json::from_str(&self.get(&format!("/api/runs/{run}"))?)?;
            match v["state"].as_str() {
                Some("succeeded") => return Ok(()),
                Some("queued" | "running") => {}
                other => anyhow::bail!("the benchmark's backup ended {other:?}: {v}"),
            }
            anyhow::ensure!(Instant::now() < until, "the benchmark's backup never ended");
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}
