//! The checksum a backup's manifest records, and the copy that computes it.
//! New backups use BLAKE3: with SIMD it hashes faster than the disk writes,
//! so computed in the same pass that copies the bytes it costs the copy
//! nothing. Backups made before it carry SHA-256, and still verify: a
//! manifest names its algorithm by the key its checksum is under.

use std::fmt;
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::Path;

use sha2::Digest;

use crate::mapped::Mapped;

/// How much the kernel copies at a time, and the hashing thread is told of.
const CHUNK: usize = 4 << 20;

/// How much is read at a time to be hashed where a file cannot be mapped:
/// small enough for the buffer to stay in the CPU's cache between the read
/// and the hash (measured here: reading a cached 1.3 GB file through 128 KiB
/// took 0.15 s of CPU, through 256 KiB or more 0.8 s).
const READ: usize = 128 << 10;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Algorithm {
    Blake3,
    Sha256,
}

impl Algorithm {
    pub fn name(self) -> &'static str {
        match self {
            Algorithm::Blake3 => "blake3",
            Algorithm::Sha256 => "sha256",
        }
    }
}

/// A file's checksum; shown as `blake3:<hex>`, as the algorithm decides
/// how the hex is to be checked.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Checksum {
    pub algorithm: Algorithm,
    pub hex: String,
}

impl fmt::Display for Checksum {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.algorithm.name(), self.hex)
    }
}

enum State {
    Blake3(Box<blake3::Hasher>),
    Sha256(sha2::Sha256),
}

pub struct Hasher(State);

impl Hasher {
    pub fn new(algorithm: Algorithm) -> Hasher {
        Hasher(match algorithm {
            Algorithm::Blake3 => State::Blake3(Box::default()),
            Algorithm::Sha256 => State::Sha256(sha2::Sha256::new()),
        })
    }

    pub fn update(&mut self, bytes: &[u8]) {
        match &mut self.0 {
            State::Blake3(h) => {
                h.update(bytes);
            }
            State::Sha256(h) => h.update(bytes),
        }
    }

    pub fn finish(self) -> Checksum {
        match self.0 {
            State::Blake3(h) => Checksum {
                algorithm: Algorithm::Blake3,
                hex: h.finalize().to_hex().to_string(),
            },
            State::Sha256(h) => Checksum {
                algorithm: Algorithm::Sha256,
                hex: h.finalize().iter().map(|b| format!("{b:02x}")).collect(),
            },
        }
    }
}

/// Where the hash reads a file from: a window of it mapped ([`Mapped`]: no
/// copy of the bytes into this process), or, where it cannot be mapped,
/// positioned reads into a buffer, so that another thread may use the
/// descriptor meanwhile.
struct Source<'a> {
    file: &'a File,
    path: &'a Path,
    buf: Vec<u8>,
}

impl<'a> Source<'a> {
    fn new(file: &'a File, path: &'a Path) -> Source<'a> {
        Source {
            file,
            path,
            buf: Vec::new(),
        }
    }

    /// Hashes `len` bytes from `offset`.
    fn hash(&mut self, h: &mut Hasher, offset: u64, len: usize) -> std::io::Result<()> {
        if len == 0 {
            return Ok(());
        }
        if let Some(m) = Mapped::of(self.file, offset, len, self.path) {
            h.update(m.bytes());
            return Ok(());
        }
        self.buf.resize(READ, 0);
        let mut done = 0;
        while done < len {
            let n = (len - done).min(READ);
            self.file
                .read_exact_at(&mut self.buf[..n], offset + done as u64)?;
            h.update(&self.buf[..n]);
            done += n;
        }
        Ok(())
    }
}

/// The checksum of the first `len` bytes of `file` (named `path`).
pub fn of_range(
    file: &File,
    len: u64,
    path: &Path,
    algorithm: Algorithm,
) -> std::io::Result<Checksum> {
    let mut h = Hasher::new(algorithm);
    let mut source = Source::new(file, path);
    let mut offset = 0u64;
    while offset < len {
        let want = usize::try_from((len - offset).min(CHUNK as u64)).unwrap_or(CHUNK);
        source.hash(&mut h, offset, want)?;
        offset += want as u64;
        crate::progress::report("hashing", offset, Some(len));
    }
    Ok(h.finish())
}

