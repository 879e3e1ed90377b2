//! `cargo xtask bench`: the archive plugin against native `tar -czf` (GNU tar + gzip -6) on one
//! generated tree, run by the same script back to back; the per-step overhead of the runtime
//! (store + instantiate from a pre-linked component + a no-op call) against spawning a native
//! no-op process; a whole backup against a plain script; a second backup of an unchanged
//! customer, which reuses the first one's archives, against the first; off-site copies and restore
//! drills ([`crate::bench_offsite`]); and the HTTP API under load
//! ([`crate::bench_api`]); the downtime of a layout migration and of an upgrade's swap on real
//! PM2 apps against plain scripts ([`crate::bench_upgrade`]); three hosts sharing one PostgreSQL
//! store against one on SQLite ([`crate::bench_nodes`]); a TypeScript plugin against the same
//! step in Rust ([`crate::bench_plugins`]). Prints ratios. A benchmark, not a test: nothing
//! here fails on a number.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result};

use crate::demo::noise;

const DOMAIN: &str = "bench.example.com";

struct Opts {
    size_mib: u64,
    runs: usize,
    archive: bool,
    backup: bool,
    reuse: bool,
    offsite: bool,
    api: bool,
    upgrade: bool,
    console: bool,
    nodes: bool,
    plugins: bool,
    /// PM2 exec modes the upgrade benchmark runs in.
    pm2_modes: Vec<&'static str>,
    /// The PM2 daemon's cluster scheduling policies the cluster-mode runs use.
    cluster_scheds: Vec<&'static str>,
    db_rows: u64,
    api_opts: crate::bench_api::Opts,
}

const OPTIONS: &str = "--size-mib N, --runs N, --db-rows N, --clients N, --duration-secs N, \
    --poll-ms N, --workers N, --history-runs N, --samples N, --pm2-mode cluster|fork|both, \
    --cluster-sched rr|none|both, \
    --archive-only, --backup-only, --reuse-only, --offsite-only, --api-only, --upgrade-only, --console-only, --nodes-only, \
    --plugins-only";

/// The number after `flag`.
fn num(flag: &str, it: &mut std::slice::Iter<'_, &str>) -> Result<u64> {
    let v = it.next().with_context(|| format!("{flag} N"))?;
    v.parse()
        .with_context(|| format!("{flag} takes a whole number, not `{v}`"))
}

/// The value after `flag`: one of `choices`, or `both` for the two of them.
fn one_or_both(
    flag: &str,
    it: &mut std::slice::Iter<'_, &str>,
    choices: [&'static str; 2],
) -> Result<Vec<&'static str>> {
    match it.next().copied() {
        Some("both") => Ok(choices.to_vec()),
        Some(v) if choices.contains(&v) => Ok(choices.into_iter().filter(|c| *c == v).collect()),
        other => anyhow::bail!(
            "{flag} takes {}, {} or both, not `{}`",
            choices[0],
            choices[1],
            other.unwrap_or("")
        ),
    }
}

fn parse(args: &[&str]) -> Result<Opts> {
    let mut o = Opts {
        size_mib: 500,
        runs: 3,
        archive: true,
        backup: true,
        reuse: true,
        offsite: true,
        api: true,
        upgrade: true,
        console: true,
        nodes: true,
        plugins: true,
        pm2_modes: vec!["cluster", "fork"],
        cluster_scheds: vec!["rr", "none"],
        db_rows: 1_200_000,
        api_opts: Default::default(),
    };
    // `--X-only` flags pick benchmarks; several of them run each one picked.
    let mut only: Vec<&str> = Vec::new();
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let api = &mut o.api_opts;
        match *a {
            "--size-mib" => o.size_mib = num(a, &mut it)?,
            "--runs" => o.runs = num(a, &mut it)? as usize,
            "--db-rows" => o.db_rows = num(a, &mut it)?,
            "--clients" => api.clients = num(a, &mut it)? as usize,
            "--duration-secs" => api.duration = Duration::from_secs(num(a, &mut it)?),
            "--poll-ms" => api.poll = Duration::from_millis(num(a, &mut it)?),
            "--workers" => api.workers = num(a, &mut it)? as usize,
            "--history-runs" => api.history_runs = num(a, &mut it)? as usize,
            "--samples" => api.samples = num(a, &mut it)? as usize,
            "--archive-only" => only.push("archive"),
            "--backup-only" => only.push("backup"),
            "--reuse-only" => only.push("reuse"),
            "--offsite-only" => only.push("offsite"),
            "--api-only" => only.push("api"),
            "--upgrade-only" => only.push("upgrade"),
            "--console-only" => only.push("console"),
            "--nodes-only" => only.push("nodes"),
            "--plugins-only" => only.push("plugins"),
            "--cluster-sched" => o.cluster_scheds = one_or_both(a, &mut it, ["rr", "none"])?,
            "--pm2-mode" => o.pm2_modes = one_or_both(a, &mut it, ["cluster", "fork"])?,
            other => anyhow::bail!("unknown bench option `{other}` (use {OPTIONS})"),
        }
    }
    if !only.is_empty() {
        o.archive = only.contains(&"archive");
        o.backup = only.contains(&"backup");
        o.reuse = only.contains(&"reuse");
        o.offsite = only.contains(&"offsite");
        o.api = only.contains(&"api");
        o.upgrade = only.contains(&"upgrade");
        o.console = only.contains(&"console");
        o.nodes = only.contains(&"nodes");
        o.plugins = only.contains(&"plugins");
    }
    anyhow::ensure!(
        o.runs > 0
            && o.api_opts.clients > 0
            && o.api_opts.samples > 0
            && o.api_opts.duration > Duration::ZERO,
        "--runs, --clients, --samples and --duration-secs must be at least 1"
    );
    Ok(o)
}

