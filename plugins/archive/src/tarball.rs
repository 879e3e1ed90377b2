//! Writes walked entries as a GNU tar stream into a [`GzWriter`]: headers through the compressor,
//! file data compressed or stored depending on a quick probe of its first bytes.

use std::fs::File;
use std::io::{self, Read, Write};

use flate2::{Compress, Compression, FlushCompress, Status};
use qodify_plugin_sdk::fs::{FileKind, Metadata};
use qodify_plugin_sdk::{Error, ResultExt};
use tar::{EntryType, Header};

use crate::gz::GzWriter;
use crate::walk::{Entry, Hooks, Walk};

/// Files are read in pieces this big: few host calls.
const READ_BUF: usize = 1 << 20;
/// How much of a file the probe compresses to judge it.
const PROBE_BYTES: usize = 64 * 1024;
/// How much of a file the cheap entropy check looks at before any deflate probe.
const ENTROPY_SAMPLE: usize = 16 * 1024;
/// Below this order-0 entropy (bits per byte) Huffman coding alone saves over 5%: no need for a
/// deflate probe. Text, JSON and logs sit around 4.5-6; compressed media near 8.
const LOW_ENTROPY_BITS: f64 = 7.5;
/// Smaller files are compressed without probing: storing them would save little time.
const PROBE_MIN_SIZE: u64 = 8 * 1024;
/// Report progress at least this many bytes apart (or 1% of the total if that is more).
const PROGRESS_STEP: u64 = 8 << 20;
const BLOCK: usize = 512;
const MIB: f64 = 1024.0 * 1024.0;

/// How to write the archive.
#[derive(Debug, Clone)]
pub struct TarOptions {
    /// Deflate level 0-9 for compressible data.
    pub level: u32,
    /// Folder every entry is put under (no slashes at the ends); none = entries at the top.
    pub prefix: Option<String>,
    /// Used in progress messages: `archiving {label}: …`.
    pub label: String,
}

/// What was archived.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct TarStats {
    /// Regular files archived.
    pub files: u64,
    /// Their bytes.
    pub bytes: u64,
    /// Files stored uncompressed because the probe found them incompressible.
    pub stored_files: u64,
}

/// Writes `walk`'s entries as a `.tar.gz` to `out`, returning `out` and the stats.
pub fn write_tar_gz<W: Write>(
    out: W,
    walk: &Walk,
    opts: &TarOptions,
    hooks: &mut impl Hooks,
) -> Result<(W, TarStats), Error> {
    let mut w = TarWriter {
        gz: GzWriter::new(out, opts.level),
        probe: Compress::new(Compression::new(1), false),
        scratch: Vec::with_capacity(PROBE_BYTES + PROBE_BYTES / 4),
        read_buf: vec![0; READ_BUF],
        header_buf: Vec::with_capacity(4 * BLOCK),
        opts,
        stats: TarStats::default(),
        progress: Progress::new(walk.total_bytes, &opts.label),
    };
    hooks.progress(0.0, &w.progress.message(0));
    if let Some(prefix) = &opts.prefix {
        w.header(
            &format!("{prefix}/"),
            &walk.root,
            EntryType::Directory,
            0,
            None,
        )?;
    }
    for entry in &walk.entries {
        if hooks.cancelled() {
            return Err(Error::cancelled());
        }
        w.entry(entry, hooks)
            .with_context(|| format!("archiving {}", entry.name))?;
    }
    // Two zero blocks end a tar archive.
    w.gz.compress(&[0; 2 * BLOCK])?;
    let stats = w.stats;
    let out = w.gz.finish().context("finishing the archive")?;
    hooks.progress(100.0, &w.progress.message(walk.total_bytes));
    Ok((out, stats))
}

struct TarWriter<'a, W: Write> {
    gz: GzWriter<W>,
    probe: Compress,
    scratch: Vec<u8>,
    read_buf: Vec<u8>,
    header_buf: Vec<u8>,
    opts: &'a TarOptions,
    stats: TarStats,
    progress: Progress,
}

