//! The `escape` attempts. Each is independent, reports instead of failing, and is named by its
//! output key. Paths are built from the configured `data` (read-only) and `out` (read-write)
//! mounts; the test plants `escape-abs`, `escape-rel`, `inside.txt` and `ok.txt` in `data` and
//! `other-customer/secret` next to the customer folder.

use std::fmt::Display;
use std::fs::{self, OpenOptions};
use std::io::{Read, Write};

use qodify_plugin_sdk::command::Command;
use qodify_plugin_sdk::{Output, fs as files, http};

/// At most this much of what an attempt got goes into its value.
const SHOWN: usize = 120;

/// `ALLOWED:<what>` on success, `denied:<error>` on failure.
pub fn report<T, E: Display>(result: Result<T, E>, shown: impl FnOnce(T) -> String) -> String {
    match result {
        Ok(v) => format!("ALLOWED:{}", clip(&shown(v))),
        Err(e) => format!("denied:{}", clip(&e.to_string())),
    }
}

fn clip(s: &str) -> String {
    let mut end = s.len().min(SHOWN);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s[..end].replace('\n', "\\n")
}

fn read_text(path: &str) -> std::io::Result<String> {
    fs::read(path).map(|b| String::from_utf8_lossy(&b).into_owned())
}

fn list(path: &str) -> std::io::Result<String> {
    let mut names = Vec::new();
    for entry in fs::read_dir(path)? {
        names.push(entry?.file_name().to_string_lossy().into_owned());
    }
    names.sort();
    Ok(names.join(","))
}

/// Opens `path` (plain open, then read_dir) and reports whichever worked.
fn open_or_list(path: &str) -> String {
    let opened = fs::File::open(path).and_then(|mut f| {
        let mut s = String::new();
        f.read_to_string(&mut s).map(|_| s)
    });
    match opened {
        Ok(content) => format!("ALLOWED:read {}", clip(&content)),
        Err(open_err) => match list(path) {
            Ok(names) => format!("ALLOWED:listed {}", clip(&names)),
            Err(list_err) => format!("denied:open: {open_err}; read_dir: {list_err}"),
        },
    }
}

/// A write-style attempt on a read-only file: ALLOWED only if the file actually changed.
fn changed_attempt<E: Display>(
    path: &str,
    before: &Result<String, String>,
    attempt: Result<(), E>,
) -> String {
    let after = read_text(path).map_err(|e| e.to_string());
    match (attempt, before == &after) {
        (_, false) => format!("ALLOWED:content changed to {:?}", after.map(|s| clip(&s))),
        (Ok(()), true) => "denied:call succeeded but the content is unchanged".to_string(),
        (Err(e), true) => format!("denied:{}", clip(&e.to_string())),
    }
}

/// A symlink the sandbox created: ALLOWED only if reading through it yields the target's content.
fn follow_created(created: Result<(), String>, read_through: &str) -> String {
    match created {
        Err(e) => format!("denied:{}", clip(&e)),
        Ok(()) => match read_text(read_through) {
            Ok(content) => format!("ALLOWED:{}", clip(&content)),
            Err(e) => format!("denied:created-but-unfollowable: {e}"),
        },
    }
}

