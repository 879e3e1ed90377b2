//! Confinement of the native programs a step is granted (`commands`): a Linux Landlock domain
//! built from the step's grants, entered by the child between `fork` and `exec`, together with
//! `no_new_privs` and resource limits. The WebAssembly side of the sandbox cannot reach these
//! programs; this module is what keeps them inside the same grants.
//!
//! The ruleset is built in the parent from folders the host already holds open (the step's
//! mounts, its private home), so nothing is resolved by path between the check and the exec. The
//! child only calls `landlock_restrict_self`, `setrlimit`, `prctl` and `capset`, which allocate
//! nothing.
//!
//! A host running as root does not hand root's powers to the programs: the child drops every
//! capability (bounding, ambient, effective, permitted and inheritable sets) before `exec`, so a
//! program runs as uid 0 that cannot override file permissions, reboot, load modules, change the
//! network, trace or signal others, or gain anything back through `exec`.

use std::os::fd::{AsFd, AsRawFd, BorrowedFd};
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::sync::OnceLock;

use landlock::{
    ABI, Access, AccessFs, AccessNet, BitFlags, CompatLevel, Compatible, NetPort, PathBeneath,
    PathFd, Ruleset, RulesetAttr, RulesetCreated, RulesetCreatedAttr, RulesetStatus, Scope,
};

/// The settings' `commands.confinement`, under the name this module uses.
pub use crate::settings::ConfinementMode as Mode;

/// The newest Landlock ABI this host uses: the one it is tested against. A newer kernel is
/// used at this ABI, so a program never meets a rule nobody tested.
const MAX_ABI: ABI = ABI::V7;

/// Folders every program may read and execute from: the system's programs and libraries.
/// Missing ones are skipped.
const SYSTEM_EXEC: &[&str] = &[
    "/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32",
];
/// Folders every program may read (no execute): configuration (resolver, locales, TLS roots,
/// users), the kernel's views of the process (`/proc`: other processes' private entries stay
/// closed, Landlock forbids ptrace-style access outside the domain) and of the machine (`/sys`,
/// read by Node.js for cgroup limits).
const SYSTEM_READ: &[&str] = &["/etc", "/proc", "/sys"];
/// Device files every program may read.
const DEVICES_READ: &[&str] = &["/dev/urandom", "/dev/random", "/dev/zero"];
/// Device files every program may read and write.
const DEVICES_RW: &[&str] = &["/dev/null", "/dev/full"];

/// Open files per confined program (soft and hard).
const MAX_OPEN_FILES: u64 = 16_384;

/// Why a program could not be confined.
#[derive(Debug, thiserror::Error)]
pub enum ConfineError {
    /// The kernel has no Landlock and the settings did not turn confinement off.
    #[error(
        "this kernel has no Landlock ({0}), so granted programs cannot be confined and the step is refused; \
         use a kernel with Landlock (Linux 5.13 or later, `lsm=landlock,…` on the kernel command line), \
         or set `commands.confinement = \"off\"` in qodify-host.toml to run them with the host's rights"
    )]
    Unavailable(String),
    /// Building the ruleset failed.
    #[error("building the Landlock ruleset: {0}")]
    Ruleset(String),
}

/// What the kernel offers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Support {
    /// Landlock with this ABI version.
    Landlock(i32),
    /// Built into the kernel but not enabled (`lsm=` does not list it).
    NotEnabled,
    /// Not built into the kernel.
    NotImplemented,
}

impl std::fmt::Display for Support {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Support::Landlock(abi) => write!(f, "Landlock ABI {abi}"),
            Support::NotEnabled => f.write_str("Landlock is built in but not enabled"),
            Support::NotImplemented => f.write_str("Landlock is not built into this kernel"),
        }
    }
}

