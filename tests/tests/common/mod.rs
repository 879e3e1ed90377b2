//! Shared helpers for end-to-end tests: where the built binary and plugins are, a temporary
//! host environment, and a model of file trees to compare archives with their sources.

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::io::{BufRead as _, BufReader, Read};
use std::os::unix::fs::{MetadataExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};

/// Cargo's target folder (set by `cargo xtask test`, else derived from this test's path).
pub fn target_dir() -> PathBuf {
    if let Some(t) = std::env::var_os("QODIFY_TEST_TARGET_DIR") {
        return t.into();
    }
    std::env::current_exe()
        .unwrap()
        .ancestors()
        .nth(3)
        .unwrap()
        .to_path_buf()
}

/// The repository root.
pub fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

/// A temporary host: customers root, data folder, and a command builder for the real binary.
pub struct Host {
    pub tmp: tempfile::TempDir,
}

impl Host {
    pub fn new() -> Self {
        let tmp = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(tmp.path().join("customers")).unwrap();
        Self { tmp }
    }

    pub fn customers(&self) -> PathBuf {
        self.tmp.path().join("customers")
    }

    pub fn customer(&self, domain: &str) -> PathBuf {
        self.customers().join(domain)
    }

    /// `qodify-host` with this host's folders, the shipped pipelines and the built plugins.
    pub fn cmd(&self) -> Command {
        self.cmd_with_pipelines(&repo().join("pipelines"))
    }

    /// `qodify-host` with this host's folders, the pipelines of `pipelines` and the built
    /// plugins.
    pub fn cmd_with_pipelines(&self, pipelines: &Path) -> Command {
        let target = target_dir();
        let bin = target.join("debug/qodify-host");
        assert!(
            bin.is_file(),
            "{} missing: run `cargo xtask build`",
            bin.display()
        );
        let mut c = Command::new(bin);
        c.env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("QODIFY_CUSTOMERS_ROOT", self.customers())
            .env("QODIFY_DATA_DIR", self.tmp.path().join("data"))
            .arg("--plugins-dir")
            .arg(target.join("plugins"))
            .arg("--pipelines-dir")
            .arg(pipelines);
        c
    }
}

/// `qodify-host serve` running on a free loopback port; killed when dropped.
pub struct Server {
    pub child: Child,
    /// `http://127.0.0.1:<port>`.
    pub base: String,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Host {
    /// Starts `qodify-host serve` (2 workers, API token `token`, plus `extra` flags) and waits
    /// until it listens.
    pub fn serve(&self, token: &str, extra: &[&str]) -> Server {
        serve_cmd(self.cmd(), token, extra)
    }
}

/// Starts `cmd serve` (2 workers, API token `token`, plus `extra` flags) and waits until it
/// listens.
pub fn serve_cmd(cmd: Command, token: &str, extra: &[&str]) -> Server {
    start_serve(cmd, token, extra, None)
}

/// [`serve_cmd`] with the server's log written to `log` (shown if it does not start).
pub fn serve_logged(cmd: Command, token: &str, log: &Path) -> Server {
    start_serve(cmd, token, &[], Some(log))
}

fn start_serve(mut cmd: Command, token: &str, extra: &[&str], log: Option<&Path>) -> Server {
    let stderr = match log {
        Some(log) => Stdio::from(std::fs::File::create(log).unwrap()),
        None => Stdio::inherit(),
    };
    let mut child = cmd
        .args(["serve", "--listen", "127.0.0.1:0", "--workers", "2"])
        .args(extra)
        .env("QODIFY_API_TOKEN", token)
        .stdout(Stdio::piped())
        .stderr(stderr)
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let base = line
        .trim()
        .strip_prefix("listening on ")
        .unwrap_or_else(|| {
            let log = log
                .map(|l| std::fs::read_to_string(l).unwrap_or_default())
                .unwrap_or_default();
            panic!("unexpected first line {line:?}; log:\n{log}")
        })
        .to_owned();
    Server { child, base }
}

/// `GET base+path` with `token`, asserting 200; the JSON body.
pub fn get_ok(s: &Server, token: &str, path: &str) -> serde_json::Value {
    let (code, body) = json_of(api(token, "GET", &format!("{}{path}", s.base)).call());
    assert_eq!(code, 200, "{path}: {body}");
    body
}

/// A request to a test server's API with `token` as the bearer token (30 s timeout).
pub fn api(token: &str, method: &str, url: &str) -> ureq::Request {
    ureq::request(method, url)
        .set("Authorization", &format!("Bearer {token}"))
        .timeout(std::time::Duration::from_secs(30))
}

/// The status and JSON body of an API answer, error statuses included (`null` when the body
/// is not JSON); panics on a transport error.
pub fn json_of(r: Result<ureq::Response, ureq::Error>) -> (u16, serde_json::Value) {
    let (code, resp) = match r {
        Ok(resp) => (resp.status(), resp),
        Err(ureq::Error::Status(code, resp)) => (code, resp),
        Err(e) => panic!("transport error: {e}"),
    };
    let text = resp.into_string().unwrap_or_default();
    (
        code,
        serde_json::from_str(&text).unwrap_or(serde_json::Value::Null),
    )
}

/// Runs and returns the output, printing it when the test fails later.
pub fn run(cmd: &mut Command) -> Output {
    let out = cmd.output().unwrap();
    eprintln!(
        "--- stdout\n{}\n--- stderr\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// The `run-result` object of a `run --json` output.
pub fn run_result(out: &Output) -> serde_json::Value {
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .find(|v| v["event"] == "run-result")
        .expect("no run-result line")["result"]
        .clone()
}

/// What a tree entry is, as far as a backup must keep it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Node {
    Dir {
        mode: u32,
    },
    File {
        mode: u32,
        mtime: i64,
        content: Vec<u8>,
    },
    Symlink {
        target: String,
    },
}

/// A model of a folder: relative path → entry. `skip` decides which relative paths to leave out
/// (and not descend into).
pub fn tree(root: &Path, skip: &dyn Fn(&str) -> bool) -> BTreeMap<String, Node> {
    let mut out = BTreeMap::new();
    let mut stack = vec![PathBuf::new()];
    while let Some(rel) = stack.pop() {
        for e in std::fs::read_dir(root.join(&rel)).unwrap().flatten() {
            let r = rel.join(e.file_name());
            let key = r.to_string_lossy().into_owned();
            if skip(&key) {
                continue;
            }
            let md = std::fs::symlink_metadata(e.path()).unwrap();
            let node = if md.file_type().is_symlink() {
                Node::Symlink {
                    target: std::fs::read_link(e.path())
                        .unwrap()
                        .to_string_lossy()
                        .into_owned(),
                }
            } else if md.is_dir() {
                stack.push(r.clone());
                Node::Dir {
                    mode: md.permissions().mode() & 0o7777,
                }
            } else {
                Node::File {
                    mode: md.permissions().mode() & 0o7777,
                    mtime: md.mtime(),
                    content: std::fs::read(e.path()).unwrap(),
                }
            };
            out.insert(key, node);
        }
    }
    out
}

/// A model of a .tar.gz, read with the `tar` crate (no extraction).
pub fn archive_tree(path: &Path) -> BTreeMap<String, Node> {
    let file = std::fs::File::open(path).unwrap();
    let mut ar = tar::Archive::new(flate2::read::MultiGzDecoder::new(file));
    let mut out = BTreeMap::new();
    for entry in ar.entries().unwrap() {
        let mut entry = entry.unwrap();
        let path = entry
            .path()
            .unwrap()
            .to_string_lossy()
            .trim_end_matches('/')
            .to_owned();
        let h = entry.header();
        let mode = h.mode().unwrap() & 0o7777;
        let node = match h.entry_type() {
            tar::EntryType::Directory => Node::Dir { mode },
            tar::EntryType::Symlink => Node::Symlink {
                target: entry
                    .link_name()
                    .unwrap()
                    .unwrap()
                    .to_string_lossy()
                    .into_owned(),
            },
            tar::EntryType::Regular => {
                let mtime = h.mtime().unwrap() as i64;
                let mut content = Vec::new();
                entry.read_to_end(&mut content).unwrap();
                Node::File {
                    mode,
                    mtime,
                    content,
                }
            }
            other => panic!("unexpected entry type {other:?} for {path}"),
        };
        assert!(
            out.insert(path.clone(), node).is_none(),
            "{path} twice in the archive"
        );
    }
    out
}

/// Lowercase hex sha256 of a file.
pub fn sha256_file(path: &Path) -> String {
    use sha2::Digest as _;
    hex::encode(sha2::Sha256::digest(std::fs::read(path).unwrap()))
}

pub fn write(path: &Path, content: impl AsRef<[u8]>) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, content).unwrap();
}

