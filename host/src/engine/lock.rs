//! Exclusive `flock`s the kernel drops when their holder exits, however it exits, so a crash
//! never leaves a lock that blocks anything:
//! - one active run per customer: `<customers_root>/.qodify-locks/<domain>.lock`, next to the
//!   customers themselves, so runs from every data dir (a `serve`, a CLI `run` with another
//!   `--data-dir`) exclude each other;
//! - one `serve` per data dir: `<data_dir>/serve.lock`, taken before `serve` touches anything.

use std::fs::{File, OpenOptions};
use std::io::{Read as _, Seek as _, Write as _};
use std::path::{Path, PathBuf};

use rustix::fs::{FlockOperation, flock};

/// The folder in the customers root that holds the customers' locks. Its name is no DNS name,
/// so it is never taken for a customer.
pub const LOCKS_DIR: &str = ".qodify-locks";

/// The customer already has an active run.
#[derive(Debug, thiserror::Error)]
#[error(
    "customer {domain} already has an active run ({holder}); wait for it to finish or cancel it"
)]
pub struct Busy {
    /// The customer's domain.
    pub domain: String,
    /// Who holds the lock (pid, run id, pipeline), as the holder wrote it.
    pub holder: String,
}

/// Another `serve` runs on this data dir.
#[derive(Debug, thiserror::Error)]
#[error(
    "another qodify-host serve ({holder}) is using {}; stop it first or use another --data-dir",
    data_dir.display()
)]
pub struct ServeBusy {
    /// The data dir.
    pub data_dir: PathBuf,
    /// Who holds it (`pid N`), as the holder wrote it.
    pub holder: String,
}

/// Held for the whole run; released on drop or process exit.
#[derive(Debug)]
pub struct CustomerLock {
    _file: File,
}

/// Held for as long as `serve` runs.
#[derive(Debug)]
pub struct ServeLock {
    _file: File,
}

/// Takes the exclusive lock on `path` without waiting and writes `holder` into it.
/// `Ok(Err(holder))`: somebody else holds it, and this is what they wrote.
fn try_lock(path: &Path, holder: &str) -> std::io::Result<Result<File, String>> {
    let mut file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(path)?;
    if let Err(e) = flock(&file, FlockOperation::NonBlockingLockExclusive) {
        if e == rustix::io::Errno::WOULDBLOCK {
            let mut held_by = String::new();
            let _ = file.read_to_string(&mut held_by);
            let held_by = held_by.trim();
            return Ok(Err(if held_by.is_empty() {
                "holder unknown".into()
            } else {
                held_by.to_owned()
            }));
        }
        return Err(e.into());
    }
    file.set_len(0)?;
    file.rewind()?;
    file.write_all(holder.as_bytes())?;
    Ok(Ok(file))
}

/// Takes the customer's lock without waiting.
pub fn acquire(
    customers_root: &Path,
    domain: &str,
    run_id: &str,
    pipeline: &str,
) -> anyhow::Result<CustomerLock> {
    use anyhow::Context as _;
    let dir = customers_root.join(LOCKS_DIR);
    crate::files::private_dir_all(&dir)
        .with_context(|| format!("creating the customers' lock folder {}", dir.display()))?;
    let path = dir.join(format!("{domain}.lock"));
    let holder = format!(
        "pid {} run {run_id} pipeline {pipeline}",
        std::process::id()
    );
    // A lock this process released can look held for a moment: a child forked by another
    // thread (a granted program's supervisor) holds a copy of every open file until it closes
    // them or execs. So when the holder is this very process, wait a little for that copy to go.
    // The same holds for a holder that just died (`kill -9`): a child it had just forked holds
    // the lock until it execs or its supervisor sees the host gone, which is moments.
    let ours = format!("pid {} ", std::process::id());
    let started = std::time::Instant::now();
    loop {
        let waited = started.elapsed();
        match try_lock(&path, &holder).with_context(|| format!("locking {}", path.display()))? {
            Ok(file) => return Ok(CustomerLock { _file: file }),
            Err(held_by)
                if (held_by.starts_with(&ours) && waited < OWN_COPY_GRACE)
                    || (holder_is_gone(&held_by) && waited < DEAD_HOLDER_GRACE) =>
            {
                std::thread::sleep(std::time::Duration::from_millis(10));
            }
            Err(holder) => {
                return Err(Busy {
                    domain: domain.to_owned(),
                    holder,
                }
                .into());
            }
        }
    }
}

/// How long a lock held by this same process is waited for (see [`acquire`]).
const OWN_COPY_GRACE: std::time::Duration = std::time::Duration::from_secs(2);

