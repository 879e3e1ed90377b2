//! A `Write` adapter that counts bytes and computes SHA-256 of what passes through, so a plugin
//! knows an artifact's size and checksum when it finishes writing, without reading it back.
//!
//! ```
//! use std::io::Write;
//! use qodify_plugin_sdk::HashingWriter;
//!
//! let mut w = HashingWriter::new(Vec::new());
//! w.write_all(b"abc").unwrap();
//! let (bytes, size, sha256) = w.finish();
//! assert_eq!((bytes.as_slice(), size), (&b"abc"[..], 3));
//! assert_eq!(sha256, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
//! ```

use std::io::{self, Write};

use sha2::{Digest, Sha256};

/// Wraps a writer; every byte the inner writer accepts is counted and hashed.
#[derive(Debug)]
pub struct HashingWriter<W: Write> {
    inner: W,
    hasher: Sha256,
    bytes: u64,
}

impl<W: Write> HashingWriter<W> {
    /// Wraps `inner`.
    pub fn new(inner: W) -> Self {
        HashingWriter {
            inner,
            hasher: Sha256::new(),
            bytes: 0,
        }
    }

    /// Bytes written so far.
    pub fn bytes_written(&self) -> u64 {
        self.bytes
    }

    /// The inner writer.
    pub fn get_ref(&self) -> &W {
        &self.inner
    }

    /// The inner writer, mutably; bytes written to it directly are not hashed.
    pub fn get_mut(&mut self) -> &mut W {
        &mut self.inner
    }

    /// Returns the inner writer, the byte count and the lowercase hex SHA-256. It does not flush:
    /// flush (or `sync_all` a file) before trusting the bytes are stored.
    pub fn finish(self) -> (W, u64, String) {
        (self.inner, self.bytes, hex::encode(self.hasher.finalize()))
    }
}

impl<W: Write> Write for HashingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        self.bytes += n as u64;
        Ok(n)
    }

    fn write_all(&mut self, buf: &[u8]) -> io::Result<()> {
        // One inner call for big buffers: `File::write_all` hands it to the host in few pieces.
        self.inner.write_all(buf)?;
        self.hasher.update(buf);
        self.bytes += buf.len() as u64;
        Ok(())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}
