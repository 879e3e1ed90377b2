//! The cache of compiled plugins: wasmtime's native code for each plugin, kept under the data
//! dir so the next run skips compilation.
//!
//! Loading a cached entry runs its machine code unchecked, so an entry is only loaded when it
//! carries an HMAC-SHA256 made with a key that only this host holds (`<data_dir>/cache/key`,
//! mode 0600, owned by the host's user). The MAC covers the plugin's sha256 as well as the
//! code, so an entry written by anyone else, copied from another host, changed on disk or
//! renamed to another plugin's name is ignored and the plugin is compiled again. The check runs
//! on the bytes in memory that are then deserialised: nothing can swap the file in between.

use std::io::{Read as _, Write as _};
use std::os::unix::fs::{MetadataExt as _, OpenOptionsExt as _};
use std::path::{Path, PathBuf};

use hmac::{Hmac, Mac as _};
use sha2::Sha256;
use wasmtime::Engine;
use wasmtime::component::Component;

type HmacSha256 = Hmac<Sha256>;

/// Start of every entry: a format tag, then the 32-byte MAC, then wasmtime's serialised code.
const MAGIC: &[u8; 4] = b"QCC1";
const MAC_LEN: usize = 32;
const KEY_LEN: usize = 32;

/// Compiled plugins on disk, under one engine's compatibility key.
pub(super) struct CompileCache {
    dir: PathBuf,
    /// `None` when the key cannot be made or trusted: nothing is cached then.
    key: Option<[u8; KEY_LEN]>,
}

impl CompileCache {
    /// The cache in `dir`, with the host key at `key_path` (made on first use).
    pub(super) fn open(dir: PathBuf, key_path: &Path) -> Self {
        let key = match load_or_create_key(key_path) {
            Ok(key) => Some(key),
            Err(e) => {
                tracing::warn!(
                    "compiled plugins are not cached: the cache key {} cannot be used: {e}; \
                     remove the file to let the host make a new one",
                    key_path.display()
                );
                None
            }
        };
        Self { dir, key }
    }

    /// Where the entries are kept.
    pub(super) fn dir(&self) -> &Path {
        &self.dir
    }

    fn entry(&self, sha256: &str) -> PathBuf {
        self.dir.join(format!("{sha256}.cwasm"))
    }

    fn mac(key: &[u8; KEY_LEN], sha256: &str, code: &[u8]) -> HmacSha256 {
        let mut mac = HmacSha256::new_from_slice(key).expect("HMAC takes any key");
        // The plugin's hash is fixed-length hex, so hash ‖ code is unambiguous.
        mac.update(sha256.as_bytes());
        mac.update(code);
        mac
    }

    /// The cached compilation of the plugin with this hash, when there is a genuine one.
    pub(super) fn load(&self, engine: &Engine, sha256: &str) -> Option<Component> {
        let key = self.key.as_ref()?;
        let path = self.entry(sha256);
        let bytes = match read_entry(&path) {
            Ok(Some(bytes)) => bytes,
            Ok(None) => return None,
            Err(e) => {
                tracing::warn!("ignoring unreadable compile cache {}: {e}", path.display());
                return None;
            }
        };
        let genuine = bytes.len() > MAGIC.len() + MAC_LEN
            && bytes.starts_with(MAGIC)
            && Self::mac(key, sha256, &bytes[MAGIC.len() + MAC_LEN..])
                .verify_slice(&bytes[MAGIC.len()..MAGIC.len() + MAC_LEN])
                .is_ok();
        if !genuine {
            tracing::warn!(
                "ignoring compile cache {}: it was not written by this host (bad MAC); \
                 the plugin is compiled again",
                path.display()
            );
            return None;
        }
        // SAFETY: these exact bytes (in memory, not re-read) carry a MAC under the key only this
        // host holds, over this plugin's hash: they are what this host's engine serialised for
        // this plugin, which is what `deserialize` requires.
        match unsafe { Component::deserialize(engine, &bytes[MAGIC.len() + MAC_LEN..]) } {
            Ok(c) => Some(c),
            Err(e) => {
                tracing::warn!("ignoring unusable compile cache {}: {e}", path.display());
                None
            }
        }
    }