/// Runs every attempt; never panics. `command` and `origin` are granted controls (none when empty).
pub fn run(data: &str, out: &str, command: &[String], origin: Option<&str>) -> Output {
    let data = data.trim_end_matches('/');
    let out_dir = out.trim_end_matches('/');
    let mut o = Output::new();
    let inside = format!("{data}/inside.txt");
    let original = read_text(&inside).map_err(|e| e.to_string());
    // Leftovers of an earlier run would turn "created" attempts into "exists" failures.
    for leftover in ["abs", "abs2", "up", "stolen.txt", "hardlink.txt"] {
        let _ = fs::remove_file(format!("{out_dir}/{leftover}"));
    }

    // Controls: these must work, or the denials below prove nothing.
    let control_read = match read_text(&format!("{data}/ok.txt")) {
        Ok(content) => format!("ok:{}", content.trim_end()),
        Err(e) => format!("FAILED:{e}"),
    };
    o.push_value("control-read", control_read);
    let control_write = match fs::write(format!("{out_dir}/ok.txt"), b"ok\n") {
        Ok(()) => "ok".to_string(),
        Err(e) => format!("FAILED:{e}"),
    };
    o.push_value("control-write", control_write);
    if let Some((program, args)) = command.split_first() {
        let ran = Command::new(program.as_str())
            .args(args.iter().map(String::as_str))
            .cwd(out_dir)
            .capture_stdout()
            .run();
        let shown = match ran {
            Ok(r) if r.success() => format!("ok:{}", r.stdout_text().trim()),
            Ok(r) => format!("FAILED:exit {:?}", r.exit_code),
            Err(e) => format!("FAILED:{e}"),
        };
        o.push_value("control-command", shown);
    }
    if let Some(url) = origin {
        let shown = match http::get(url, std::time::Duration::from_secs(5)) {
            Ok(r) => format!("ok:{}", r.status),
            Err(e) => format!("FAILED:{e}"),
        };
        o.push_value("control-http", shown);
    }

    // Path tricks.
    let tricks = [
        ("read-dotdot", format!("{data}/../other-customer/secret")),
        (
            "read-dotdot-2",
            format!("{data}/../../other-customer/secret"),
        ),
        ("read-relative", "../other-customer/secret".to_string()),
        ("read-etc-passwd", "/etc/passwd".to_string()),
        ("follow-abs-symlink", format!("{data}/escape-abs")),
        ("follow-rel-symlink", format!("{data}/escape-rel")),
    ];
    for (key, path) in tricks {
        o.push_value(key, report(read_text(&path), |s| s));
    }
    o.push_value("read-root-listing", report(list("/"), |s| s));
    o.push_value(
        "trailing-slash-abs",
        open_or_list(&format!("{data}/escape-abs/")),
    );
    o.push_value(
        "trailing-slash-rel",
        open_or_list(&format!("{data}/escape-rel/")),
    );

    // Changes to the read-only mount.
    let new_file = format!("{data}/new.txt");
    o.push_value(
        "write-ro",
        report(fs::write(&new_file, b"x"), |()| new_file.clone()),
    );
    let truncate_only = OpenOptions::new().truncate(true).open(&inside).map(drop);
    o.push_value(
        "truncate-ro",
        changed_attempt(&inside, &original, truncate_only),
    );
    let write_truncate = OpenOptions::new()
        .write(true)
        .truncate(true)
        .open(&inside)
        .map(drop);
    o.push_value(
        "truncate-write-ro",
        changed_attempt(&inside, &original, write_truncate),
    );
    let append = OpenOptions::new()
        .append(true)
        .open(&inside)
        .and_then(|mut f| f.write_all(b"x"));
    o.push_value("append-ro", changed_attempt(&inside, &original, append));
    let stolen = format!("{out_dir}/stolen.txt");
    o.push_value(
        "rename-ro-to-rw",
        report(fs::rename(&inside, &stolen), |()| "moved".into()),
    );
    let hardlink = format!("{out_dir}/hardlink.txt");
    o.push_value(
        "hardlink-ro-to-rw",
        report(fs::hard_link(&inside, &hardlink), |()| "linked".into()),
    );
    // After rename and hardlink: if deleting works, those could not have found the file.
    o.push_value(
        "delete-ro",
        report(fs::remove_file(&inside), |()| "removed".into()),
    );
    o.push_value(
        "mkdir-ro",
        report(fs::create_dir(format!("{data}/newdir")), |()| {
            "created".into()
        }),
    );

    // Symlinks created inside the writable mount, pointing out.
    let abs = format!("{out_dir}/abs");
    let created = files::symlink("/etc/passwd", &abs).map_err(|e| e.to_string());
    o.push_value("symlink-abs-create", follow_created(created, &abs));
    o.push_value(
        "symlink-guest-create",
        guest_symlink("/etc/passwd", &format!("{out_dir}/abs2")),
    );
    let up = format!("{out_dir}/up");
    let created = files::symlink("../..", &up).map_err(|e| e.to_string());
    o.push_value(
        "symlink-up",
        follow_created(created, &format!("{up}/other-customer/secret")),
    );

    // The host's `files` interface, outside the mounts or against the read-only one.
    let kind = |m: files::Metadata| format!("{:?} mode {:o}", m.kind, m.mode);
    o.push_value(
        "files-stat-outside",
        report(files::stat(format!("{data}/../../other-customer")), kind),
    );
    o.push_value("files-stat-etc", report(files::stat("/etc"), kind));
    let names = |entries: Vec<files::DirEntry>| {
        entries
            .into_iter()
            .map(|e| e.name)
            .collect::<Vec<_>>()
            .join(",")
    };
    o.push_value("files-list-outside", report(files::list_dir("/"), names));
    o.push_value(
        "files-list-dotdot",
        report(files::list_dir(format!("{data}/..")), names),
    );
    o.push_value(
        "files-set-mode-ro",
        report(files::set_mode(&inside, 0o777), |()| "set".into()),
    );
    o.push_value(
        "files-set-mode-through-link",
        report(files::set_mode(&abs, 0o777), |()| {
            "host claims success".into()
        }),
    );
    let epoch = files::Timestamp {
        seconds: 0,
        nanos: 0,
    };
    o.push_value(
        "files-set-mtime-ro",
        report(files::set_mtime(&inside, epoch), |()| "set".into()),
    );
    o.push_value(
        "files-symlink-ro",
        report(files::symlink("x", format!("{data}/l")), |()| {
            "created".into()
        }),
    );
    // Not an earlier backup's file: a link would make a read-only file writable through `out`.
    o.push_value(
        "files-hard-link-ro",
        report(files::hard_link(&inside, format!("{out_dir}/hl")), |()| {
            "linked".into()
        }),
    );

    // Host programs, arguments and origins not granted; environment and stdin.
    let cat = Command::new("sh")
        .args(["-c", "cat /etc/passwd"])
        .capture_stdout()
        .run();
    o.push_value(
        "command-not-granted",
        report(cat, |c| {
            format!("exit {:?}: {}", c.exit_code, c.stdout_text())
        }),
    );
    let echo = Command::new("echo")
        .arg("not-granted-arg")
        .cwd(out_dir)
        .capture_stdout()
        .run();
    o.push_value(
        "command-arg-not-granted",
        report(echo, |c| {
            format!("exit {:?}: {}", c.exit_code, c.stdout_text())
        }),
    );
    // Port 9 (discard) is never the granted origin's.
    o.push_value(
        "http-not-granted",
        report(
            http::get("http://127.0.0.1:9/", std::time::Duration::from_secs(2)),
            |r| format!("status {}", r.status),
        ),
    );
    let vars: Vec<String> = std::env::vars_os()
        .map(|(k, _)| k.to_string_lossy().into())
        .collect();
    let env = if vars.is_empty() {
        "denied:empty".to_string()
    } else {
        format!("ALLOWED:{}", clip(&vars.join(",")))
    };
    o.push_value("env-leak", env);
    let mut buf = [0u8; 256];
    let stdin = match std::io::stdin().read(&mut buf) {
        Ok(0) => "denied:empty".to_string(),
        Ok(n) => format!("ALLOWED:read {n} bytes"),
        Err(e) => format!("denied:{e}"),
    };
    o.push_value("stdin", stdin);
    o
}

/// Creates a symlink with the guest's own WASI call (wasi-libc's `symlink`, which `std` does not
/// expose on stable) and reads through it.
fn guest_symlink(target: &str, link: &str) -> String {
    follow_created(libc_symlink(target, link), link)
}

#[cfg(target_os = "wasi")]
fn libc_symlink(target: &str, link: &str) -> Result<(), String> {
    use std::ffi::{CString, c_char, c_int};
    unsafe extern "C" {
        fn symlink(target: *const c_char, link: *const c_char) -> c_int;
    }
    let (Ok(t), Ok(l)) = (CString::new(target), CString::new(link)) else {
        return Err("path contains NUL".into());
    };
    // SAFETY: both are valid NUL-terminated strings that outlive the call.
    match unsafe { symlink(t.as_ptr(), l.as_ptr()) } {
        0 => Ok(()),
        _ => Err(std::io::Error::last_os_error().to_string()),
    }
}

#[cfg(not(target_os = "wasi"))]
fn libc_symlink(_target: &str, _link: &str) -> Result<(), String> {
    Err("unsupported".into())
}
