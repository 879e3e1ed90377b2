//! `sandbox-probe` test plugin: tries to break out of its grants and to exhaust the host, so tests
//! can prove the host holds. Config: `{ "mode": "escape" | "loop" | "memory-bomb" | "log-flood" |
//! "huge-output" | "sleep-host" | "wasi-sleep" | "read-fifo" | "files-fifo" | "native" |
//! "link-backup", "data":
//! "/data", "out": "/out", "path": "/data/.env", "command": ["echo", "granted"], "origin":
//! "http://127.0.0.1:8080/" }`, `data` being a read-only mount and `out` a read-write one;
//! `path` is the file `read-fifo` and `files-fifo` aim at; `command` and `origin`, when given,
//! are granted ones `escape` runs as controls (`control-command`, `control-http`).
//!
//! In `native` mode the probe plants the symlinks of `links` in `out` (absolute and `../`
//! targets), then has the host run each of `commands` (its granted programs, aimed at those
//! links or at host paths) with `out` as the working folder; output `cmd-<i>` is `denied:` and
//! the host's refusal, or `exit <code>:` and the program's stderr.
//!
//! In `escape` mode every attempt becomes one output whose value starts with `denied:` (and the
//! error) or `ALLOWED:` (and what it got); `control-read` and `control-write` must be `ok…`,
//! proving the probe itself works. The probe never panics on a failed attempt. Its TypeScript
//! port, `tests/plugins-ts/sandbox-probe-ts`, makes the same attempts under the same keys.

mod escape;

use qodify_plugin_sdk::prelude::*;

/// The step's config.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Config {
    mode: Mode,
    #[serde(default = "default_data")]
    data: String,
    #[serde(default = "default_out")]
    out: String,
    /// `native`: links to plant in `out`, `[name, target]`.
    #[serde(default)]
    links: Vec<(String, String)>,
    /// `native`: programs to run, `[program, arg…]`.
    #[serde(default)]
    commands: Vec<Vec<String>>,
    /// `read-fifo`, `files-fifo`: the file to read or change.
    #[serde(default = "default_path")]
    path: String,
    /// `escape`: a granted argv, run as the control `control-command`.
    #[serde(default)]
    command: Vec<String>,
    /// `escape`: a granted URL, fetched as the control `control-http`.
    #[serde(default)]
    origin: Option<String>,
    /// `link-backup`: the file name in `out` to link `path` as (or to attack).
    #[serde(default)]
    to: String,
    /// `link-backup`: ask for the link (else only attack the name).
    #[serde(default)]
    link: bool,
    /// `link-backup`: then write a file of that name.
    #[serde(default)]
    write: bool,
    /// `link-backup`: return the linked file as this artifact: `[name, size, sha256]`, and
    /// write a `backup.json` of backup `manifest_id` listing it.
    #[serde(default)]
    artifact: Option<(String, u64, String)>,
    #[serde(default)]
    manifest_id: String,
}

fn default_path() -> String {
    "/data/.env".into()
}

fn default_data() -> String {
    "/data".into()
}

fn default_out() -> String {
    "/out".into()
}

/// What to try.
#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(rename_all = "kebab-case")]
enum Mode {
    /// Every file-system, `files`, `commands`, env and stdin trick; see [`escape`].
    Escape,
    /// Spin forever: the host's deadline must stop it.
    Loop,
    /// Allocate and touch memory until the host's limit stops it.
    MemoryBomb,
    /// Log 10 million lines: the host must cope (rate-limit, truncate).
    LogFlood,
    /// Return a million 1 KiB outputs: the host must refuse them.
    HugeOutput,
    /// Ask the host to run `sleep 3600`, which is not granted.
    SleepHost,
    /// Run a granted `sleep 30` with a 1 s command timeout: the host must kill it.
    SleepGranted,
    /// Run a granted `sh -c 'echo $SECRET_TOKEN …'` to the log: the value must be redacted.
    EchoSecret,
    /// Write `/out/real.txt` and claim a wrong sha256 for it.
    LyingArtifact,
    /// Return an artifact that is a symlink inside `/out` pointing at a real file.
    ArtifactThroughLink,
    /// Return an artifact outside every mount.
    ArtifactOutside,
    /// Panic.
    Panic,
    /// Plant links, then run granted programs through them.
    Native,
    /// Sleep 25 s inside a WASI call: the host's deadline and cancel must still stop it.
    WasiSleep,
    /// Read `path` through WASI (a FIFO without a writer blocks in `open`).
    ReadFifo,
    /// Set the mode of `path` through the host's `files` interface.
    FilesFifo,
    /// Ask the host to link `path` (an earlier backup's file) as `out/<to>`, then try to reach
    /// the earlier file through that name: `stat-linked`, `append-linked` (and with `write`,
    /// `write-linked`) must not change it.
    LinkBackup,
}

struct Probe;

impl Step for Probe {
    type Config = Config;

