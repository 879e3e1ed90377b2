//! One active run per customer on this machine: an exclusive `flock` on
//! `<data_dir>/locks/<domain>.lock`. The kernel drops the lock when its holder exits, however it
//! exits, so a crash never leaves a lock that blocks the customer's next run.

use std::fs::{File, OpenOptions};
use std::io::{Read as _, Seek as _, Write as _};
use std::path::Path;

use rustix::fs::{FlockOperation, flock};

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

/// Held for the whole run; released on drop or process exit.
#[derive(Debug)]
pub struct CustomerLock {
    _file: File,
}

/// Takes the customer's lock without waiting.
pub fn acquire(
    data_dir: &Path,
    domain: &str,
    run_id: &str,
    pipeline: &str,
) -> anyhow::Result<CustomerLock> {
    let dir = data_dir.join("locks");
    crate::executor::private_dir_all(&dir)?;
    let path = dir.join(format!("{domain}.lock"));
    let mut file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)?;
    if let Err(e) = flock(&file, FlockOperation::NonBlockingLockExclusive) {
        if e == rustix::io::Errno::WOULDBLOCK {
            let mut holder = String::new();
            let _ = file.read_to_string(&mut holder);
            let holder = holder.trim();
            return Err(Busy {
                domain: domain.to_owned(),
                holder: if holder.is_empty() {
                    "holder unknown".into()
                } else {
                    holder.to_owned()
                },
            }
            .into());
        }
        return Err(std::io::Error::from(e).into());
    }
    file.set_len(0)?;
    file.rewind()?;
    write!(
        file,
        "pid {} run {run_id} pipeline {pipeline}",
        std::process::id()
    )?;
    Ok(CustomerLock { _file: file })
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
}