pub fn chmod(path: &Path, mode: u32) {
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

/// A small shop in the current layout at `dir`: `backend` (package.json 1.0.0, server.js,
/// src/a.js, a mode-600 `.env` whose DATABASE_URL is `database_url`, and `uploads` named by
/// `uploads`), `admin`, `store` and a PM2 ecosystem file. Tests add what they need besides.
pub fn plain_shop(dir: &Path, database_url: &str, uploads: &[(String, Vec<u8>)]) -> PathBuf {
    let b = dir.join("backend");
    write(
        &b.join("package.json"),
        r#"{"name":"backend","version":"1.0.0"}"#,
    );
    write(&b.join("server.js"), "// v1\n");
    write(&b.join("src/a.js"), "a\n");
    write(&b.join(".env"), format!("DATABASE_URL={database_url}\n"));
    chmod(&b.join(".env"), 0o600);
    for (name, bytes) in uploads {
        write(&b.join("uploads").join(name), bytes);
    }
    write(&dir.join("admin/package.json"), r#"{"name":"admin"}"#);
    write(&dir.join("store/package.json"), r#"{"name":"store"}"#);
    write(&dir.join("ecosystem.config.js"), "module.exports = {}\n");
    dir.to_path_buf()
}

/// Incompressible bytes.
pub fn noise(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

/// The Socket.IO test client (`tests/socketio-client`: `watch.mjs` on socket.io-client).
pub fn socketio_client_dir() -> PathBuf {
    repo().join("tests/socketio-client")
}

/// `npm ci` once per test binary when socket.io-client is not installed (CI runs it beforehand);
/// a failure fails the test, it never skips it.
pub fn ensure_socketio_client() {
    static INSTALLED: std::sync::OnceLock<Result<(), String>> = std::sync::OnceLock::new();
    let result = INSTALLED.get_or_init(|| {
        if socketio_client_dir()
            .join("node_modules/socket.io-client")
            .is_dir()
        {
            return Ok(());
        }
        let out = Command::new("npm")
            .args(["ci", "--prefer-offline", "--no-audit", "--no-fund"])
            .current_dir(socketio_client_dir())
            .output()
            .map_err(|e| format!("running npm: {e}"))?;
        if out.status.success() {
            Ok(())
        } else {
            Err(String::from_utf8_lossy(&out.stderr).into_owned())
        }
    });
    if let Err(e) = result {
        panic!(
            "socket.io-client is not installed and `npm ci` in {} failed (install node and npm, \
             or run `npm ci` there):\n{e}",
            socketio_client_dir().display()
        );
    }
}