impl<W: Write> TarWriter<'_, W> {
    fn entry(&mut self, entry: &Entry, hooks: &mut impl Hooks) -> Result<(), Error> {
        let name = match &self.opts.prefix {
            Some(prefix) => format!("{prefix}/{}", entry.name),
            None => entry.name.clone(),
        };
        match entry.meta.kind {
            FileKind::Directory => self.header(
                &format!("{name}/"),
                &entry.meta,
                EntryType::Directory,
                0,
                None,
            ),
            FileKind::Symlink => {
                let target = entry.meta.symlink_target.as_deref().unwrap_or_default();
                self.header(&name, &entry.meta, EntryType::Symlink, 0, Some(target))
            }
            FileKind::File => self.file(&name, entry, hooks),
            FileKind::Other => Ok(()),
        }
    }

    fn file(&mut self, name: &str, entry: &Entry, hooks: &mut impl Hooks) -> Result<(), Error> {
        // The size from the listing (no extra host call): a file that grew meanwhile is cut
        // there, one that shrank is padded, as GNU tar does.
        let size = entry.meta.size;
        if size == 0 {
            self.header(name, &entry.meta, EntryType::Regular, 0, None)?;
            self.stats.files += 1;
            return Ok(());
        }
        let mut file = match File::open(&entry.path) {
            Ok(file) => file,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                hooks.warn(&format!(
                    "skipping {}: it vanished while archiving",
                    entry.name
                ));
                self.progress.skip(entry.meta.size);
                return Ok(());
            }
            Err(e) => return Err(e.into()),
        };
        self.header(name, &entry.meta, EntryType::Regular, size, None)?;

        let mut left = size;
        let mut stored = None;
        while left > 0 {
            let want = left.min(READ_BUF as u64) as usize;
            let n = read_full(&mut file, &mut self.read_buf[..want])?;
            if n == 0 {
                // The header promised `size` bytes; GNU tar pads the same way.
                hooks.warn(&format!(
                    "{}: it shrank by {left} bytes while archiving; padded with zeros",
                    entry.name
                ));
                self.progress.skip(left);
                while left > 0 {
                    let zeros = left.min(READ_BUF as u64) as usize;
                    self.read_buf[..zeros].fill(0);
                    self.gz.compress(&self.read_buf[..zeros])?;
                    left -= zeros as u64;
                }
                break;
            }
            let chunk = &self.read_buf[..n];
            let store = *stored.get_or_insert_with(|| {
                self.opts.level == 0
                    || (size >= PROBE_MIN_SIZE
                        && !compresses(&mut self.probe, &mut self.scratch, chunk))
            });
            if store {
                self.gz.store(chunk)?;
            } else {
                self.gz.compress(chunk)?;
            }
            left -= n as u64;
            if let Some((percent, message)) = self.progress.advance(n as u64) {
                hooks.progress(percent, &message);
                if hooks.cancelled() {
                    return Err(Error::cancelled());
                }
            }
        }
        self.pad(size)?;
        self.stats.files += 1;
        self.stats.bytes += size;
        self.stats.stored_files += u64::from(stored == Some(true) && self.opts.level > 0);
        Ok(())
    }

    /// Writes the header block(s) of one entry, with GNU long-name records when needed.
    fn header(
        &mut self,
        name: &str,
        meta: &Metadata,
        kind: EntryType,
        size: u64,
        link: Option<&str>,
    ) -> Result<(), Error> {
        self.header_buf.clear();
        let mut h = Header::new_gnu();
        // Raw bytes, not `set_path`: names and link targets must stay exactly as they are.
        if name.len() > h.as_old().name.len() {
            long_name_record(&mut self.header_buf, EntryType::GNULongName, name);
        }
        copy_truncated(&mut h.as_old_mut().name, name);
        if let Some(link) = link {
            if link.len() > h.as_old().linkname.len() {
                long_name_record(&mut self.header_buf, EntryType::GNULongLink, link);
            }
            copy_truncated(&mut h.as_old_mut().linkname, link);
        }
        h.set_entry_type(kind);
        h.set_mode(meta.mode & 0o7777);
        h.set_uid(meta.uid.into());
        h.set_gid(meta.gid.into());
        h.set_mtime(meta.mtime.seconds.max(0) as u64);
        h.set_size(size);
        h.set_cksum();
        self.header_buf.extend_from_slice(h.as_bytes());
        self.gz.compress(&self.header_buf)?;
        Ok(())
    }

    fn pad(&mut self, size: u64) -> io::Result<()> {
        let rem = (size % BLOCK as u64) as usize;
        if rem != 0 {
            self.gz.compress(&[0; BLOCK][..BLOCK - rem])?;
        }
        Ok(())
    }
}

/// A `././@LongLink` record carrying a name that does not fit a header field.
fn long_name_record(out: &mut Vec<u8>, kind: EntryType, name: &str) {
    let mut h = Header::new_gnu();
    copy_truncated(&mut h.as_old_mut().name, "././@LongLink");
    h.set_mode(0o644);
    h.set_uid(0);
    h.set_gid(0);
    h.set_mtime(0);
    h.set_size(name.len() as u64 + 1);
    h.set_entry_type(kind);
    h.set_cksum();
    out.extend_from_slice(h.as_bytes());
    out.extend_from_slice(name.as_bytes());
    out.push(0);
    let rem = (name.len() + 1) % BLOCK;
    if rem != 0 {
        out.resize(out.len() + BLOCK - rem, 0);
    }
}