    /// Keeps a compilation for the next run; nothing happens without a key.
    pub(super) fn store(&self, sha256: &str, component: &Component) -> anyhow::Result<()> {
        let Some(key) = self.key.as_ref() else {
            return Ok(());
        };
        crate::files::private_dir_all(&self.dir)?;
        let code = component.serialize().map_err(anyhow::Error::from)?;
        let mac = Self::mac(key, sha256, &code).finalize().into_bytes();
        let path = self.entry(sha256);
        let tmp = path.with_extension(format!("tmp{}", std::process::id()));
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .custom_flags(libc::O_NOFOLLOW)
            .open(&tmp)?;
        file.write_all(MAGIC)?;
        file.write_all(&mac)?;
        file.write_all(&code)?;
        drop(file);
        std::fs::rename(&tmp, &path)?;
        Ok(())
    }
}

/// Reads an entry, `None` when there is none. Only a regular file is read (no FIFO to hang on,
/// no link followed).
fn read_entry(path: &Path) -> std::io::Result<Option<Vec<u8>>> {
    let file = match std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(path)
    {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    let meta = file.metadata()?;
    if !meta.is_file() {
        return Err(std::io::Error::other("not a regular file"));
    }
    let mut bytes = Vec::with_capacity(meta.len() as usize);
    (&file).read_to_end(&mut bytes)?;
    Ok(Some(bytes))
}

/// The host's cache key: read when it exists and only this user can read it, else made.
fn load_or_create_key(path: &Path) -> std::io::Result<[u8; KEY_LEN]> {
    if let Some(dir) = path.parent() {
        crate::files::private_dir_all(dir)?;
    }
    for _ in 0..2 {
        match std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
            .open(path)
        {
            Ok(file) => return read_key(&file),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
        let mut key = [0u8; KEY_LEN];
        std::fs::File::open("/dev/urandom")?.read_exact(&mut key)?;
        // Written under a temporary name and linked into place: a reader never sees half a
        // key, and of two hosts starting at once the first link wins and both read it.
        let tmp = path.with_extension(format!("tmp{}", std::process::id()));
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .custom_flags(libc::O_NOFOLLOW)
            .open(&tmp)?;
        file.write_all(&key)?;
        file.sync_all()?;
        drop(file);
        let linked = std::fs::hard_link(&tmp, path);
        let _ = std::fs::remove_file(&tmp);
        match linked {
            Ok(()) => return Ok(key),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(e),
        }
    }
    Err(std::io::Error::other("the key file keeps changing"))
}

fn read_key(file: &std::fs::File) -> std::io::Result<[u8; KEY_LEN]> {
    let meta = file.metadata()?;
    if !meta.is_file() {
        return Err(std::io::Error::other("it is not a regular file"));
    }
    if meta.uid() != rustix::process::geteuid().as_raw() {
        return Err(std::io::Error::other(format!(
            "it is owned by uid {}, not by the host's user",
            meta.uid()
        )));
    }
    if meta.mode() & 0o077 != 0 {
        return Err(std::io::Error::other(format!(
            "its mode is {:o}: other users can read or change it",
            meta.mode() & 0o777
        )));
    }
    let mut key = [0u8; KEY_LEN];
    let mut rest = Vec::new();
    let mut reader = file;
    reader.read_exact(&mut key)?;
    reader.read_to_end(&mut rest)?;
    if !rest.is_empty() {
        return Err(std::io::Error::other("it is longer than a key"));
    }
    Ok(key)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt as _;

    /// The smallest component there is: the preamble of the component binary format.
    const EMPTY_COMPONENT: &[u8] = b"\0asm\x0d\0\x01\0";
    const SHA: &str = "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
    const OTHER_SHA: &str = "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb";

    fn setup() -> (tempfile::TempDir, Engine, CompileCache) {
        let tmp = tempfile::tempdir().unwrap();
        let engine = Engine::default();
        let cache = CompileCache::open(tmp.path().join("components"), &tmp.path().join("key"));
        (tmp, engine, cache)
    }

    fn stored(engine: &Engine, cache: &CompileCache) {
        let component = Component::new(engine, EMPTY_COMPONENT).unwrap();
        cache.store(SHA, &component).unwrap();
    }

    #[test]
    fn an_entry_written_by_this_host_is_loaded() {
        let (tmp, engine, cache) = setup();
        assert!(cache.load(&engine, SHA).is_none(), "nothing cached yet");
        stored(&engine, &cache);
        assert!(cache.load(&engine, SHA).is_some());
        let key = std::fs::metadata(tmp.path().join("key")).unwrap();
        assert_eq!(key.permissions().mode() & 0o777, 0o600);
        // A second cache on the same data dir (the next run) uses the same key.
        let again = CompileCache::open(tmp.path().join("components"), &tmp.path().join("key"));
        assert!(again.load(&engine, SHA).is_some());
    }

    #[test]
    fn a_changed_entry_is_not_loaded() {
        let (_tmp, engine, cache) = setup();
        stored(&engine, &cache);
        let path = cache.entry(SHA);
        let mut bytes = std::fs::read(&path).unwrap();
        let last = bytes.len() - 1;
        bytes[last] ^= 1;
        std::fs::write(&path, &bytes).unwrap();
        assert!(cache.load(&engine, SHA).is_none());
    }

    #[test]
    fn a_bare_wasmtime_cwasm_is_not_loaded() {
        // What an attacker with write access to the folder would drop there: valid native
        // code for this very engine, without our MAC.
        let (_tmp, engine, cache) = setup();
        let component = Component::new(&engine, EMPTY_COMPONENT).unwrap();
        crate::files::private_dir_all(cache.dir()).unwrap();
        std::fs::write(cache.entry(SHA), component.serialize().unwrap()).unwrap();
        assert!(cache.load(&engine, SHA).is_none());
    }

    #[test]
    fn an_entry_from_another_host_is_not_loaded() {
        let (_tmp, engine, cache) = setup();
        let (_other_tmp, _, other) = setup();
        stored(&engine, &other);
        crate::files::private_dir_all(cache.dir()).unwrap();
        std::fs::copy(other.entry(SHA), cache.entry(SHA)).unwrap();
        assert!(cache.load(&engine, SHA).is_none());
    }

    #[test]
    fn an_entry_renamed_to_another_plugin_is_not_loaded() {
        let (_tmp, engine, cache) = setup();
        stored(&engine, &cache);
        std::fs::rename(cache.entry(SHA), cache.entry(OTHER_SHA)).unwrap();
        assert!(cache.load(&engine, OTHER_SHA).is_none());
    }

    #[test]
    fn a_key_others_can_read_turns_the_cache_off() {
        let tmp = tempfile::tempdir().unwrap();
        let key = tmp.path().join("key");
        std::fs::write(&key, [7u8; KEY_LEN]).unwrap();
        std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).unwrap();
        let cache = CompileCache::open(tmp.path().join("components"), &key);
        assert!(cache.key.is_none());
        let engine = Engine::default();
        stored(&engine, &cache);
        assert!(cache.load(&engine, SHA).is_none());
        assert!(
            !cache.entry(SHA).exists(),
            "nothing is written without a key"
        );
        let err = load_or_create_key(&key).unwrap_err().to_string();
        assert!(err.contains("644"), "{err}");
    }

    #[test]
    fn a_fifo_in_place_of_an_entry_does_not_hang() {
        let (_tmp, engine, cache) = setup();
        crate::files::private_dir_all(cache.dir()).unwrap();
        rustix::fs::mknodat(
            rustix::fs::CWD,
            cache.entry(SHA),
            rustix::fs::FileType::Fifo,
            rustix::fs::Mode::from_raw_mode(0o600),
            0,
        )
        .unwrap();
        assert!(cache.load(&engine, SHA).is_none());
    }
}