/// A file's checksum and size.
pub fn of_file(path: &Path, algorithm: Algorithm) -> std::io::Result<(Checksum, u64)> {
    let f = File::open(path)?;
    let len = f.metadata()?.len();
    Ok((of_range(&f, len, path, algorithm)?, len))
}

/// What went wrong in [`copy`]: on which side.
#[derive(Debug)]
pub enum CopyError {
    Read(std::io::Error),
    Write(std::io::Error),
    /// The source ended before the length it had when the copy began.
    Shrank {
        expected: u64,
        found: u64,
    },
}

/// Copies the first `len` bytes of `src` into `out` (from its start) and
/// computes their checksum in the same pass: the kernel copies a chunk
/// (`copy_file_range`, as `cp` does: no copy through this process) while a
/// second thread hashes the chunk before it, read back from the page cache
/// the copy has just filled. The copy, not the hash, is the critical path.
/// The caller guarantees the source does not change meanwhile.
pub fn copy(
    src: &File,
    len: u64,
    src_path: &Path,
    out: &mut File,
    algorithm: Algorithm,
) -> Result<Checksum, CopyError> {
    use std::sync::mpsc;
    let (tx, rx) = mpsc::sync_channel::<(u64, usize)>(4);
    std::thread::scope(|scope| {
        let hasher = scope.spawn(move || -> std::io::Result<Checksum> {
            let mut h = Hasher::new(algorithm);
            let mut source = Source::new(src, src_path);
            for (offset, n) in rx {
                source.hash(&mut h, offset, n)?;
            }
            Ok(h.finish())
        });
        let copied = (|| -> Result<(), CopyError> {
            let mut offset = 0u64;
            while offset < len {
                let want = usize::try_from((len - offset).min(CHUNK as u64)).unwrap_or(CHUNK);
                let n = copy_chunk(src, out, offset, want)?;
                if n == 0 {
                    return Err(CopyError::Shrank {
                        expected: len,
                        found: offset,
                    });
                }
                if tx.send((offset, n)).is_err() {
                    // The hasher failed: its error is the one reported.
                    break;
                }
                offset += n as u64;
                crate::progress::report("copying and hashing", offset, Some(len));
            }
            Ok(())
        })();
        drop(tx);
        let hashed = hasher
            .join()
            .unwrap_or_else(|_| Err(std::io::Error::other("the hashing thread failed")));
        copied?;
        hashed.map_err(CopyError::Read)
    })
}

/// Up to `want` bytes at `offset` of `src` to the same offset of `out`:
/// in the kernel where the filesystems allow it, else through a buffer.
fn copy_chunk(src: &File, out: &File, offset: u64, want: usize) -> Result<usize, CopyError> {
    use std::os::fd::AsRawFd;
    let start = libc::loff_t::try_from(offset).unwrap_or(libc::loff_t::MAX);
    let (mut off_in, mut off_out) = (start, start);
    loop {
        // SAFETY: both descriptors are open for the duration of the call,
        // and the offsets are ours; the kernel copies between the files only.
        let n = unsafe {
            libc::copy_file_range(
                src.as_raw_fd(),
                &mut off_in,
                out.as_raw_fd(),
                &mut off_out,
                want,
                0,
            )
        };
        if n >= 0 {
            return Ok(n as usize);
        }
        let e = std::io::Error::last_os_error();
        match e.raw_os_error() {
            Some(libc::EINTR) => continue,
            // Not between these files: through a buffer instead.
            Some(libc::EXDEV | libc::ENOSYS | libc::EINVAL | libc::EOPNOTSUPP) => break,
            // A source read fails as EIO; the rest are the destination's.
            Some(libc::EIO) => return Err(CopyError::Read(e)),
            _ => return Err(CopyError::Write(e)),
        }
    }
    let mut buf = vec![0u8; want.min(READ)];
    let n = loop {
        match src.read_at(&mut buf, offset) {
            Ok(n) => break n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(CopyError::Read(e)),
        }
    };
    out.write_all_at(&buf[..n], offset)
        .map_err(CopyError::Write)?;
    Ok(n)
}
