//! `cargo xtask demo`: builds everything, makes a realistic sample customer under
//! `<target>/demo/customers/`, backs it up with the shipped `backup` pipeline, and shows the result.

use std::path::Path;
use std::process::Command;

use anyhow::{Context as _, Result};

const DOMAIN: &str = "demo-shop.example.com";

fn write(path: &Path, content: impl AsRef<[u8]>) -> Result<()> {
    if let Some(p) = path.parent() {
        std::fs::create_dir_all(p)?;
    }
    std::fs::write(path, content).with_context(|| format!("writing {}", path.display()))
}

fn chmod(path: &Path, mode: u32) -> Result<()> {
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))?;
    Ok(())
}

/// Pseudo-random, incompressible bytes (xorshift), so "images" look like images to gzip.
pub fn noise(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.extend_from_slice(&x.to_le_bytes());
    }
    out.truncate(len);
    out
}

/// Writes a sample customer folder: three services with sources, dependencies, build output and
/// logs, uploads, `.env` files and a PM2 ecosystem file.
pub fn make_customer(dir: &Path) -> Result<()> {
    if dir.exists() {
        std::fs::remove_dir_all(dir)?;
    }
    let b = dir.join("backend");
    write(
        &b.join("package.json"),
        r#"{ "name": "backend", "version": "1.0.0", "main": "server.js", "scripts": { "start": "node server.js" } }"#,
    )?;
    write(
        &b.join("server.js"),
        "const http = require('http');\nconst port = process.env.PORT || 4000;\nhttp.createServer((req, res) => res.end('ok')).listen(port);\n",
    )?;
    for i in 0..20 {
        write(
            &b.join(format!("src/routes/route{i}.js")),
            format!("module.exports = (req, res) => res.json({{ route: {i} }});\n"),
        )?;
    }
    write(
        &b.join("prisma/schema.prisma"),
        "datasource db {\n  provider = \"postgresql\"\n  url      = env(\"DATABASE_URL\")\n}\n",
    )?;
    write(
        &b.join(".env"),
        "DATABASE_URL=postgres://shop:demo-secret@127.0.0.1:5432/demo_shop\nJWT_SECRET=demo-jwt-secret\nPORT=4000\n",
    )?;
    chmod(&b.join(".env"), 0o600)?;
    write(&b.join(".env.production"), "NODE_ENV=production\n")?;
    write(
        &b.join("scripts/start.sh"),
        "#!/bin/sh\nexec node server.js\n",
    )?;
    chmod(&b.join("scripts/start.sh"), 0o755)?;
    write(
        &b.join("node_modules/express/package.json"),
        r#"{ "name": "express", "version": "4.19.2" }"#,
    )?;
    write(
        &b.join("node_modules/express/index.js"),
        "module.exports = function express() {};\n".repeat(200),
    )?;
    write(&b.join("dist/server.js"), "compiled\n".repeat(100))?;
    let log: String = (0..5000)
        .map(|i| {
            format!(
                "2026-11-26T10:{:02}:00Z info request {i} served in {}ms\n",
                i % 60,
                i % 97
            )
        })
        .collect();
    write(&b.join("logs/app.log"), log)?;
    for i in 0..12 {
        write(
            &b.join(format!("uploads/products/p{i}.jpg")),
            noise(64 * 1024 + i * 1000, i as u64 + 7),
        )?;
    }
    std::os::unix::fs::symlink("products/p0.jpg", b.join("uploads/featured.jpg"))?;

    let a = dir.join("admin");
    write(
        &a.join("package.json"),
        r#"{ "name": "admin", "version": "1.0.0" }"#,
    )?;
    write(
        &a.join("pages/index.js"),
        "export default function Home() { return 'admin'; }\n",
    )?;
    write(
        &a.join(".env.local"),
        "NEXT_PUBLIC_API=http://127.0.0.1:4000\n",
    )?;
    write(&a.join(".next/cache/webpack.pack"), noise(200_000, 3))?;
    write(
        &a.join("node_modules/next/package.json"),
        r#"{ "name": "next", "version": "14.2.0" }"#,
    )?;

    let s = dir.join("store");
    write(
        &s.join("package.json"),
        r#"{ "name": "store", "version": "1.0.0" }"#,
    )?;
    write(
        &s.join("pages/index.js"),
        "export default function Shop() { return 'store'; }\n",
    )?;
    write(&s.join("public/logo.png"), noise(30_000, 11))?;
    write(
        &s.join(".next/server/pages/index.html"),
        "<html>built</html>\n",
    )?;
    write(&s.join(".env"), "NEXT_PUBLIC_API=http://127.0.0.1:4000\n")?;

    write(
        &dir.join("ecosystem.config.js"),
        "module.exports = { apps: [\n  { name: 'backend', cwd: './backend', script: 'server.js' },\n  { name: 'admin', cwd: './admin', script: 'npm', args: 'start' },\n  { name: 'store', cwd: './store', script: 'npm', args: 'start' },\n] };\n",
    )?;
    Ok(())
}

