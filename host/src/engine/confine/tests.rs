//! Confinement against real programs (`sh`, `cat`, bash's `/dev/tcp`) on this kernel. Every test
//! first checks that the same command succeeds unconfined, so a denial is the domain's doing.

use std::net::TcpListener;
use std::os::fd::AsFd;
use std::path::Path;
use std::process::Command;

use super::*;

/// The kernel's Landlock, or `None` outside CI when it has none (CI must have it).
fn landlock() -> Option<Confinement> {
    let c = Confinement::new(Mode::Landlock);
    if c.enforced() {
        return Some(c);
    }
    assert!(
        std::env::var_os("CI").is_none(),
        "CI needs a kernel with Landlock: {}",
        c.describe()
    );
    None
}

/// Makes `cmd` start confined by `policy`; the program lives while the lifeline does.
fn enter(c: &Confinement, policy: &Policy<'_>, cmd: &mut Command) -> Lifeline {
    c.prepare(policy).unwrap().install(cmd).unwrap()
}

fn sh(script: &str) -> Command {
    let mut c = Command::new("/bin/sh");
    c.args(["-c", script]);
    c
}

/// Runs `script` confined by `policy`; true when it exited 0.
fn confined(c: &Confinement, policy: &Policy<'_>, script: &str) -> bool {
    let mut cmd = sh(script);
    let _lifeline = enter(c, policy, &mut cmd);
    cmd.status().unwrap().success()
}

fn plain(script: &str) -> bool {
    sh(script).status().unwrap().success()
}

#[test]
fn a_program_reads_and_writes_only_inside_its_grants() {
    let Some(c) = landlock() else { return };
    let t = tempfile::tempdir().unwrap();
    let (ro, rw, other) = (
        t.path().join("ro"),
        t.path().join("rw"),
        t.path().join("other"),
    );
    for d in [&ro, &rw, &other] {
        std::fs::create_dir(d).unwrap();
    }
    std::fs::write(ro.join("in.txt"), "in").unwrap();
    std::fs::write(other.join("secret.env"), "DB_PASSWORD=x").unwrap();
    let (ro_dir, rw_dir) = (
        std::fs::File::open(&ro).unwrap(),
        std::fs::File::open(&rw).unwrap(),
    );
    let policy = Policy {
        read: vec![ro_dir.as_fd()],
        write: vec![rw_dir.as_fd()],
        ..Default::default()
    };
    let p = |p: &Path| p.display().to_string();
    let read_ro = format!("cat {}/in.txt", p(&ro));
    let copy = format!("cp {}/in.txt {}/out.txt", p(&ro), p(&rw));
    assert!(confined(&c, &policy, &read_ro));
    assert!(confined(&c, &policy, &copy));
    assert_eq!(std::fs::read_to_string(rw.join("out.txt")).unwrap(), "in");

    let read_other = format!("cat {}/secret.env", p(&other));
    let write_ro = format!("echo x > {}/new.txt", p(&ro));
    let write_tmp = format!("echo x > {}/x.txt", std::env::temp_dir().display());
    assert!(plain(&read_other));
    assert!(
        !confined(&c, &policy, &read_other),
        "read outside the grants"
    );
    assert!(
        !confined(&c, &policy, &write_ro),
        "wrote into a read-only mount"
    );
    assert!(!ro.join("new.txt").exists());
    assert!(
        !confined(&c, &policy, &write_tmp),
        "wrote into the host's /tmp"
    );
    assert!(!confined(&c, &policy, "ls /root"), "listed /root");
}

#[test]
fn a_symlink_planted_in_a_writable_mount_leads_nowhere() {
    let Some(c) = landlock() else { return };
    let t = tempfile::tempdir().unwrap();
    let (rw, other) = (t.path().join("rw"), t.path().join("other"));
    std::fs::create_dir(&rw).unwrap();
    std::fs::create_dir(&other).unwrap();
    let target = other.join("state.sqlite");
    std::fs::write(&target, "host state").unwrap();
    std::os::unix::fs::symlink(&target, rw.join("db.dump")).unwrap();
    std::os::unix::fs::symlink("../other/state.sqlite", rw.join("rel.dump")).unwrap();
    let before = std::fs::metadata(&target).unwrap();
    let rw_dir = std::fs::File::open(&rw).unwrap();
    let policy = Policy {
        write: vec![rw_dir.as_fd()],
        ..Default::default()
    };
    for name in ["db.dump", "rel.dump"] {
        let script = format!("cd {} && echo pwned > {name}", rw.display());
        assert!(!confined(&c, &policy, &script), "wrote through {name}");
        let read = format!("cat {}/{name}", rw.display());
        assert!(!confined(&c, &policy, &read), "read through {name}");
    }
    let after = std::fs::metadata(&target).unwrap();
    assert_eq!(std::fs::read_to_string(&target).unwrap(), "host state");
    assert_eq!(before.modified().unwrap(), after.modified().unwrap());
}