/// Asks the kernel once which Landlock ABI it has.
pub fn support() -> Support {
    static SUPPORT: OnceLock<Support> = OnceLock::new();
    *SUPPORT.get_or_init(|| {
        const LANDLOCK_CREATE_RULESET_VERSION: libc::c_uint = 1;
        // SAFETY: the documented version query: no pointers are read or written.
        let v = unsafe {
            libc::syscall(
                libc::SYS_landlock_create_ruleset,
                std::ptr::null::<libc::c_void>(),
                0usize,
                LANDLOCK_CREATE_RULESET_VERSION,
            )
        };
        if v > 0 {
            Support::Landlock(v as i32)
        } else if std::io::Error::last_os_error().raw_os_error() == Some(libc::EOPNOTSUPP) {
            Support::NotEnabled
        } else {
            Support::NotImplemented
        }
    })
}

fn abi_of(version: i32) -> ABI {
    let all = [
        ABI::V1,
        ABI::V2,
        ABI::V3,
        ABI::V4,
        ABI::V5,
        ABI::V6,
        ABI::V7,
    ];
    let i = usize::try_from(version.clamp(1, MAX_ABI as i32) - 1).unwrap_or(0);
    all[i]
}

/// The host-wide confinement: the settings' mode and the kernel's support.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Confinement {
    /// What the settings ask for.
    pub mode: Mode,
    /// What the kernel has.
    pub support: Support,
}

impl Confinement {
    /// The settings' mode on this kernel.
    pub fn new(mode: Mode) -> Self {
        Self {
            mode,
            support: support(),
        }
    }

    /// One line for `plan`, `serve`'s start-up log and `/metrics`.
    pub fn describe(&self) -> String {
        match (self.mode, self.support) {
            (Mode::Landlock, Support::Landlock(abi)) => format!(
                "granted programs run confined (Landlock ABI {abi}, used at ABI {})",
                abi.min(MAX_ABI as i32)
            ),
            (Mode::Landlock, s) => format!(
                "granted programs cannot be confined ({s}): steps with command grants are refused"
            ),
            (Mode::Off, s) => format!(
                "WARNING: confinement is off (commands.confinement = \"off\"; kernel: {s}): granted programs run with the host's rights"
            ),
        }
    }

    /// True when programs really run confined.
    pub fn enforced(&self) -> bool {
        self.mode == Mode::Landlock && matches!(self.support, Support::Landlock(_))
    }

    /// `Err` when a step with command grants must be refused on this host.
    pub fn check(&self) -> Result<(), ConfineError> {
        match (self.mode, self.support) {
            (Mode::Landlock, Support::Landlock(_)) | (Mode::Off, _) => Ok(()),
            (Mode::Landlock, s) => Err(ConfineError::Unavailable(s.to_string())),
        }
    }
}

/// What one program may touch: the step's grants turned into rules.
#[derive(Default)]
pub struct Policy<'a> {
    /// Folders it may read (the step's read-only mounts).
    pub read: Vec<BorrowedFd<'a>>,
    /// Folders it may read and change (read-write mounts, its private home and temp folder).
    pub write: Vec<BorrowedFd<'a>>,
    /// Host folders it may read and change, named by path (e.g. the PM2 daemon's home for
    /// `pm2`); from the host's settings, never from a pipeline. Creating sockets and executing
    /// stay denied there.
    pub host_write: Vec<PathBuf>,
    /// TCP ports it may connect to.
    pub connect: Vec<u16>,
    /// TCP ports it may bind.
    pub bind: Vec<u16>,
    /// Largest file it may write, in bytes (`RLIMIT_FSIZE`), when the step has a budget.
    pub max_file_size: Option<u64>,
}

/// A ruleset ready to be entered by a child process.
pub struct Prepared {
    ruleset: Option<RulesetCreated>,
    max_file_size: Option<u64>,
}

impl Confinement {
    /// Builds the ruleset for `policy` (in the parent, from open folders). With confinement off
    /// only the resource limits and `no_new_privs` remain.
    pub fn prepare(&self, policy: &Policy<'_>) -> Result<Prepared, ConfineError> {
        self.check()?;
        let ruleset = match (self.mode, self.support) {
            (Mode::Landlock, Support::Landlock(v)) => Some(build(abi_of(v), policy)?),
            _ => None,
        };
        Ok(Prepared {
            ruleset,
            max_file_size: policy.max_file_size,
        })
    }
}

