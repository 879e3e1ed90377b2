//! A throwaway PostgreSQL database per test on the local server (127.0.0.1:5432, trust auth), via
//! the real `psql`, dropped when the guard goes out of scope.

#![allow(dead_code)]

use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};

static COUNTER: AtomicUsize = AtomicUsize::new(0);

/// psql as the `postgres` user against database `db`.
pub fn psql(db: &str, sql: &str) -> String {
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
            "-t",
            "-A",
            "-v",
            "ON_ERROR_STOP=1",
            "-d",
            db,
            "-c",
            sql,
        ])
        .output()
        .expect("psql must be installed");
    assert!(
        out.status.success(),
        "psql failed: {sql}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

/// A database that is dropped on drop.
pub struct TestDb {
    pub name: String,
}

impl TestDb {
    /// Creates an empty database with a unique name.
    pub fn empty(tag: &str) -> Self {
        let name = format!(
            "qh_{tag}_{}_{}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::SeqCst)
        );
        psql("postgres", &format!("DROP DATABASE IF EXISTS {name}"));
        psql("postgres", &format!("CREATE DATABASE {name}"));
        Self { name }
    }

    /// A database with several tables (a large one), unicode text, bytea and a sequence.
    pub fn shop(tag: &str) -> Self {
        let db = Self::empty(tag);
        psql(
            &db.name,
            "CREATE TABLE customers (id serial PRIMARY KEY, name text NOT NULL, note text);
             INSERT INTO customers (name, note) VALUES
               ('Çağrı Öztürk', 'İstanbul — ş ğ ü ö ç ı'), ('山田 太郎', '東京 🚀'), ('Zoë', NULL);
             CREATE TABLE products (id bigserial PRIMARY KEY, title text, price numeric(10,2), image bytea);
             INSERT INTO products (title, price, image)
               SELECT 'product ' || i, i * 1.25, decode(repeat(md5(i::text), 8), 'hex')
               FROM generate_series(1, 2000) i;
             CREATE TABLE orders (id serial PRIMARY KEY, customer_id int REFERENCES customers,
               product_id bigint REFERENCES products, qty int, note text, created timestamptz);
             INSERT INTO orders (customer_id, product_id, qty, note, created)
               SELECT 1 + i % 3, 1 + i % 2000, i % 7, md5(i::text), '2026-01-01'::timestamptz + i * interval '1 minute'
               FROM generate_series(1, 200000) i;
             CREATE SEQUENCE invoice_seq START 1000;
             SELECT nextval('invoice_seq'); SELECT nextval('invoice_seq');",
        );
        db
    }

    /// Per-table checksums and the sequence's position: equal iff the data is equal.
    pub fn checksums(&self) -> Vec<(String, String)> {
        let mut out = Vec::new();
        for t in ["customers", "products", "orders"] {
            let sum = psql(
                &self.name,
                &format!(
                    "SELECT count(*) || ':' || md5(string_agg(t::text, '|' ORDER BY t::text)) FROM {t} t"
                ),
            );
            out.push((t.to_owned(), sum));
        }
        out.push((
            "invoice_seq".into(),
            psql(&self.name, "SELECT last_value FROM invoice_seq"),
        ));
        out
    }

    /// `DATABASE_URL` for it.
    pub fn url(&self, password: &str) -> String {
        format!(
            "postgres://postgres:{password}@127.0.0.1:5432/{}",
            self.name
        )
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        let _ = Command::new("psql")
            .args([
                "-h",
                "127.0.0.1",
                "-U",
                "postgres",
                "-X",
                "-q",
                "-d",
                "postgres",
                "-c",
            ])
            .arg(format!(
                "DROP DATABASE IF EXISTS {} WITH (FORCE)",
                self.name
            ))
            .output();
    }
}
