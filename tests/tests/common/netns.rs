//! Network namespaces for end-to-end tests: each one a separate network host on this machine,
//! joined to the root namespace by a veth pair on its own /30 (`10.213.x.y`), and removed when
//! dropped. Needs root (`ip netns`); [`Netns::usable`] tells whether this machine allows it.

#![allow(dead_code)]

use std::process::Command;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU32, Ordering};

/// Name prefix of every namespace these tests make: `qdf-<pid>-<slot>`.
const PREFIX: &str = "qdf-";
/// /30 subnets in 10.213.0.0/16.
const SLOTS: u32 = 16_384;

static NEXT: AtomicU32 = AtomicU32::new(0);

/// One network namespace with a veth pair to the root namespace.
pub struct Netns {
    /// `qdf-<pid>-<slot>`.
    pub name: String,
    /// The root side of the veth pair, `qdf<slot>`.
    veth: String,
    /// The address inside the namespace (`eth0`), reachable from the root namespace.
    pub addr: String,
    /// The root side's address.
    pub peer: String,
}

/// `ip args…`; its stderr when it fails.
fn ip(args: &[&str]) -> Result<(), String> {
    let out = Command::new("ip")
        .args(args)
        .output()
        .map_err(|e| format!("running ip: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "ip {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

impl Netns {
    /// Whether `ip netns` works here (root, a kernel with network namespaces), found once per
    /// test binary by making and removing a namespace; also removes namespaces that test
    /// processes now dead left behind (a test binary killed before its `Drop`s ran).
    /// `QODIFY_TEST_NO_NETNS=1` says no, to try the tests' fallback.
    pub fn usable() -> Result<(), String> {
        static USABLE: OnceLock<Result<(), String>> = OnceLock::new();
        USABLE
            .get_or_init(|| {
                if std::env::var_os("QODIFY_TEST_NO_NETNS").is_some() {
                    return Err("QODIFY_TEST_NO_NETNS is set".into());
                }
                sweep_stale();
                let probe = format!("{PREFIX}{}-probe", std::process::id());
                ip(&["netns", "add", &probe])?;
                // Running in it needs more (a mount namespace for its /sys) than making it.
                let ran = ip(&["netns", "exec", &probe, "true"]);
                ip(&["netns", "del", &probe])?;
                ran
            })
            .clone()
    }

    /// A new namespace with `lo` up and `eth0` at `10.213.x.(y+2)/30`, its veth peer at
    /// `10.213.x.(y+1)` in the root namespace. The slot (subnet and veth name) is unique on this
    /// machine: creating the veth fails when another process holds it, and the next is tried.
    pub fn new() -> Result<Self, String> {
        Self::usable()?;
        let pid = std::process::id();
        let start = pid.wrapping_mul(7919) % SLOTS;
        let mut last = String::new();
        for _ in 0..64 {
            let slot = (start + NEXT.fetch_add(1, Ordering::SeqCst)) % SLOTS;
            let name = format!("{PREFIX}{pid}-{slot}");
            let veth = format!("qdf{slot}");
            ip(&["netns", "add", &name])?;
            if let Err(e) = ip(&[
                "link", "add", &veth, "type", "veth", "peer", "name", "eth0", "netns", &name,
            ]) {
                // Another process's slot: try the next.
                let _ = ip(&["netns", "del", &name]);
                last = e;
                continue;
            }
            let (x, y) = (slot / 64, slot % 64 * 4);
            let ns = Self {
                name,
                veth,
                addr: format!("10.213.{x}.{}", y + 2),
                peer: format!("10.213.{x}.{}", y + 1),
            };
            let peer_cidr = format!("{}/30", ns.peer);
            let addr_cidr = format!("{}/30", ns.addr);
            ip(&["addr", "add", &peer_cidr, "dev", &ns.veth])?;
            ip(&["link", "set", &ns.veth, "up"])?;
            ip(&["-n", &ns.name, "addr", "add", &addr_cidr, "dev", "eth0"])?;
            ip(&["-n", &ns.name, "link", "set", "eth0", "up"])?;
            ip(&["-n", &ns.name, "link", "set", "lo", "up"])?;
            return Ok(ns);
        }
        Err(format!("no free veth slot: {last}"))
    }

    /// `cmd` run inside this namespace (`ip netns exec`, which execs: the child's pid is the
    /// command's own, so signals reach it directly). Environment and arguments are kept; the
    /// environment is rebuilt from what `cmd` set explicitly.
    pub fn wrap(&self, cmd: &Command) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.name])
            .arg(cmd.get_program())
            .args(cmd.get_args())
            .env_clear();
        for (k, v) in cmd.get_envs() {
            match v {
                Some(v) => c.env(k, v),
                None => c.env_remove(k),
            };
        }
        if let Some(dir) = cmd.get_current_dir() {
            c.current_dir(dir);
        }
        c
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        // Deleting the namespace destroys eth0 and with it the pair; the root side is removed
        // explicitly too, in case a process still holds the namespace open.
        let _ = ip(&["netns", "del", &self.name]);
        let _ = ip(&["link", "del", &self.veth]);
    }
}

/// Removes `qdf-<pid>-*` namespaces whose test process is gone.
fn sweep_stale() {
    let Ok(out) = Command::new("ip").args(["netns", "list"]).output() else {
        return;
    };
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let name = line.split_whitespace().next().unwrap_or("");
        let Some(rest) = name.strip_prefix(PREFIX) else {
            continue;
        };
        let Some((pid, slot)) = rest.split_once('-') else {
            continue;
        };
        let alive = std::path::Path::new("/proc").join(pid).exists();
        if !alive && pid.parse::<u32>().is_ok() {
            let _ = ip(&["netns", "del", name]);
            if slot.parse::<u32>().is_ok() {
                let _ = ip(&["link", "del", &format!("qdf{slot}")]);
            }
        }
    }
}