fn copy_truncated(field: &mut [u8], value: &str) {
    let n = value.len().min(field.len());
    field[..n].copy_from_slice(&value.as_bytes()[..n]);
}

/// True when the start of a file is worth a real deflate pass: its bytes are skewed enough for
/// Huffman coding to pay, or level 1 shrinks it by at least 5%.
fn compresses(probe: &mut Compress, scratch: &mut Vec<u8>, chunk: &[u8]) -> bool {
    if entropy_bits(&chunk[..chunk.len().min(ENTROPY_SAMPLE)]) < LOW_ENTROPY_BITS {
        return true;
    }
    let sample = &chunk[..chunk.len().min(PROBE_BYTES)];
    probe.reset();
    scratch.clear();
    // Room for the sample plus deflate's worst-case expansion: a full scratch means "no".
    scratch.reserve(sample.len() + sample.len() / 4 + 64);
    match probe.compress_vec(sample, scratch, FlushCompress::Finish) {
        Ok(Status::StreamEnd) => scratch.len() * 100 <= sample.len() * 95,
        _ => false,
    }
}

/// Order-0 (byte frequency) entropy of `sample` in bits per byte: 8 for random data.
fn entropy_bits(sample: &[u8]) -> f64 {
    if sample.is_empty() {
        return 0.0;
    }
    // Four tables so consecutive equal bytes do not serialise on one counter.
    let mut counts = [[0u32; 256]; 4];
    let mut quads = sample.chunks_exact(4);
    for q in &mut quads {
        counts[0][q[0] as usize] += 1;
        counts[1][q[1] as usize] += 1;
        counts[2][q[2] as usize] += 1;
        counts[3][q[3] as usize] += 1;
    }
    for &b in quads.remainder() {
        counts[0][b as usize] += 1;
    }
    let n = sample.len() as f64;
    (0..256)
        .map(|i| counts.iter().map(|t| t[i]).sum::<u32>())
        .filter(|&c| c > 0)
        .map(|c| {
            let p = f64::from(c) / n;
            -p * p.log2()
        })
        .sum()
}

/// Reads until `buf` is full or the file ends.
fn read_full(file: &mut File, buf: &mut [u8]) -> io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match file.read(&mut buf[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(filled)
}

/// Byte-based progress, reported every 1% or 8 MiB, whichever is more.
struct Progress {
    done: u64,
    total: u64,
    step: u64,
    next: u64,
    label: String,
}

impl Progress {
    fn new(total: u64, label: &str) -> Self {
        let step = (total / 100).max(PROGRESS_STEP);
        Progress {
            done: 0,
            total,
            step,
            next: step,
            label: label.to_string(),
        }
    }

    /// Counts `n` bytes; returns a report when one is due.
    fn advance(&mut self, n: u64) -> Option<(f32, String)> {
        self.done += n;
        if self.done < self.next {
            return None;
        }
        self.next = self.done + self.step;
        let percent = if self.total == 0 {
            100.0
        } else {
            self.done as f64 * 100.0 / self.total as f64
        };
        Some((percent.min(100.0) as f32, self.message(self.done)))
    }

    /// Counts bytes that will not be read (a vanished or shrunk file) without reporting.
    fn skip(&mut self, n: u64) {
        self.done += n;
    }

    fn message(&self, done: u64) -> String {
        format!(
            "archiving {}: {:.1} MiB of {:.1} MiB",
            self.label,
            done.min(self.total) as f64 / MIB,
            self.total as f64 / MIB
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entropy_separates_text_from_noise() {
        let text = b"{\"level\":\"info\",\"msg\":\"GET /api/items/42 200\"}\n".repeat(400);
        assert!(entropy_bits(&text) < 5.0);
        let mut seed = 9u64;
        let noise: Vec<u8> = (0..16384)
            .map(|_| {
                seed = seed
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                (seed >> 56) as u8
            })
            .collect();
        assert!(entropy_bits(&noise) > 7.9);
        assert_eq!(entropy_bits(&[7; 100]), 0.0);
    }

    #[test]
    fn probe_stores_noise_and_compresses_repeats_of_noise() {
        let mut probe = Compress::new(Compression::new(1), false);
        let mut scratch = Vec::new();
        let mut seed = 3u64;
        let noise: Vec<u8> = (0..65536)
            .map(|_| {
                seed = seed
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                (seed >> 56) as u8
            })
            .collect();
        assert!(!compresses(&mut probe, &mut scratch, &noise));
        // High byte entropy but long repeats: deflate's matches pay off.
        let repeated = noise[..4096].repeat(16);
        assert!(compresses(&mut probe, &mut scratch, &repeated));
    }
}