fn build(abi: ABI, policy: &Policy<'_>) -> Result<RulesetCreated, ConfineError> {
    let err = |e: landlock::RulesetError| ConfineError::Ruleset(e.to_string());
    let all = AccessFs::from_all(abi);
    let read_exec = AccessFs::from_read(abi);
    let read = AccessFs::ReadFile | AccessFs::ReadDir;
    let file_rw = AccessFs::ReadFile | AccessFs::WriteFile | AccessFs::Truncate;

    // Rights this ABI cannot filter are simply not handled (best effort below the tested ABI);
    // the file-system rights of ABI 1 are always there when Landlock is.
    let mut ruleset = Ruleset::default()
        .set_compatibility(CompatLevel::BestEffort)
        .handle_access(all)
        .map_err(err)?;
    if abi as i32 >= 4 {
        ruleset = ruleset
            .handle_access(AccessNet::BindTcp | AccessNet::ConnectTcp)
            .map_err(err)?;
    }
    if abi as i32 >= 6 {
        ruleset = ruleset.scope(Scope::from_all(abi)).map_err(err)?;
    }
    let mut created = ruleset.create().map_err(err)?.no_new_privs(true);

    let system = |paths: &[&str], access: BitFlags<AccessFs>| {
        paths
            .iter()
            .filter_map(|p| PathFd::new(p).ok())
            .map(move |fd| PathBeneath::new(fd, access))
            .collect::<Vec<_>>()
    };
    for rule in system(SYSTEM_EXEC, read_exec)
        .into_iter()
        .chain(system(SYSTEM_READ, read))
        .chain(system(DEVICES_READ, AccessFs::ReadFile.into()))
        .chain(system(DEVICES_RW, file_rw))
    {
        created = created.add_rule(rule).map_err(err)?;
    }
    for path in &policy.host_write {
        let fd = PathFd::new(path)
            .map_err(|e| ConfineError::Ruleset(format!("host folder {}: {e}", path.display())))?;
        // No sockets, no execute: a client may use its daemon's folder (locks, logs), but it
        // cannot start a daemon of its own there, which would live on inside this domain.
        let access = all & !(AccessFs::MakeSock | AccessFs::Execute);
        created = created
            .add_rule(PathBeneath::new(fd, access))
            .map_err(err)?;
    }
    // Execute inside mounts too: npm scripts run `node_modules/.bin/*` (scripts with a `#!`
    // line), and whatever runs stays in this same domain.
    for fd in &policy.read {
        created = created
            .add_rule(PathBeneath::new(fd.as_fd(), read_exec))
            .map_err(err)?;
    }
    for fd in &policy.write {
        created = created
            .add_rule(PathBeneath::new(fd.as_fd(), all))
            .map_err(err)?;
    }
    if abi as i32 >= 4 {
        for port in &policy.connect {
            created = created
                .add_rule(NetPort::new(*port, AccessNet::ConnectTcp))
                .map_err(err)?;
        }
        for port in &policy.bind {
            created = created
                .add_rule(NetPort::new(*port, AccessNet::BindTcp))
                .map_err(err)?;
        }
    }
    Ok(created)
}

impl Prepared {
    /// Makes `cmd`'s child enter the domain (and take the limits) right before `exec`, and
    /// puts a supervisor between the host and the program ([`supervise`]). The returned
    /// [`Lifeline`] is the host's end: dropping it (timeout, cancel) makes the supervisor kill
    /// the program and everything it started.
    pub fn install(self, cmd: &mut std::process::Command) -> std::io::Result<Lifeline> {
        let (read, write) = rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC)?;
        let lifeline = read.as_raw_fd();
        let confine = self.ruleset.is_some();
        let mut ruleset = self.ruleset;
        let max_file_size = self.max_file_size;
        let root = rustix::process::geteuid().is_root();
        // SAFETY: the closure runs in the forked child before exec; it only makes syscalls
        // (prctl, capset, landlock_restrict_self, setrlimit, fork, poll, kill, close) and
        // allocates nothing on success.
        unsafe {
            cmd.pre_exec(move || {
                let _keep_open_until_fork = &read;
                set_limits(max_file_size)?;
                if root {
                    drop_capabilities()?;
                }
                if confine {
                    // A second spawn of the same Command finds no ruleset: refuse it rather
                    // than run unconfined.
                    let r = ruleset
                        .take()
                        .ok_or_else(|| std::io::Error::from_raw_os_error(libc::EPERM))?;
                    let status = r
                        .restrict_self()
                        .map_err(|_| std::io::Error::from_raw_os_error(libc::EPERM))?;
                    if status.ruleset == RulesetStatus::NotEnforced {
                        return Err(std::io::Error::from_raw_os_error(libc::ENOSYS));
                    }
                } else if libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0 {
                    // Confinement off: still no privilege gain through setuid programs.
                    return Err(std::io::Error::last_os_error());
                }
                supervise::split(lifeline)
            });
        }
        Ok(Lifeline(Some(write)))
    }
}

