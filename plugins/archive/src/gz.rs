//! A single-member gzip stream (RFC 1952) whose raw deflate body mixes compressed blocks with
//! stored blocks written directly, so incompressible data costs a copy, not a deflate pass.
//!
//! Before stored blocks the compressor does a full flush: its output ends byte-aligned and it
//! forgets its history, so no later match refers across the inserted bytes. (flate2's `set_level`
//! cannot do this with the zlib-rs backend: it hands zlib-rs no output buffer for the block flush a
//! strategy change needs.)

use std::io::{self, Write};

use flate2::{FlushCompress, Status};

use crate::deflater::Deflater;

/// Output is staged here and written in pieces this big: few host calls.
const OUT_BUF: usize = 1 << 20;
/// The largest stored block deflate allows.
const MAX_STORED: usize = 65_535;

/// Writes a gzip stream to `W`.
pub struct GzWriter<W: Write> {
    out: W,
    deflate: Deflater,
    crc: crc32fast::Hasher,
    input_bytes: u64,
    buf: Vec<u8>,
    /// True when the compressor took input since its last full flush.
    dirty: bool,
}

impl<W: Write> GzWriter<W> {
    /// Starts a gzip stream compressed at `level` (0-9).
    pub fn new(out: W, level: u32) -> Self {
        let mut buf = Vec::with_capacity(OUT_BUF);
        // magic, deflate, no flags, no mtime (reproducible), extra flags, OS = Unix
        let xfl = match level {
            9 => 2,
            1 => 4,
            _ => 0,
        };
        buf.extend_from_slice(&[0x1f, 0x8b, 8, 0, 0, 0, 0, 0, xfl, 3]);
        GzWriter {
            out,
            deflate: Deflater::new(level),
            crc: crc32fast::Hasher::new(),
            input_bytes: 0,
            buf,
            dirty: false,
        }
    }

    /// Compresses `data` at the stream's level.
    pub fn compress(&mut self, mut data: &[u8]) -> io::Result<()> {
        self.crc.update(data);
        self.input_bytes += data.len() as u64;
        self.dirty |= !data.is_empty();
        while !data.is_empty() {
            self.reserve()?;
            let before = self.deflate.total_in();
            self.deflate
                .compress_vec(data, &mut self.buf, FlushCompress::None)?;
            data = &data[(self.deflate.total_in() - before) as usize..];
        }
        Ok(())
    }

    /// Appends `data` uncompressed, as stored blocks.
    pub fn store(&mut self, data: &[u8]) -> io::Result<()> {
        if self.dirty {
            self.flush_deflate(FlushCompress::Full)?;
            self.dirty = false;
        }
        self.crc.update(data);
        self.input_bytes += data.len() as u64;
        for block in data.chunks(MAX_STORED) {
            if self.buf.capacity() - self.buf.len() < block.len() + 5 {
                self.drain()?;
            }
            // BFINAL = 0, BTYPE = 00 (stored); we are byte-aligned, so the 3 header bits and the
            // padding to the byte boundary make one zero byte.
            let len = block.len() as u16;
            self.buf.push(0);
            self.buf.extend_from_slice(&len.to_le_bytes());
            self.buf.extend_from_slice(&(!len).to_le_bytes());
            self.buf.extend_from_slice(block);
        }
        Ok(())
    }

    /// Ends the stream (final block, CRC-32 and size trailer) and returns the writer.
    pub fn finish(mut self) -> io::Result<W> {
        self.flush_deflate(FlushCompress::Finish)?;
        self.buf
            .extend_from_slice(&self.crc.clone().finalize().to_le_bytes());
        // ISIZE is the input size modulo 2^32.
        self.buf
            .extend_from_slice(&(self.input_bytes as u32).to_le_bytes());
        self.drain()?;
        self.out.flush()?;
        Ok(self.out)
    }

    /// Uncompressed bytes taken so far.
    pub fn input_bytes(&self) -> u64 {
        self.input_bytes
    }

    /// Runs the compressor with `flush` and no new input until it has emitted everything.
    fn flush_deflate(&mut self, flush: FlushCompress) -> io::Result<()> {
        loop {
            self.reserve()?;
            let status = self.deflate.compress_vec(&[], &mut self.buf, flush)?;
            let room_left = self.buf.len() < self.buf.capacity();
            match status {
                Status::StreamEnd => return Ok(()),
                // Room left over means the compressor had nothing more to say.
                Status::Ok | Status::BufError if room_left => return Ok(()),
                Status::Ok | Status::BufError => {}
            }
        }
    }

    /// Makes room in the staging buffer when it is nearly full.
    fn reserve(&mut self) -> io::Result<()> {
        if self.buf.capacity() - self.buf.len() < 64 {
            self.drain()?;
        }
        Ok(())
    }

    fn drain(&mut self) -> io::Result<()> {
        self.out.write_all(&self.buf)?;
        self.buf.clear();
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use flate2::read::GzDecoder;
    use std::io::Read;

    fn noise(len: usize, mut seed: u64) -> Vec<u8> {
        (0..len)
            .map(|_| {
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                seed as u8
            })
            .collect()
    }

    fn text(len: usize) -> Vec<u8> {
        let line = b"{\"level\":\"info\",\"msg\":\"request served\",\"status\":200,\"ms\":12}\n";
        line.iter().copied().cycle().take(len).collect()
    }

    #[test]
    fn mixed_compressed_and_stored_blocks_decode_to_the_input() {
        let parts: Vec<(bool, Vec<u8>)> = vec![
            (false, text(1000)),
            (true, noise(200_000, 1)),
            (false, text(300_000)),
            (true, noise(10, 2)),
            (true, noise(70_000, 3)),
            (false, Vec::new()),
            (false, text(5)),
            (true, noise(3_000_000, 4)),
        ];
        let mut gz = GzWriter::new(Vec::new(), 6);
        let mut expected = Vec::new();
        for (stored, data) in &parts {
            if *stored {
                gz.store(data).unwrap();
            } else {
                gz.compress(data).unwrap();
            }
            expected.extend_from_slice(data);
        }
        let bytes = gz.finish().unwrap();
        let mut decoded = Vec::new();
        GzDecoder::new(&bytes[..])
            .read_to_end(&mut decoded)
            .unwrap();
        assert!(decoded == expected, "decoded stream differs from the input");
        // Stored noise costs 5 bytes per 64 KiB block, not a deflate expansion.
        let noise_len = 200_000 + 10 + 70_000 + 3_000_000;
        assert!(
            bytes.len() < noise_len + noise_len / 1000 + 20_000,
            "{}",
            bytes.len()
        );
    }

    #[test]
    fn stored_only_and_empty_streams_are_valid() {
        for parts in [vec![], vec![noise(100, 5)]] {
            let mut gz = GzWriter::new(Vec::new(), 6);
            for p in &parts {
                gz.store(p).unwrap();
            }
            let bytes = gz.finish().unwrap();
            let mut decoded = Vec::new();
            GzDecoder::new(&bytes[..])
                .read_to_end(&mut decoded)
                .unwrap();
            assert_eq!(decoded, parts.concat());
        }
    }
}