/// Text that compresses like logs and JSON do (about 4-6x with gzip -6).
fn text(len: usize, seed: u64) -> Vec<u8> {
    let words = [
        "order",
        "customer",
        "product",
        "GET",
        "POST",
        "/api/v1/items",
        "200",
        "404",
        "info",
        "warn",
        "\"price\":",
        "\"sku\":",
        "latency_ms",
        "user_id",
        "session",
        "checkout",
        "cart",
        "image/jpeg",
    ];
    let mut x = seed | 1;
    let mut out = Vec::with_capacity(len + 64);
    let mut n = 0u64;
    while out.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        n += 1;
        let w = words[(x % words.len() as u64) as usize];
        out.extend_from_slice(
            format!(
                "2026-11-{:02}T{:02}:{:02}:{:02}Z {w} id={} v={}\n",
                x % 28 + 1,
                x % 24,
                (x >> 8) % 60,
                (x >> 16) % 60,
                n,
                (x >> 24) % 100_000
            )
            .as_bytes(),
        );
    }
    out.truncate(len);
    out
}

/// About 40% text/JSON/log files and 60% image-like incompressible files, in nested folders.
fn make_tree(dir: &Path, size_mib: u64) -> Result<()> {
    let marker = dir.join(".bench-size");
    if std::fs::read_to_string(&marker).ok().as_deref() == Some(&size_mib.to_string()) {
        return Ok(());
    }
    if dir.exists() {
        std::fs::remove_dir_all(dir)?;
    }
    let total = size_mib << 20;
    let (mut text_bytes, mut bin_bytes) = (0u64, 0u64);
    let mut i = 0u64;
    while text_bytes + bin_bytes < total {
        let folder = dir.join(format!("d{:02}/s{:02}", i % 23, i % 7));
        std::fs::create_dir_all(&folder)?;
        if text_bytes * 60 < bin_bytes * 40 {
            let len = 20_000 + (i * 7919 % 400_000) as usize;
            let ext = ["log", "json", "js", "html"][(i % 4) as usize];
            std::fs::write(folder.join(format!("f{i}.{ext}")), text(len, i + 1))?;
            text_bytes += len as u64;
        } else {
            let len = 50_000 + (i * 104_729 % 1_500_000) as usize;
            std::fs::write(folder.join(format!("img{i}.jpg")), noise(len, i + 3))?;
            bin_bytes += len as u64;
        }
        i += 1;
    }
    std::fs::write(&marker, size_mib.to_string())?;
    eprintln!(
        "tree: {} files, {:.0} MiB text, {:.0} MiB incompressible",
        i,
        text_bytes as f64 / 1048576.0,
        bin_bytes as f64 / 1048576.0
    );
    Ok(())
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

/// Peak RSS (KiB) and wall time of a command, through GNU time.
fn timed(cmd: &mut Command) -> Result<(Duration, u64)> {
    let rss_file = std::env::temp_dir().join(format!("qodify-bench-rss-{}", std::process::id()));
    let mut wrapped = Command::new("/usr/bin/time");
    wrapped
        .arg("-f")
        .arg("%M")
        .arg("-o")
        .arg(&rss_file)
        .arg(cmd.get_program())
        .args(cmd.get_args());
    for (k, v) in cmd.get_envs() {
        match v {
            Some(v) => wrapped.env(k, v),
            None => wrapped.env_remove(k),
        };
    }
    if let Some(d) = cmd.get_current_dir() {
        wrapped.current_dir(d);
    }
    wrapped.stdout(std::process::Stdio::null());
    let start = Instant::now();
    let status = wrapped.status()?;
    let took = start.elapsed();
    anyhow::ensure!(status.success(), "{cmd:?} failed with {status}");
    let rss = std::fs::read_to_string(&rss_file)
        .ok()
        .and_then(|s| s.lines().last()?.trim().parse().ok())
        .unwrap_or(0);
    Ok((took, rss))
}

pub fn run(args: &[&str]) -> Result<()> {
    let opts = parse(args)?;
    let target = crate::build(true)?;
    if opts.archive {
        archive(&target, &opts)?;
        overhead(&target)?;
    }
    if opts.backup {
        backup(&target, &opts)?;
    }
    if opts.reuse {
        reuse(&target, &opts)?;
    }
    if opts.offsite {
        crate::bench_offsite::run(&target, opts.size_mib, opts.db_rows, opts.runs)?;
    }
    if opts.api {
        crate::bench_api::run(&target, &opts.api_opts)?;
    }
    if opts.upgrade {
        crate::bench_upgrade::run(&target, opts.runs, &opts.pm2_modes, &opts.cluster_scheds)?;
    }
    if opts.console {
        crate::bench_console::run(&target, 20)?;
    }
    if opts.nodes {
        crate::bench_nodes::run(&target, &opts.api_opts)?;
    }
    if opts.plugins {
        crate::bench_plugins::run(&target)?;
    }
    Ok(())
}

fn archive(target: &Path, opts: &Opts) -> Result<()> {
    let bench = target.join("bench");
    let customers = bench.join("customers");
    let data = customers.join(DOMAIN).join("data");
    make_tree(&data, opts.size_mib)?;
    let out_dir = bench.join("out");
    std::fs::create_dir_all(&out_dir)?;
    let pipelines = bench.join("pipelines");
    std::fs::create_dir_all(&pipelines)?;
    std::fs::write(
        pipelines.join("bench-archive.toml"),
        "name = \"bench-archive\"\n[[steps]]\nid = \"archive\"\nplugin = \"archive\"\n[steps.config]\nsource = \"/src\"\noutput = \"/out/plugin.tar.gz\"\n[[steps.mounts]]\nguest = \"/src\"\npath = \"data\"\n[[steps.mounts]]\nguest = \"/out\"\npath = \"out\"\naccess = \"rw\"\ncreate = true\n[steps.limits]\ntimeout = \"2h\"\n",
    )?;
    let bin = target.join("release/qodify-host");
    let host_cmd = || {
        let mut c = Command::new(&bin);
        c.args(["run", "bench-archive", "--customer", DOMAIN, "--json"])
            .arg("--pipelines-dir")
            .arg(&pipelines)
            .arg("--plugins-dir")
            .arg(target.join("plugins"))
            .env("QODIFY_CUSTOMERS_ROOT", &customers)
            .env("QODIFY_DATA_DIR", bench.join("data"));
        c
    };
    // Warm-up: compiles the plugin into the cache and the tree into the page cache.
    timed(&mut host_cmd())?;
    let native_out = out_dir.join("native.tar.gz");
    timed(
        Command::new("tar")
            .arg("-czf")
            .arg(&native_out)
            .arg("-C")
            .arg(&data)
            .arg("."),
    )?;

    let (mut native, mut plugin, mut rss) = (Vec::new(), Vec::new(), 0);
    for i in 0..opts.runs {
        let (t, _) = timed(
            Command::new("tar")
                .arg("-czf")
                .arg(&native_out)
                .arg("-C")
                .arg(&data)
                .arg("."),
        )?;
        native.push(t);
        let (t, r) = timed(&mut host_cmd())?;
        plugin.push(t);
        rss = rss.max(r);
        eprintln!(
            "run {}: native {:.2}s, plugin {:.2}s",
            i + 1,
            native[i].as_secs_f64(),
            t.as_secs_f64()
        );
    }
    let (n, p) = (median(native), median(plugin));
    let native_size = std::fs::metadata(&native_out)?.len();
    let plugin_size = std::fs::metadata(customers.join(DOMAIN).join("out/plugin.tar.gz"))?.len();
    println!(
        "\narchive, {} MiB tree (~40% text, ~60% incompressible), median of {} runs:",
        opts.size_mib, opts.runs
    );
    println!(
        "  native tar -czf        {:>8.2} s   {:>12} bytes",
        n.as_secs_f64(),
        native_size
    );
    println!(
        "  qodify-host archive    {:>8.2} s   {:>12} bytes   (whole process, incl. host re-hash)",
        p.as_secs_f64(),
        plugin_size
    );
    println!(
        "  ratio (plugin/native)  {:>8.2}×  {:>12.3}×",
        p.as_secs_f64() / n.as_secs_f64(),
        plugin_size as f64 / native_size as f64
    );
    println!("  host peak RSS          {:>8.1} MiB", rss as f64 / 1024.0);
    Ok(())
}

fn overhead(target: &Path) -> Result<()> {
    let plugins: PathBuf = target.join("test-plugins");
    crate::run(
        Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
            .args(["bench", "-p", "qodify-host", "--bench", "overhead", "--"])
            .arg(plugins.join("noop.wasm")),
    )
}

pub(crate) const BACKUP_DOMAIN: &str = "backup-bench.example.com";
const BACKUP_DB: &str = "qodify_bench_backup";

pub(crate) fn psql(db: &str, sql: &str) -> Result<String> {
    let out = Command::new("psql")
        .args([
            "-h",
            "127.0.0.1",
            "-U",
            "postgres",
            "-X",
            "-q",
            "-t",
            "-A",
            "-v",
            "ON_ERROR_STOP=1",
            "-d",
            db,
            "-c",
            sql,
        ])
        .output()?;
    anyhow::ensure!(
        out.status.success(),
        "psql: {}",
        String::from_utf8_lossy(&out.stderr).trim()
    );
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
}

/// A customer with `size_mib` of uploads (60% image-like, 40% text), a backend with sources and
/// `node_modules` to exclude, and a database of `rows` orders (~200 bytes each).
pub(crate) fn make_backup_customer(dir: &Path, size_mib: u64, rows: u64) -> Result<()> {
    make_tree(&dir.join("backend/uploads"), size_mib)?;
    for i in 0..300u64 {
        let f = dir.join(format!("backend/src/m{}/f{i}.js", i % 17));
        std::fs::create_dir_all(f.parent().unwrap())?;
        std::fs::write(f, text(8_000, i + 11))?;
    }
    for i in 0..2000u64 {
        let f = dir.join(format!("backend/node_modules/p{}/f{i}.js", i % 97));
        std::fs::create_dir_all(f.parent().unwrap())?;
        std::fs::write(f, text(20_000, i + 17))?;
    }
    for svc in ["admin", "store"] {
        std::fs::create_dir_all(dir.join(svc).join("pages"))?;
        std::fs::write(
            dir.join(svc).join("package.json"),
            format!("{{\"name\":\"{svc}\",\"version\":\"1.0.0\"}}"),
        )?;
        std::fs::write(dir.join(svc).join("pages/index.js"), text(50_000, 5))?;
    }
    std::fs::write(
        dir.join("backend/package.json"),
        r#"{"name":"backend","version":"1.0.0"}"#,
    )?;
    std::fs::write(
        dir.join("backend/.env"),
        format!("DATABASE_URL=postgres://postgres@127.0.0.1:5432/{BACKUP_DB}\n"),
    )?;
    std::fs::write(
        dir.join("ecosystem.config.js"),
        "module.exports = { apps: [] }\n",
    )?;
    let have = psql(
        "postgres",
        &format!("SELECT count(*) FROM pg_database WHERE datname = '{BACKUP_DB}'"),
    )?;
    let rows_now = if have == "1" {
        psql(BACKUP_DB, "SELECT count(*) FROM orders").unwrap_or_default()
    } else {
        String::new()
    };
    if rows_now != rows.to_string() {
        eprintln!("making database {BACKUP_DB} with {rows} rows…");
        psql("postgres", &format!("DROP DATABASE IF EXISTS {BACKUP_DB}"))?;
        psql("postgres", &format!("CREATE DATABASE {BACKUP_DB}"))?;
        psql(
            BACKUP_DB,
            &format!(
                "CREATE TABLE orders (id bigserial PRIMARY KEY, customer text, items text, total numeric(12,2), created timestamptz);
                 INSERT INTO orders (customer, items, total, created)
                   SELECT 'customer ' || (i % 5000), md5(i::text) || ' ' || md5((i * 7)::text) || ' ' || md5((i * 13)::text) || ' qty=' || (i % 9),
                          (i % 100000) / 100.0, '2026-01-01'::timestamptz + i * interval '1 second'
                   FROM generate_series(1, {rows}) i;"
            ),
        )?;
    }
    eprintln!(
        "database size: {}",
        psql(
            BACKUP_DB,
            &format!("SELECT pg_size_pretty(pg_database_size('{BACKUP_DB}'))")
        )?
    );
    Ok(())
}

/// A whole fast backup through qodify-host against a plain shell script doing the same work
/// (`pg_dump -Fc -Z9`, `tar -czf` per archive, `sha256sum`), same data, same run.
fn backup(target: &Path, opts: &Opts) -> Result<()> {
    if psql("postgres", "SELECT 1").is_err() {
        eprintln!("PostgreSQL is not reachable on 127.0.0.1:5432: skipping the backup benchmark");
        return Ok(());
    }
    let bench = target.join("bench-backup");
    let customers = bench.join("customers");
    let dir = customers.join(BACKUP_DOMAIN);
    make_backup_customer(&dir, opts.size_mib, opts.db_rows)?;
    let out = bench.join("script-out");
    let script = format!(
        r#"set -euo pipefail
C="{c}"; O="{o}"; rm -rf "$O"; mkdir -p "$O"
pg_dump -Fc -Z9 -f "$O/db.dump" --no-password --host=127.0.0.1 --port=5432 --username=postgres --dbname={db}
X="--exclude=node_modules --exclude=.next --exclude=dist --exclude=logs"
tar -czf "$O/backend.tar.gz" $X --exclude=./uploads -C "$C/backend" .
tar -czf "$O/admin.tar.gz" $X -C "$C/admin" .
tar -czf "$O/store.tar.gz" $X -C "$C/store" .
tar -czf "$O/uploads.tar.gz" -C "$C/backend/uploads" .
(cd "$C" && find . -path ./backups -prune -o \( -name '.env' -o -name '.env.*' -o -name 'ecosystem.config.*' \) -print | tar -czf "$O/env-pm2.tar.gz" -T -)
(cd "$O" && sha256sum * > SHA256SUMS)
"#,
        c = dir.display(),
        o = out.display(),
        db = BACKUP_DB
    );
    let bin = target.join("release/qodify-host");
    // The same backup with granted programs unconfined, to measure what confinement costs.
    let unconfined = bench.join("unconfined.toml");
    std::fs::write(&unconfined, "[commands]\nconfinement = \"off\"\n")?;
    let host_cmd_with = |confined: bool| {
        let mut c = Command::new(&bin);
        if !confined {
            c.env("QODIFY_CONFIG", &unconfined);
        }
        c.args([
            "run",
            "backup",
            "--customer",
            BACKUP_DOMAIN,
            "--json",
            "--param",
            "retention=1",
            // Every archive written, as the script writes them (`reuse` measures the rest).
            "--param",
            "full=true",
        ])
        .arg("--plugins-dir")
        .arg(target.join("plugins"))
        .env("QODIFY_CUSTOMERS_ROOT", &customers)
        .env("QODIFY_DATA_DIR", bench.join("data"));
        c
    };
    let host_cmd = || host_cmd_with(true);
    timed(&mut host_cmd())?; // warm-up: compile cache, page cache
    let (mut plain, mut ours, mut open, mut rss) = (Vec::new(), Vec::new(), Vec::new(), 0);
    for i in 0..opts.runs {
        let (t, _) = timed(Command::new("bash").arg("-c").arg(&script))?;
        plain.push(t);
        std::thread::sleep(Duration::from_millis(1100)); // a new backup id
        let (t, r) = timed(&mut host_cmd())?;
        ours.push(t);
        rss = rss.max(r);
        std::thread::sleep(Duration::from_millis(1100));
        let (u, _) = timed(&mut host_cmd_with(false))?;
        open.push(u);
        eprintln!(
            "run {}: script {:.2}s, qodify-host {:.2}s, unconfined {:.2}s",
            i + 1,
            plain[i].as_secs_f64(),
            t.as_secs_f64(),
            u.as_secs_f64()
        );
    }
    let (s, q, u) = (median(plain), median(ours), median(open));
    println!(
        "\nwhole fast backup ({} MiB uploads, backend with node_modules, {} database rows), median of {}:",
        opts.size_mib, opts.db_rows, opts.runs
    );
    println!(
        "  plain script (pg_dump -Fc -Z9, tar -czf x5, sha256sum)  {:>8.2} s",
        s.as_secs_f64()
    );
    println!(
        "  qodify-host run backup                                 {:>8.2} s",
        q.as_secs_f64()
    );
    println!(
        "  ratio (qodify-host/script)                             {:>8.2}x",
        q.as_secs_f64() / s.as_secs_f64()
    );
    println!(
        "  qodify-host, commands.confinement = \"off\"              {:>8.2} s",
        u.as_secs_f64()
    );
    println!(
        "  ratio (confined/unconfined)                            {:>8.2}x",
        q.as_secs_f64() / u.as_secs_f64()
    );
    println!(
        "  qodify-host peak RSS                                   {:>8.1} MiB",
        rss as f64 / 1024.0
    );
    Ok(())
}

/// The first fast backup of the bench customer (nothing to reuse: `full=true`) against a second
/// one of the unchanged customer (every archive linked, only the dump made anew) and one after a
/// single upload changed (the uploads archive written again). Target: second ≤ 0.35× first.
fn reuse(target: &Path, opts: &Opts) -> Result<()> {
    if psql("postgres", "SELECT 1").is_err() {
        eprintln!("PostgreSQL is not reachable on 127.0.0.1:5432: skipping the reuse benchmark");
        return Ok(());
    }
    let bench = target.join("bench-backup");
    let customers = bench.join("customers");
    let dir = customers.join(BACKUP_DOMAIN);
    make_backup_customer(&dir, opts.size_mib, opts.db_rows)?;
    let bin = target.join("release/qodify-host");
    let backup = |full: bool| -> Result<Duration> {
        // A change within the last second keeps an archive from being reused (racy), and each
        // backup needs its own second.
        std::thread::sleep(Duration::from_millis(1300));
        let mut c = Command::new(&bin);
        c.args(["run", "backup", "--customer", BACKUP_DOMAIN, "--json"])
            .args(["--param", "retention=3", "--param"])
            .arg(format!("full={full}"))
            .arg("--plugins-dir")
            .arg(target.join("plugins"))
            .env("QODIFY_CUSTOMERS_ROOT", &customers)
            .env("QODIFY_DATA_DIR", bench.join("data"));
        Ok(timed(&mut c)?.0)
    };
    backup(true)?; // warm-up: compile cache, page cache
    let upload = std::fs::read_dir(dir.join("backend/uploads/d00/s00"))?
        .flatten()
        .map(|e| e.path())
        .find(|p| p.extension().is_some_and(|e| e == "jpg"))
        .context("no upload to change in the bench tree")?;
    let (mut first, mut second, mut changed) = (Vec::new(), Vec::new(), Vec::new());
    for i in 0..opts.runs {
        first.push(backup(true)?);
        second.push(backup(false)?);
        let len = std::fs::metadata(&upload)?.len() as usize;
        std::fs::write(&upload, noise(len, 1000 + i as u64))?;
        changed.push(backup(false)?);
        eprintln!(
            "run {}: first {:.2}s, unchanged {:.2}s, one upload changed {:.2}s",
            i + 1,
            first[i].as_secs_f64(),
            second[i].as_secs_f64(),
            changed[i].as_secs_f64()
        );
    }
    let (f, s, c) = (median(first), median(second), median(changed));
    println!(
        "\nreusing unchanged archives ({} MiB uploads, {} database rows), median of {}:",
        opts.size_mib, opts.db_rows, opts.runs
    );
    println!(
        "  first fast backup (full=true: every archive written)   {:>8.2} s",
        f.as_secs_f64()
    );
    println!(
        "  second, unchanged (archives linked, dump made anew)    {:>8.2} s",
        s.as_secs_f64()
    );
    println!(
        "  after one changed upload (uploads archive written)     {:>8.2} s",
        c.as_secs_f64()
    );
    println!(
        "  ratio unchanged/first (target <= 0.35)                 {:>8.2}x",
        s.as_secs_f64() / f.as_secs_f64()
    );
    println!(
        "  ratio one-changed-upload/first                         {:>8.2}x",
        c.as_secs_f64() / f.as_secs_f64()
    );
    Ok(())
}