#[test]
fn tcp_connect_and_bind_only_on_granted_ports() {
    let Some(c) = landlock() else { return };
    let granted = TcpListener::bind("127.0.0.1:0").unwrap();
    let other = TcpListener::bind("127.0.0.1:0").unwrap();
    let (gp, op) = (
        granted.local_addr().unwrap().port(),
        other.local_addr().unwrap().port(),
    );
    let policy = Policy {
        connect: vec![gp],
        ..Default::default()
    };
    let connect = |port: u16| {
        let mut cmd = Command::new("/bin/bash");
        cmd.args(["-c", &format!("exec 3<>/dev/tcp/127.0.0.1/{port}")]);
        cmd
    };
    assert!(connect(op).status().unwrap().success());
    let run = |port: u16| {
        let mut cmd = connect(port);
        let _lifeline = enter(&c, &policy, &mut cmd);
        cmd.status().unwrap().success()
    };
    assert!(run(gp), "the granted port was refused");
    assert!(!run(op), "connected to a port that was not granted");
    // No bind grant: a program cannot listen (python3 is on every machine of ours; skip if not).
    let listen = "import socket; s=socket.socket(); s.bind(('127.0.0.1', 0)); s.listen()";
    if Command::new("python3")
        .arg("-c")
        .arg(listen)
        .status()
        .is_ok_and(|s| s.success())
    {
        let mut cmd = Command::new("python3");
        cmd.args(["-c", listen]);
        let _lifeline = enter(&c, &policy, &mut cmd);
        assert!(
            !cmd.status().unwrap().success(),
            "bound a port without a bind grant"
        );
    }
}

#[test]
fn a_confined_program_cannot_signal_the_host() {
    let Some(c) = landlock() else { return };
    if !matches!(c.support, Support::Landlock(v) if v >= 6) {
        return;
    }
    let kill = format!("kill -0 {}", std::process::id());
    assert!(plain(&kill));
    assert!(!confined(&c, &Policy::default(), &kill));
}

#[test]
fn limits_apply_confined_or_not() {
    let off = Confinement {
        mode: Mode::Off,
        support: support(),
    };
    let policy = Policy {
        max_file_size: Some(4096),
        ..Default::default()
    };
    let t = tempfile::tempdir().unwrap();
    let big = format!("head -c 8192 /dev/zero > {}/big", t.path().display());
    assert!(!confined(&off, &policy, &big), "wrote past RLIMIT_FSIZE");
    assert!(confined(&off, &policy, "test \"$(ulimit -c)\" = 0"));
}

#[test]
fn without_landlock_a_step_is_refused_unless_confinement_is_off() {
    for support in [Support::NotEnabled, Support::NotImplemented] {
        let c = Confinement {
            mode: Mode::Landlock,
            support,
        };
        let err = c.check().unwrap_err().to_string();
        assert!(err.contains("commands.confinement = \"off\""), "{err}");
        assert!(c.prepare(&Policy::default()).is_err());
        let off = Confinement {
            mode: Mode::Off,
            support,
        };
        assert!(off.check().is_ok());
        assert!(off.describe().starts_with("WARNING"));
    }
}

/// Processes whose command line is exactly `argv`.
fn running(argv: &[&str]) -> Vec<u32> {
    let want: Vec<u8> = argv.iter().flat_map(|a| a.bytes().chain([0])).collect();
    std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| std::fs::read(format!("/proc/{pid}/cmdline")).is_ok_and(|c| c == want))
        .collect()
}

