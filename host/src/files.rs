//! Files the host itself creates or reads on behalf of a run: private folders, and bounded
//! hashing of files it does not control (a plugin's artifact, a listed backup). A leaf: the
//! engine, the backup folder rules and the use cases all build on it.

use std::io::Read as _;
use std::os::fd::AsFd as _;
use std::path::Path;

use rustix::fs::{Mode, OFlags};
use sha2::{Digest as _, Sha256};

/// Creates a folder (and its parents) readable by the host's user only: run work folders and
/// caches may hold customer data.
pub fn private_dir_all(path: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::DirBuilderExt as _;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(path)
}

/// Bounds on hashing a file the host does not control (a plugin's artifact, a listed backup).
#[derive(Debug, Clone, Copy, Default)]
pub struct HashBounds {
    /// The size the file must have; a file of another size is refused before reading a byte
    /// (a 1 TiB sparse file that claims to be 10 bytes costs nothing).
    pub expect_size: Option<u64>,
    /// Hashing stops here with an error (checked every 64 MiB).
    pub deadline: Option<std::time::Instant>,
}

/// Size and sha256 of the regular file `name` in `dir`, opened without following symlinks, within
/// `bounds`.
pub fn hash_file_at(
    dir: &cap_std::fs::Dir,
    name: &std::ffi::OsStr,
    bounds: HashBounds,
) -> std::io::Result<(u64, String)> {
    let fd = rustix::fs::openat(
        dir.as_fd(),
        name,
        OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC | OFlags::NONBLOCK,
        Mode::empty(),
    )
    .map_err(|e| {
        if e == rustix::io::Errno::LOOP {
            std::io::Error::other("is a symlink; artifacts must be regular files")
        } else {
            e.into()
        }
    })?;
    let st = rustix::fs::fstat(&fd)?;
    if st.st_mode & 0o170000 != 0o100000 {
        return Err(std::io::Error::other("not a regular file"));
    }
    let len = st.st_size as u64;
    if let Some(want) = bounds.expect_size
        && want != len
    {
        return Err(std::io::Error::other(format!(
            "the file has {len} bytes, not the {want} expected (not hashed)"
        )));
    }
    let mut file = std::fs::File::from(fd);
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut size = 0u64;
    let mut next_check = 0u64;
    loop {
        if size >= next_check {
            next_check = size + (64 << 20);
            if bounds
                .deadline
                .is_some_and(|d| std::time::Instant::now() >= d)
            {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    format!(
                        "hashing stopped at the step's deadline after {} of {}",
                        crate::pipeline::units::human_bytes(size),
                        crate::pipeline::units::human_bytes(len)
                    ),
                ));
            }
        }
        let n = file.read(&mut buf)?;
        if n == 0 {
            break;
        }
        size += n as u64;
        hasher.update(&buf[..n]);
    }
    Ok((size, hex::encode(hasher.finalize())))
}
