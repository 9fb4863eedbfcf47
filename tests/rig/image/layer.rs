//! Layer blobs: a `tar.gz` holding one file of seeded random bytes, gzip
//! with stored blocks so the blob is about the requested size and cheap to
//! make, hashed (compressed and not) while written so a 1 GiB layer never
//! sits in memory.

use std::io::{self, BufWriter, Write};
use std::path::Path;

use aws_lc_rs::digest::{Context, SHA256};
use flate2::write::GzEncoder;
use flate2::Compression;
use rand::rngs::SmallRng;
use rand::{RngCore, SeedableRng};

use super::{blob_path, CHUNK, MTIME};

/// A layer blob and the digest of its uncompressed tar (the config's diff_id).
#[derive(Clone)]
pub(super) struct LayerBlob {
    pub(super) digest: String,
    pub(super) size: u64,
    pub(super) diff_id: String,
}

/// Counts and hashes what passes through.
struct HashWriter<W> {
    inner: W,
    ctx: Context,
    len: u64,
}

impl<W: Write> HashWriter<W> {
    fn new(inner: W) -> Self {
        HashWriter {
            inner,
            ctx: Context::new(&SHA256),
            len: 0,
        }
    }

    fn finish(self) -> (W, String, u64) {
        let d = format!("sha256:{}", hex::encode(self.ctx.finish().as_ref()));
        (self.inner, d, self.len)
    }
}

impl<W: Write> Write for HashWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.ctx.update(&buf[..n]);
        self.len += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// Writes a tar.gz holding one file of seeded random bytes, sized so the blob
/// is close to `target` bytes.
pub(super) fn write_layer(dir: &Path, target: u64, seed: u64) -> io::Result<LayerBlob> {
    // flate2's stored deflate blocks cost 5 bytes per 32 KiB (measured); tar
    // adds a 512-byte header, padding and a 1 KiB end marker; gzip 18 bytes.
    let overhead = 512 + 1024 + 18 + 5 + target / 32_768 * 5;
    let file_len = target.saturating_sub(overhead);

    let tmp = tempfile::NamedTempFile::new_in(dir.join("blobs/sha256"))?;
    // Like the other blobs, not the temp file's 0600.
    tmp.as_file()
        .set_permissions(std::os::unix::fs::PermissionsExt::from_mode(0o644))?;
    let file = BufWriter::with_capacity(4 * CHUNK, tmp.as_file().try_clone()?);
    let gz = GzEncoder::new(HashWriter::new(file), Compression::none());
    let mut tar = HashWriter::new(gz);

    let mut header = tar::Header::new_ustar();
    header.set_path(format!("rig/{seed:016x}.bin"))?;
    header.set_size(file_len);
    header.set_mode(0o644);
    header.set_mtime(MTIME);
    header.set_uid(0);
    header.set_gid(0);
    header.set_entry_type(tar::EntryType::Regular);
    header.set_cksum();
    tar.write_all(header.as_bytes())?;

    let mut rng = SmallRng::seed_from_u64(seed);
    let mut buf = vec![0u8; CHUNK];
    let mut left = file_len;
    while left > 0 {
        let n = left.min(CHUNK as u64) as usize;
        rng.fill_bytes(&mut buf[..n]);
        tar.write_all(&buf[..n])?;
        left -= n as u64;
    }
    // Pad the file to a 512-byte record, then two zero records end the archive.
    let pad = (512 - file_len % 512) % 512;
    tar.write_all(&vec![0u8; pad as usize + 1024])?;

    let (gz, diff_id, _) = tar.finish();
    let (file, digest, size) = gz.finish()?.finish();
    // No fsync: layouts are scratch data and syncing 300 MB costs seconds.
    file.into_inner().map_err(|e| e.into_error())?;
    tmp.persist(blob_path(dir, &digest)).map_err(|e| e.error)?;
    Ok(LayerBlob {
        digest,
        size,
        diff_id,
    })
}