    fn run(ctx: &Context, config: Config) -> Result<Output, Error> {
        match config.mode {
            Mode::Escape => Ok(escape::run(
                &config.data,
                &config.out,
                &config.command,
                config.origin.as_deref(),
            )),
            Mode::Loop => spin(),
            Mode::MemoryBomb => memory_bomb(),
            Mode::LogFlood => {
                for i in 0..10_000_000u32 {
                    ctx.info(format!("log flood line {i}"));
                }
                Ok(Output::new().value("lines", 10_000_000))
            }
            Mode::HugeOutput => {
                let value = "x".repeat(1024);
                let mut out = Output::new();
                for i in 0..1_000_000u32 {
                    out.push_value(format!("k{i}"), &value);
                }
                Ok(out)
            }
            Mode::SleepGranted => {
                let result = Command::new("sleep")
                    .arg("30")
                    .cwd(&config.out)
                    .timeout(std::time::Duration::from_secs(1))
                    .run();
                Ok(Output::new().value(
                    "sleep-granted",
                    escape::report(result, |o| format!("{o:?}")),
                ))
            }
            Mode::EchoSecret => {
                Command::new("sh")
                    .args(["-c", "echo token is $SECRET_TOKEN"])
                    .env("SECRET_TOKEN", "hunter2-very-secret")
                    .cwd(&config.out)
                    .run()?
                    .check()?;
                Ok(Output::new())
            }
            Mode::LyingArtifact => {
                let path = format!("{}/real.txt", config.out);
                std::fs::write(&path, "abc")?;
                Ok(Output::new().artifact("real", path, 3, "0".repeat(64)))
            }
            Mode::ArtifactThroughLink => {
                let real = format!("{}/real.txt", config.out);
                std::fs::write(&real, "abc")?;
                let link = format!("{}/link.txt", config.out);
                fs::symlink("real.txt", &link)?;
                let sha = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad";
                Ok(Output::new().artifact("link", link, 3, sha))
            }
            Mode::ArtifactOutside => {
                Ok(Output::new().artifact("passwd", "/etc/passwd", 1, "0".repeat(64)))
            }
            Mode::Panic => panic!("probe panicked on purpose"),
            Mode::Native => {
                let mut out = Output::new();
                for (name, target) in &config.links {
                    let planted = fs::symlink(target, format!("{}/{name}", config.out));
                    out.push_value(
                        format!("link-{name}"),
                        escape::report(planted, |()| "planted".into()),
                    );
                }
                for (i, argv) in config.commands.iter().enumerate() {
                    let Some((program, args)) = argv.split_first() else {
                        continue;
                    };
                    let result = Command::new(program.as_str())
                        .args(args.iter().map(String::as_str))
                        .cwd(&config.out)
                        .capture_stdout()
                        .stderr(Stdio::Capture)
                        .timeout(std::time::Duration::from_secs(60))
                        .run();
                    let shown = match result {
                        Ok(o) => format!(
                            "exit {}:{}",
                            o.exit_code.map_or("signal".into(), |c| c.to_string()),
                            o.stderr_text().replace('\n', "\\n")
                        ),
                        Err(e) => format!("denied:{e}"),
                    };
                    out.push_value(format!("cmd-{i}"), shown);
                }
                Ok(out)
            }
            Mode::WasiSleep => {
                std::thread::sleep(std::time::Duration::from_secs(25));
                Ok(Output::new().value("slept", "25s"))
            }
            Mode::ReadFifo => {
                let read = std::fs::read(&config.path);
                Ok(Output::new().value(
                    "read",
                    escape::report(read, |b| format!("{} bytes", b.len())),
                ))
            }
            Mode::FilesFifo => {
                let set = fs::set_mode(&config.path, 0o600);
                Ok(Output::new().value("files", escape::report(set, |()| "changed".into())))
            }
            Mode::LinkBackup => {
                let target = format!("{}/{}", config.out, config.to);
                let mut out = Output::new();
                if config.link {
                    let linked = fs::hard_link(&config.path, &target);
                    out.push_value("link", escape::report(linked, |()| "noted".into()));
                }
                let stat = std::fs::metadata(&target);
                out.push_value(
                    "stat-linked",
                    escape::report(stat, |m| format!("{} bytes", m.len())),
                );
                let append = std::fs::OpenOptions::new()
                    .append(true)
                    .open(&target)
                    .and_then(|mut f| std::io::Write::write_all(&mut f, b"x"));
                out.push_value(
                    "append-linked",
                    escape::report(append, |()| "appended".into()),
                );
                if config.write {
                    let written = std::fs::write(&target, "hostile");
                    out.push_value(
                        "write-linked",
                        escape::report(written, |()| "written".into()),
                    );
                }
                if let Some((name, size, sha)) = config.artifact {
                    let manifest = format!(
                        r#"{{"formatVersion":1,"id":"{}","artifacts":[{{"name":"{name}","file":"{}","size":{size},"sha256":"{sha}"}}]}}"#,
                        config.manifest_id, config.to
                    );
                    std::fs::write(format!("{}/backup.json", config.out), manifest)?;
                    out = out.artifact(name, target, size, sha);
                }
                Ok(out)
            }
            Mode::SleepHost => {
                let result = Command::new("sleep").arg("3600").run();
                Ok(Output::new().value("sleep-host", escape::report(result, |o| format!("{o:?}"))))
            }
        }
    }
}

export_step!(Probe);

/// An endless loop the optimiser cannot remove.
fn spin() -> ! {
    let mut n = 0u64;
    loop {
        n = std::hint::black_box(n.wrapping_add(1));
    }
}

/// Allocates 1 MiB chunks, touching every page, and keeps them all.
fn memory_bomb() -> ! {
    let mut kept: Vec<Vec<u8>> = Vec::new();
    loop {
        let mut chunk = vec![0u8; 1 << 20];
        for i in (0..chunk.len()).step_by(4096) {
            chunk[i] = i as u8 | 1;
        }
        kept.push(std::hint::black_box(chunk));
    }
}