/// The host's end of a supervised program: dropping (or [`Lifeline::cut`]) it tells the
/// supervisor to kill the program and all it left behind.
#[derive(Debug)]
pub struct Lifeline(Option<std::os::fd::OwnedFd>);

impl Lifeline {
    /// Lets go now.
    pub fn cut(&mut self) {
        self.0 = None;
    }
}

/// Empties every capability set of the calling process, for good: the bounding set (so no
/// `exec` brings any back, not even of a program run as uid 0), the ambient set, and the
/// effective, permitted and inheritable sets.
///
/// Runs in the child between `fork` and `exec`: plain syscalls, no allocation.
fn drop_capabilities() -> std::io::Result<()> {
    const LINUX_CAPABILITY_VERSION_3: u32 = 0x2008_0522;
    #[repr(C)]
    struct Header {
        version: u32,
        pid: libc::c_int,
    }
    #[repr(C)]
    #[derive(Clone, Copy)]
    struct Data {
        effective: u32,
        permitted: u32,
        inheritable: u32,
    }
    // SAFETY (all three): plain syscalls on integers and stack values.
    // Dropping from the bounding set needs CAP_SETPCAP, so it comes first; the kernel answers
    // EINVAL past its last capability.
    for cap in 0..64 {
        if unsafe { libc::prctl(libc::PR_CAPBSET_DROP, cap, 0, 0, 0) } != 0 {
            let err = std::io::Error::last_os_error();
            if err.raw_os_error() == Some(libc::EINVAL) {
                break;
            }
            return Err(err);
        }
    }
    if unsafe {
        libc::prctl(
            libc::PR_CAP_AMBIENT,
            libc::PR_CAP_AMBIENT_CLEAR_ALL,
            0,
            0,
            0,
        )
    } != 0
    {
        return Err(std::io::Error::last_os_error());
    }
    let header = Header {
        version: LINUX_CAPABILITY_VERSION_3,
        pid: 0,
    };
    let none = [Data {
        effective: 0,
        permitted: 0,
        inheritable: 0,
    }; 2];
    if unsafe { libc::syscall(libc::SYS_capset, &header, none.as_ptr()) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

/// Core dumps off (they would write a program's memory, secrets included, outside any grant),
/// a bounded number of open files, and the step's file-size budget.
fn set_limits(max_file_size: Option<u64>) -> std::io::Result<()> {
    let set = |resource, soft: u64, hard: u64| {
        let lim = libc::rlimit {
            rlim_cur: soft as libc::rlim_t,
            rlim_max: hard as libc::rlim_t,
        };
        // SAFETY: a plain syscall on a stack value.
        if unsafe { libc::setrlimit(resource, &lim) } != 0 {
            return Err(std::io::Error::last_os_error());
        }
        Ok(())
    };
    set(libc::RLIMIT_CORE, 0, 0)?;
    let mut cur = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: a plain syscall writing into a stack value.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut cur) } == 0 {
        let hard = cur.rlim_max.min(MAX_OPEN_FILES);
        set(libc::RLIMIT_NOFILE, hard, hard)?;
    }
    if let Some(max) = max_file_size {
        set(libc::RLIMIT_FSIZE, max, max)?;
    }
    Ok(())
}

mod supervise;
#[cfg(test)]
mod tests;