const DEMO_DB: &str = "qodify_demo_shop";

fn psql(db: &str, sql: &str) -> Result<()> {
    let out = Command::new("psql")
        .args([
            "-h",
            "127.0.0.1",
            "-p",
            "5432",
            "-U",
            "postgres",
            "-X",
            "-q",
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
    Ok(())
}

/// Makes the demo database on the local PostgreSQL server, if one answers.
fn make_database() -> Result<()> {
    psql("postgres", &format!("DROP DATABASE IF EXISTS {DEMO_DB}"))?;
    psql("postgres", &format!("CREATE DATABASE {DEMO_DB}"))?;
    psql(
        DEMO_DB,
        "CREATE TABLE products (id serial PRIMARY KEY, title text, price numeric(10,2), image bytea);
         INSERT INTO products (title, price, image)
           SELECT 'ürün ' || i, i * 9.90, decode(md5(i::text), 'hex') FROM generate_series(1, 500) i;
         CREATE TABLE orders (id serial PRIMARY KEY, product_id int REFERENCES products, qty int, created timestamptz);
         INSERT INTO orders (product_id, qty, created)
           SELECT 1 + i % 500, 1 + i % 5, now() - i * interval '1 hour' FROM generate_series(1, 20000) i;",
    )
}

pub fn run() -> Result<()> {
    let target = crate::build(false)?;
    let demo = target.join("demo");
    let customers = demo.join("customers");
    let customer = customers.join(DOMAIN);
    make_customer(&customer)?;
    eprintln!("sample customer: {}", customer.display());

    let with_db = match make_database() {
        Ok(()) => {
            let url = format!("postgres://postgres@127.0.0.1:5432/{DEMO_DB}");
            write(
                &customer.join("backend/.env"),
                format!("DATABASE_URL={url}\nJWT_SECRET=demo-jwt-secret\nPORT=4000\n"),
            )?;
            chmod(&customer.join("backend/.env"), 0o600)?;
            eprintln!("database: {DEMO_DB} on 127.0.0.1:5432 (20,000 orders, 500 products)");
            true
        }
        Err(e) => {
            eprintln!(
                "PostgreSQL is not reachable on 127.0.0.1:5432 ({e:#}); backing up files only (include.db=false)"
            );
            false
        }
    };

    let bin = target.join("debug/qodify-host");
    let host = |args: &[&str]| {
        let mut c = Command::new(&bin);
        c.args(args)
            .env("QODIFY_CUSTOMERS_ROOT", &customers)
            .env("QODIFY_DATA_DIR", demo.join("data"));
        c
    };
    let mut backup = host(&["run", "backup", "--customer", DOMAIN, "--customer-id", "42"]);
    if !with_db {
        backup.args(["--param", "type=custom", "--param", "include.db=false"]);
    }
    crate::run(&mut backup)?;
    println!();
    crate::run(&mut host(&["backups", "list", "--customer", DOMAIN]))?;
    crate::run(&mut host(&["backups", "verify", "--customer", DOMAIN]))?;

    let backups = customer.join("backups");
    let mut ids: Vec<_> = std::fs::read_dir(&backups)?
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.is_dir())
        .collect();
    ids.sort();
    let latest = ids
        .last()
        .context("the backup pipeline left no backup folder")?;
    println!("\nbackup written to {}", latest.display());
    let mut files: Vec<_> = std::fs::read_dir(latest)?.flatten().collect();
    files.sort_by_key(|e| e.file_name());
    for f in &files {
        let len = f.metadata()?.len();
        println!(
            "  {:<20} {:>10} bytes",
            f.file_name().to_string_lossy(),
            len
        );
    }
    for f in &files {
        let name = f.file_name().to_string_lossy().into_owned();
        if name.ends_with(".tar.gz") {
            let out = Command::new("tar").arg("-tzvf").arg(f.path()).output()?;
            let listing = String::from_utf8_lossy(&out.stdout);
            let lines: Vec<&str> = listing.lines().collect();
            println!("\n{name} ({} entries):", lines.len());
            for l in lines.iter().take(8) {
                println!("  {l}");
            }
            if lines.len() > 8 {
                println!("  … {} more", lines.len() - 8);
            }
        }
    }
    if let Some(m) = files.iter().find(|f| f.file_name() == "backup.json") {
        println!("\nbackup.json:\n{}", std::fs::read_to_string(m.path())?);
    }
    Ok(())
}