/// How long a lock whose recorded holder is no longer running is waited for (see [`acquire`]).
const DEAD_HOLDER_GRACE: std::time::Duration = std::time::Duration::from_secs(10);

/// True when `held_by` (`pid N run …`) names a process that no longer exists on this machine.
fn holder_is_gone(held_by: &str) -> bool {
    let Some(pid) = held_by
        .strip_prefix("pid ")
        .and_then(|rest| rest.split(' ').next())
        .and_then(|n| n.parse::<i32>().ok())
        .and_then(rustix::process::Pid::from_raw)
    else {
        return false;
    };
    rustix::process::test_kill_process(pid) == Err(rustix::io::Errno::SRCH)
}

/// Takes `<data_dir>/serve.lock` without waiting: the first thing `serve` does, before it opens
/// the store or recovers anything, so a second `serve` on the same data dir never marks the
/// first one's runs interrupted nor removes their partial backups.
pub fn serve(data_dir: &Path) -> anyhow::Result<ServeLock> {
    use anyhow::Context as _;
    let path = data_dir.join("serve.lock");
    match try_lock(&path, &format!("pid {}", std::process::id()))
        .with_context(|| format!("locking {}", path.display()))?
    {
        Ok(file) => Ok(ServeLock { _file: file }),
        Err(holder) => Err(ServeBusy {
            data_dir: data_dir.to_owned(),
            holder,
        }
        .into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_run_for_the_same_customer_is_refused_until_the_first_ends() {
        let dir = tempfile::tempdir().unwrap();
        let first = acquire(dir.path(), "a.example.com", "r1", "backup").unwrap();
        let err = acquire(dir.path(), "a.example.com", "r2", "backup")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("already has an active run (pid") && err.contains("run r1"),
            "{err}"
        );
        // Another customer is independent.
        let _other = acquire(dir.path(), "b.example.com", "r3", "backup").unwrap();
        drop(first);
        acquire(dir.path(), "a.example.com", "r4", "backup").unwrap();
    }

    #[test]
    fn a_lock_left_to_a_child_of_a_dead_holder_is_waited_for() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(LOCKS_DIR).join("a.example.com.lock");
        crate::files::private_dir_all(path.parent().unwrap()).unwrap();
        // A process that has exited (reaped, so its pid is free) is named as the holder, and a
        // copy of the lock stays open here for a moment, like a child it forked.
        let mut gone = std::process::Command::new("true").spawn().unwrap();
        let dead = gone.id();
        gone.wait().unwrap();
        assert!(holder_is_gone(&format!(
            "pid {dead} run r1 pipeline upgrade"
        )));
        assert!(!holder_is_gone(&format!(
            "pid {} run r1",
            std::process::id()
        )));
        let copy = match try_lock(&path, &format!("pid {dead} run r1 pipeline upgrade")).unwrap() {
            Ok(file) => file,
            Err(h) => panic!("held by {h}"),
        };
        // The copy lives in another thread's hands: `acquire` from here is not "ours" by pid.
        let release = std::thread::spawn(move || {
            std::thread::sleep(std::time::Duration::from_millis(300));
            drop(copy);
        });
        let started = std::time::Instant::now();
        acquire(dir.path(), "a.example.com", "r2", "recover").unwrap();
        assert!(started.elapsed() >= std::time::Duration::from_millis(250));
        release.join().unwrap();
    }

    #[test]
    fn the_customer_lock_lives_with_the_customers_not_the_data_dir() {
        // Two hosts (a `serve` and a CLI `run`) with their own data dirs, one customers root.
        let customers = tempfile::tempdir().unwrap();
        let first = acquire(customers.path(), "a.example.com", "r1", "backup").unwrap();
        let second = acquire(customers.path(), "a.example.com", "r2", "restore");
        let busy = second.unwrap_err();
        assert!(busy.downcast_ref::<Busy>().is_some(), "{busy}");
        assert!(
            customers
                .path()
                .join(".qodify-locks/a.example.com.lock")
                .is_file()
        );
        // The lock folder can never be taken for a customer.
        assert!(crate::customer::Domain::parse(LOCKS_DIR).is_err());
        drop(first);
    }

    #[test]
    fn a_second_serve_on_one_data_dir_is_refused_naming_the_first() {
        let dir = tempfile::tempdir().unwrap();
        let first = serve(dir.path()).unwrap();
        let err = serve(dir.path()).unwrap_err();
        let busy = err.downcast_ref::<ServeBusy>().expect("ServeBusy");
        assert_eq!(busy.holder, format!("pid {}", std::process::id()));
        assert!(
            err.to_string()
                .contains("stop it first or use another --data-dir"),
            "{err}"
        );
        drop(first);
        serve(dir.path()).unwrap();
    }
}
