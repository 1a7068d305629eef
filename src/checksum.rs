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

/// How much is read, hashed and written at a time.
const CHUNK: usize = 4 << 20;

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

/// The checksum of the first `len` bytes of `file`, read with positioned
/// reads so that another thread may use the same descriptor meanwhile.
pub fn of_range(file: &File, len: u64, algorithm: Algorithm) -> std::io::Result<Checksum> {
    let mut h = Hasher::new(algorithm);
    let mut buf = vec![0u8; CHUNK];
    let mut offset = 0u64;
    while offset < len {
        let want = usize::try_from((len - offset).min(CHUNK as u64)).unwrap_or(CHUNK);
        file.read_exact_at(&mut buf[..want], offset)?;
        h.update(&buf[..want]);
        offset += want as u64;
        crate::progress::report("hashing", offset, Some(len));
    }
    Ok(h.finish())
}

/// A file's checksum and size.
pub fn of_file(path: &Path, algorithm: Algorithm) -> std::io::Result<(Checksum, u64)> {
    let f = File::open(path)?;
    let len = f.metadata()?.len();
    Ok((of_range(&f, len, algorithm)?, len))
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
/// computes their checksum in the same pass: this thread reads a chunk and
/// hashes it while a second writes the chunk before it. The checksum is of
/// exactly the bytes written, and the copy, not the hash, is the critical
/// path. The caller guarantees the source does not change meanwhile.
pub fn copy(
    src: &File,
    len: u64,
    out: &mut File,
    algorithm: Algorithm,
) -> Result<Checksum, CopyError> {
    use std::io::Write;
    use std::sync::mpsc;
    // Three buffers: one being read and hashed, one being written, one spare.
    let (full_tx, full_rx) = mpsc::sync_channel::<(Vec<u8>, usize)>(2);
    let (empty_tx, empty_rx) = mpsc::sync_channel::<Vec<u8>>(3);
    for _ in 0..3 {
        let _ = empty_tx.send(vec![0u8; CHUNK]);
    }
    std::thread::scope(|scope| {
        let writer = scope.spawn(move || -> std::io::Result<()> {
            for (buf, n) in full_rx {
                out.write_all(&buf[..n])?;
                if empty_tx.send(buf).is_err() {
                    break;
                }
            }
            Ok(())
        });
        let read = (|| -> Result<Checksum, CopyError> {
            let mut h = Hasher::new(algorithm);
            let mut offset = 0u64;
            while offset < len {
                // The writer gave up (its error is reported below).
                let Ok(mut buf) = empty_rx.recv() else { break };
                let want = usize::try_from((len - offset).min(CHUNK as u64)).unwrap_or(CHUNK);
                let mut n = 0;
                while n < want {
                    match src.read_at(&mut buf[n..want], offset + n as u64) {
                        Ok(0) => {
                            return Err(CopyError::Shrank {
                                expected: len,
                                found: offset + n as u64,
                            })
                        }
                        Ok(k) => n += k,
                        Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                        Err(e) => return Err(CopyError::Read(e)),
                    }
                }
                h.update(&buf[..n]);
                offset += n as u64;
                if full_tx.send((buf, n)).is_err() {
                    break;
                }
                crate::progress::report("copying and hashing", offset, Some(len));
            }
            drop(full_tx);
            Ok(h.finish())
        })();
        let written = writer
            .join()
            .unwrap_or_else(|_| Err(std::io::Error::other("the writing thread failed")));
        let checksum = read?;
        written.map_err(CopyError::Write)?;
        Ok(checksum)
    })
}