/// Whether no process runs `argv` within 5 s: a killed process leaves `/proc` only once the
/// kernel has torn it down, which on a busy machine takes a moment after the kill.
fn gone(argv: &[&str]) -> bool {
    let until = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while !running(argv).is_empty() {
        if std::time::Instant::now() > until {
            return false;
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    true
}

/// A `sleep` nobody else runs: a duration made from this process's id and a counter.
fn unique_sleep() -> String {
    use std::sync::atomic::{AtomicU32, Ordering};
    static N: AtomicU32 = AtomicU32::new(0);
    format!(
        "{}.{}{}",
        300 + N.fetch_add(1, Ordering::SeqCst),
        std::process::id(),
        7
    )
}

fn both_modes() -> Vec<Confinement> {
    let mut modes = vec![Confinement {
        mode: Mode::Off,
        support: support(),
    }];
    modes.extend(landlock());
    modes
}

#[test]
fn a_setsid_daemon_does_not_outlive_its_command_nor_hold_its_output() {
    for c in both_modes() {
        let secs = unique_sleep();
        // The daemon keeps stdout open: without the supervisor, `output()` would wait 300 s.
        let mut cmd = sh(&format!("setsid sleep {secs} & echo started"));
        let _lifeline = enter(&c, &Policy::default(), &mut cmd);
        let started = std::time::Instant::now();
        let out = cmd.output().unwrap();
        assert!(out.status.success(), "{:?}", c.mode);
        assert_eq!(String::from_utf8_lossy(&out.stdout), "started\n");
        assert!(
            started.elapsed().as_secs() < 60,
            "the daemon held the output"
        );
        assert!(gone(&["sleep", &secs]), "the daemon outlived its command");
    }
}

#[test]
fn cutting_the_lifeline_kills_the_program_and_all_it_started() {
    for c in both_modes() {
        let secs = unique_sleep();
        let mut cmd = sh(&format!("setsid sleep {secs} & sleep {secs}"));
        cmd.stdout(std::process::Stdio::null());
        let mut lifeline = enter(&c, &Policy::default(), &mut cmd);
        let mut child = cmd.spawn().unwrap();
        drop(cmd);
        let until = std::time::Instant::now() + std::time::Duration::from_secs(30);
        while running(&["sleep", &secs]).len() < 2 && std::time::Instant::now() < until {
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        assert_eq!(
            running(&["sleep", &secs]).len(),
            2,
            "both sleeps should run"
        );
        lifeline.cut();
        let status = child.wait().unwrap();
        assert!(!status.success());
        assert!(gone(&["sleep", &secs]), "{:?} left a sleep behind", c.mode);
    }
}

#[test]
fn the_program_exit_status_comes_through_the_supervisor() {
    use std::os::unix::process::ExitStatusExt;
    for c in both_modes() {
        let mut cmd = sh("exit 7");
        let _l = enter(&c, &Policy::default(), &mut cmd);
        assert_eq!(cmd.status().unwrap().code(), Some(7));
        let mut cmd = sh("kill -TERM $$");
        let _l = enter(&c, &Policy::default(), &mut cmd);
        assert_eq!(cmd.status().unwrap().signal(), Some(libc::SIGTERM));
        let mut cmd = Command::new("/nonexistent/program");
        let _l = enter(&c, &Policy::default(), &mut cmd);
        assert_eq!(
            cmd.status().unwrap_err().kind(),
            std::io::ErrorKind::NotFound
        );
    }
}

#[test]
fn a_program_started_by_a_root_host_has_no_capabilities() {
    if !rustix::process::geteuid().is_root() {
        // Only root has capabilities to drop; CI runs as root.
        assert!(std::env::var_os("CI").is_none(), "CI runs the host as root");
        return;
    }
    let caps = |cmd: &mut Command| {
        let out = cmd.output().unwrap();
        assert!(out.status.success(), "{out:?}");
        String::from_utf8(out.stdout).unwrap()
    };
    let script = "grep -E '^Cap(Inh|Prm|Eff|Bnd|Amb):' /proc/self/status";
    // Unconfined, root has capabilities: the drop below is the confinement's doing.
    assert!(!caps(&mut sh(script)).contains("CapEff:\t0000000000000000"));
    for mode in [Mode::Landlock, Mode::Off] {
        let c = Confinement::new(mode);
        if mode == Mode::Landlock && landlock().is_none() {
            continue;
        }
        let mut cmd = sh(script);
        let _lifeline = enter(&c, &Policy::default(), &mut cmd);
        let status = caps(&mut cmd);
        for set in ["CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb"] {
            assert!(
                status.contains(&format!("{set}:\t0000000000000000")),
                "{mode:?}: {set} not empty in\n{status}"
            );
        }
        // What root could otherwise do: change a file it does not own, chown to another user.
        let t = tempfile::tempdir().unwrap();
        let f = t.path().join("theirs");
        std::fs::write(&f, "x").unwrap();
        std::os::unix::fs::chown(&f, Some(65534), Some(65534)).unwrap();
        std::fs::set_permissions(&f, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
        let dir = std::fs::File::open(t.path()).unwrap();
        let policy = Policy {
            write: vec![dir.as_fd()],
            ..Default::default()
        };
        let touch = format!("echo y >> {}", f.display());
        let chown = format!("chown 0 {}", f.display());
        assert!(
            plain(&touch) && plain(&chown),
            "root can do both unconfined"
        );
        std::os::unix::fs::chown(&f, Some(65534), Some(65534)).unwrap();
        assert!(
            !confined(&c, &policy, &touch),
            "{mode:?}: DAC override left"
        );
        assert!(!confined(&c, &policy, &chown), "{mode:?}: CAP_CHOWN left");
    }
}
