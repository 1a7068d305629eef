//! Backups of a live SQLite database, made so that none is ever half
//! written, overwritten or trusted without checking: a consistent snapshot
//! copied to a temporary file, forced to disk and renamed into place under a
//! name that cannot collide, with a manifest (checksum and fingerprint)
//! beside it. Also the application's own backups, which have no manifest,
//! when the caller names their prefix (`PREFIX` + `YYYYMMDD-HHMMSS.db`),
//! and the restore, which swaps a backup in under the same SQLite lock as
//! it keeps the state before, so that no committed write is lost between
//! the two. Used by the `backup.*` actions and the `runbook backup`
//! commands alike.

use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

use rusqlite::Connection;
use serde::{Deserialize, Serialize};

use crate::checksum::{self, Algorithm, Checksum};
use crate::database::{self, Counting, Fingerprint};

/// 2: the checksum is BLAKE3 (`blake3`), and a verification is recorded.
pub const MANIFEST_FORMAT: u32 = 2;
const PREFIX: &str = "runbook-";

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Database(#[from] database::Error),
    #[error("{what} {}: {source}{}", path.display(), full_disk_hint(source))]
    Io {
        what: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{} does not match its manifest: {actual}, the manifest says {expected}{}", path.display(), if *pending_swap { "; it was made for a restore stopped before its swap, and holds the backup that was being restored, not the database's state before (the database was not replaced): delete it" } else { "" })]
    Checksum {
        path: PathBuf,
        expected: Checksum,
        actual: Checksum,
        /// A pre-restore backup named before the exchange that did not happen.
        pending_swap: bool,
    },
    #[error("{} has a manifest that cannot be read: {detail}", path.display())]
    Manifest { path: PathBuf, detail: String },
    #[error("the copy about to be restored does not hold what the backup holds: {detail}")]
    Mismatch { detail: String },
    #[error("{0}")]
    Refused(String),
}

/// What to do when the disk is full or a file-size limit stops a write.
fn full_disk_hint(e: &std::io::Error) -> &'static str {
    match e.raw_os_error() {
        Some(libc::ENOSPC | libc::EFBIG | libc::EDQUOT) => {
            " (the disk is full or a file-size limit applies: free space, or choose another directory; nothing was left half-written)"
        }
        _ => "",
    }
}

fn io<'a>(what: &'static str, path: &'a Path) -> impl FnOnce(std::io::Error) -> Error + 'a {
    move |source| Error::Io {
        what,
        path: path.to_path_buf(),
        source,
    }
}

/// What is known about a backup, stored beside it as `<backup>.json`.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Manifest {
    pub format: u32,
    pub file: String,
    /// The checksum, under its algorithm's name: `blake3` since format 2,
    /// `sha256` before. `b3sum --check` reads the former.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub blake3: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sha256: Option<String>,
    pub size: u64,
    pub created_at: String,
    /// The database it was made from; empty for an application's own
    /// backup, whose manifest `backup verify` wrote.
    #[serde(default)]
    pub source: String,
    #[serde(default)]
    pub sqlite_version: String,
    /// Why it was made: `pre-restore`, `emergency`, or the caller's word.
    pub label: Option<String>,
    pub fingerprint: Fingerprint,
    /// What the fingerprint counted and read: the terms it is in.
    #[serde(default)]
    pub counting: Counting,
    /// A byte-for-byte copy of a file SQLite could not read (damaged, or
    /// not a database): kept for analysis, never chosen for a restore. Its
    /// `-wal`/`-journal` files, if any, are beside it under its name.
    #[serde(default)]
    pub raw: bool,
    /// Why it is raw.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unreadable: Option<String>,
    /// The last full check of its content, which a restore trusts once the
    /// checksum it computes while copying matches.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verified: Option<Verification>,
    /// A pre-restore backup named before its exchange with the live file:
    /// until the exchange it holds the restored copy, and does not match.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub pending_swap: bool,
}

/// A passed `integrity_check`, and the checksum of the bytes it read.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Verification {
    pub at: String,
    pub integrity_check: String,
    /// `blake3:<hex>`: a restore trusts the check only for these bytes.
    pub checksum: String,
    pub size: u64,
    pub sqlite_version: String,
}

impl Manifest {
    /// The checksum the manifest records, in its algorithm.
    pub fn checksum(&self) -> Option<Checksum> {
        let of = |algorithm, hex: &Option<String>| {
            hex.as_ref().map(|hex| Checksum {
                algorithm,
                hex: hex.clone(),
            })
        };
        of(Algorithm::Blake3, &self.blake3).or_else(|| of(Algorithm::Sha256, &self.sha256))
    }

    fn set_checksum(&mut self, c: &Checksum) {
        match c.algorithm {
            Algorithm::Blake3 => self.blake3 = Some(c.hex.clone()),
            Algorithm::Sha256 => self.sha256 = Some(c.hex.clone()),
        }
    }

    /// The recorded check, if it was of the bytes the checksum is of and
    /// the file still has the size it had then.
    pub fn trusted_check(&self, size: u64) -> Option<&Verification> {
        let sum = self.checksum()?.to_string();
        self.verified
            .as_ref()
            .filter(|v| v.integrity_check == "ok" && v.checksum == sum && v.size == size)
            .filter(|_| self.size == size && !self.raw && !self.pending_swap)
    }
}

/// A backup found in a directory; [`Entry::to_json`] is how it is shown.
#[derive(Clone, Debug)]
pub struct Entry {
    pub path: PathBuf,
    /// `runbook`, or `legacy` for the application's own `PREFIX` + `YYYYMMDD-HHMMSS.db`.
    pub kind: &'static str,
    pub created_at: String,
    pub size: u64,
    pub label: Option<String>,
    pub checksum: Option<Checksum>,
    /// When its content was last fully checked (`backup verify`).
    pub verified_at: Option<String>,
    /// What it holds, or why that could not be read.
    pub fingerprint: Result<Fingerprint, String>,
}

impl Entry {
    /// As `backup.list` gives it and `runbook backup list --json` prints
    /// it: the fingerprint, or `null` and the `error` that kept it unread.
    pub fn to_json(&self) -> serde_json::Value {
        let mut o = serde_json::Map::new();
        o.insert("path".into(), self.path.display().to_string().into());
        o.insert("kind".into(), self.kind.into());
        o.insert("created_at".into(), self.created_at.clone().into());
        o.insert("size".into(), self.size.into());
        o.insert("label".into(), self.label.clone().into());
        o.insert(
            "checksum".into(),
            self.checksum.as_ref().map(Checksum::to_string).into(),
        );
        o.insert("verified_at".into(), self.verified_at.clone().into());
        match &self.fingerprint {
            Ok(fp) => {
                o.insert(
                    "fingerprint".into(),
                    serde_json::to_value(fp).unwrap_or_default(),
                );
            }
            Err(why) => {
                o.insert("fingerprint".into(), serde_json::Value::Null);
                o.insert("error".into(), why.clone().into());
            }
        }
        serde_json::Value::Object(o)
    }
}

pub fn manifest_path(backup: &Path) -> PathBuf {
    database::sidecar(backup, ".json")
}

/// A copy of a database in a temporary file, forced to disk, not yet named.
struct Snapshot {
    tmp: tempfile::NamedTempFile,
    checksum: Checksum,
    size: u64,
    fingerprint: Fingerprint,
    /// What the fingerprint counted.
    counting: Counting,
    /// Why SQLite could not read the source: the copy is of its raw bytes.
    unreadable: Option<String>,
}

/// Makes a backup of `db` in `dir`; returns its path and manifest.
pub fn create(
    db: &Path,
    dir: &Path,
    label: Option<&str>,
    counting: &Counting,
) -> Result<(PathBuf, Manifest), Error> {
    std::fs::create_dir_all(dir).map_err(io("creating the backup directory", dir))?;
    // A database SQLite cannot read is exactly the one to keep a copy of
    // before replacing it: then the copy is of its bytes, as they are.
    let snapshot = match snapshot_in(db, dir, counting) {
        Ok((tmp, checksum, size, fingerprint)) => Snapshot {
            tmp,
            checksum,
            size,
            fingerprint,
            counting: counting.clone(),
            unreadable: None,
        },
        Err(e) if unreadable(&e) => {
            let (tmp, checksum, size) = raw_copy(db, dir)?;
            Snapshot {
                tmp,
                checksum,
                size,
                fingerprint: Fingerprint::default(),
                counting: counting.clone(),
                unreadable: Some(e.to_string()),
            }
        }
        Err(e) => return Err(e),
    };
    store(db, dir, label, snapshot)
}

/// Names a snapshot in `dir` as a backup, with its manifest: both or
/// neither. The manifest is written to its own temporary file before the
/// backup is named, so a full disk stops it there; if it still cannot be
/// named, the backup is removed again. Nothing that looks like a backup is
/// ever left without its manifest.
fn store(
    db: &Path,
    dir: &Path,
    label: Option<&str>,
    snapshot: Snapshot,
) -> Result<(PathBuf, Manifest), Error> {
    let Snapshot {
        mut tmp,
        checksum,
        size,
        fingerprint,
        counting,
        unreadable,
    } = snapshot;
    let raw = unreadable.is_some();
    let label_raw = if raw { "-raw" } else { "" };
    let created_at = crate::event::now();
    let stamp: String = created_at
        .chars()
        .filter(|c| *c != '-' && *c != ':')
        .collect();
    let suffix = label
        .map(|l| format!("-{}", sanitize(l)))
        .unwrap_or_default();
    let mut manifest = Manifest {
        raw,
        unreadable,
        format: MANIFEST_FORMAT,
        file: String::new(),
        blake3: None,
        sha256: None,
        size,
        created_at,
        source: std::fs::canonicalize(db)
            .unwrap_or_else(|_| db.to_path_buf())
            .display()
            .to_string(),
        sqlite_version: rusqlite::version().to_owned(),
        label: label.map(str::to_owned),
        fingerprint,
        counting,
        verified: None,
        pending_swap: false,
    };
    manifest.set_checksum(&checksum);
    let mut pending = temporary_in(dir, ".runbook-")?;
    let mut n = 1;
    let path = loop {
        let name = if n == 1 {
            format!("{PREFIX}{stamp}{suffix}{label_raw}.db")
        } else {
            format!("{PREFIX}{stamp}{suffix}{label_raw}-{n}.db")
        };
        let candidate = dir.join(&name);
        manifest.file = name;
        rewrite(&mut pending, &manifest, &candidate)?;
        // persist_noclobber fails rather than replace: a backup is never overwritten.
        match tmp.persist_noclobber(&candidate) {
            Ok(_) => break candidate,
            Err(e) if e.error.kind() == std::io::ErrorKind::AlreadyExists && n < 100 => {
                tmp = e.file;
                n += 1;
            }
            Err(e) => return Err(io("naming the backup", &candidate)(e.error)),
        }
    };
    let named = keep_raw_sidecars(db, &path, raw).and_then(|()| {
        let manifest_path = manifest_path(&path);
        pending
            .persist_noclobber(&manifest_path)
            .map(drop)
            .map_err(|e| io("naming the manifest", &manifest_path)(e.error))
    });
    if let Err(e) = named {
        discard(&path);
        return Err(e);
    }
    sync_dir(dir)?;
    Ok((path, manifest))
}

/// Writes the manifest of the backup `path` will be into `pending`, from
/// its start, and forces it to disk.
fn rewrite(
    pending: &mut tempfile::NamedTempFile,
    manifest: &Manifest,
    path: &Path,
) -> Result<(), Error> {
    use std::io::Seek;
    let json = serde_json::to_vec_pretty(manifest).map_err(|e| Error::Manifest {
        path: path.to_path_buf(),
        detail: e.to_string(),
    })?;
    let at = manifest_path(path);
    let file = pending.as_file_mut();
    file.set_len(0)
        .and_then(|()| file.rewind())
        .and_then(|()| file.write_all(&json))
        .and_then(|()| crate::shadow::sync(file, &at))
        .map_err(io("writing", &at))
}

/// A raw backup keeps the unreadable file's `-wal`/`-journal` beside it,
/// under its own name: they may be what makes sense of it.
fn keep_raw_sidecars(db: &Path, backup: &Path, raw: bool) -> Result<(), Error> {
    if !raw {
        return Ok(());
    }
    for side in ["-wal", "-journal"] {
        let from = database::sidecar(db, side);
        if from.exists() {
            let to = database::sidecar(backup, side);
            std::fs::copy(&from, &to).map_err(io("copying", &from))?;
            File::open(&to)
                .and_then(|f| crate::shadow::sync(&f, &to))
                .map_err(io("syncing", &to))?;
        }
    }
    Ok(())
}

/// Removes a backup that could not be completed, with whatever was already
/// beside it; best effort, as the error that led here is the one to report.
fn discard(backup: &Path) {
    for side in ["", "-wal", "-journal", ".json"] {
        let _ = std::fs::remove_file(database::sidecar(backup, side));
    }
    if let Some(dir) = backup.parent() {
        let _ = sync_dir(dir);
    }
}

/// Errors that mean SQLite cannot read the file at all, as opposed to it
/// being busy or the disk failing.
fn unreadable(e: &Error) -> bool {
    match e {
        Error::Database(database::Error::NotSqlite { .. } | database::Error::Corrupt { .. }) => {
            true
        }
        Error::Database(database::Error::Sqlite { source, .. }) => matches!(
            source.sqlite_error_code(),
            Some(rusqlite::ErrorCode::NotADatabase | rusqlite::ErrorCode::DatabaseCorrupt)
        ),
        _ => false,
    }
}

/// The file's bytes, as they are, into a new temporary file in `dir`.
fn raw_copy(db: &Path, dir: &Path) -> Result<(tempfile::NamedTempFile, Checksum, u64), Error> {
    let mut tmp = temporary_in(dir, ".runbook-backup-")?;
    let src = File::open(db).map_err(io("opening", db))?;
    let (sha, size, ()) = copy_hashing(&src, tmp.as_file_mut(), db, dir, || Ok(()))?;
    Ok((tmp, sha, size))
}

/// A consistent copy of `db` at exactly `dest` (which must not exist), with
/// no manifest: the scratch copies a rehearsal runs on.
pub fn snapshot(db: &Path, dest: &Path) -> Result<(), Error> {
    let dir = dest
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or_else(|| Path::new("."));
    std::fs::create_dir_all(dir).map_err(io("creating", dir))?;
    let (tmp, ..) = snapshot_in(db, dir, &Counting::default())?;
    tmp.persist_noclobber(dest)
        .map_err(|e| io("writing", dest)(e.error))?;
    sync_dir(dir)
}

/// Copies a consistent snapshot of `db` into a new temporary file in `dir`,
/// forced to disk; returns it with its checksum, size and fingerprint.
fn snapshot_in(
    db: &Path,
    dir: &Path,
    counting: &Counting,
) -> Result<(tempfile::NamedTempFile, Checksum, u64, Fingerprint), Error> {
    database::check_header(db)?;
    let mut tmp = temporary_in(dir, ".runbook-backup-")?;
    let tmp_path = tmp.path().to_path_buf();
    let (sum, size, fingerprint) = if database::is_wal(db) {
        snapshot_wal(db, &tmp_path)?;
        crate::shadow::sync(tmp.as_file(), &tmp_path).map_err(io("syncing", &tmp_path))?;
        let (sum, size) = hash_file(&tmp_path, Algorithm::Blake3)?;
        let conn = database::open_immutable(&tmp_path)?;
        (
            sum,
            size,
            database::fingerprint_on(&conn, &tmp_path, counting)?,
        )
    } else {
        // Errors name the directory: the temporary file is ours, not the operator's.
        copy_under_read_lock(db, tmp.as_file_mut(), dir, counting)?
    };
    Ok((tmp, sum, size, fingerprint))
}

/// Rollback-journal mode: while a read transaction holds SQLite's SHARED
/// lock no writer can change the file, so a plain copy is a consistent
/// snapshot. The copy computes its checksum as it goes; the fingerprint is
/// read in the same transaction, so of the same moment.
fn copy_under_read_lock(
    db: &Path,
    out: &mut File,
    out_path: &Path,
    counting: &Counting,
) -> Result<(Checksum, u64, Fingerprint), Error> {
    // Opened before the read transaction and closed after it: closing any
    // descriptor of the file drops this process's POSIX locks on it,
    // SQLite's included.
    let src = File::open(db).map_err(io("opening", db))?;
    let conn = open_live(db)?;
    conn.execute_batch("BEGIN; SELECT count(*) FROM sqlite_master;")
        .map_err(|e| sqlite_error(db, e))?;
    let copied = copy_hashing(&src, out, db, out_path, || {
        Ok(database::fingerprint_on(&conn, db, counting)?)
    });
    let _ = conn.execute_batch("COMMIT");
    drop(src);
    drop(conn);
    copied
}

/// Copies `src` into `out` and forces it to disk, computing a BLAKE3
/// checksum in the same pass ([`checksum::copy`]), on a thread of its own;
/// `meanwhile` runs on this one (the fingerprint: SQLite reading the source
/// while the kernel copies it). The caller guarantees the source does not
/// change meanwhile.
fn copy_hashing<T>(
    src: &File,
    out: &mut File,
    src_path: &Path,
    out_path: &Path,
    meanwhile: impl FnOnce() -> Result<T, Error>,
) -> Result<(Checksum, u64, T), Error> {
    let silent = crate::progress::is_silent();
    std::thread::scope(|scope| {
        let copy = scope.spawn(|| {
            crate::progress::silently(silent, || {
                let copied = copy_checked(src, out, src_path, out_path, Algorithm::Blake3)?;
                crate::shadow::sync(out, out_path).map_err(io("syncing", out_path))?;
                Ok(copied)
            })
        });
        let other = meanwhile();
        let (sum, len) = joined(copy)?;
        Ok((sum, len, other?))
    })
}

/// [`checksum::copy`] of the whole of `src`, its errors named by file.
fn copy_checked(
    src: &File,
    out: &mut File,
    src_path: &Path,
    out_path: &Path,
    algorithm: Algorithm,
) -> Result<(Checksum, u64), Error> {
    let len = src.metadata().map_err(io("reading", src_path))?.len();
    let sum = checksum::copy(src, len, src_path, out, algorithm).map_err(|e| match e {
        checksum::CopyError::Read(e) => io("reading", src_path)(e),
        checksum::CopyError::Write(e) => io("copying into", out_path)(e),
        checksum::CopyError::Shrank { expected, found } => Error::Refused(format!(
            "{} changed size while it was copied ({expected} bytes, then {found})",
            src_path.display()
        )),
    })?;
    // Grown meanwhile: the copy would be of a moment that never was.
    let now = src.metadata().map_err(io("reading", src_path))?.len();
    if now != len {
        return Err(Error::Refused(format!(
            "{} changed size while it was copied ({len} bytes, then {now})",
            src_path.display()
        )));
    }
    Ok((sum, len))
}

/// The live database, to read from or settle: read-write, and patient
/// with another connection's lock for a while.
fn open_live(db: &Path) -> Result<Connection, Error> {
    let conn = database::open_read_write(db)?;
    conn.busy_timeout(Duration::from_secs(10))
        .map_err(|e| sqlite_error(db, e))?;
    Ok(conn)
}

/// WAL mode: committed pages may still be only in the `-wal` file, and a
/// checkpoint may rewrite the main file while it is being copied, so a
/// file copy is not safe. SQLite's online backup, in one step, copies a
/// consistent snapshot of everything committed. The copy is switched to
/// rollback-journal mode, so it is one self-contained file.
fn snapshot_wal(db: &Path, out: &Path) -> Result<(), Error> {
    let src = open_live(db)?;
    let mut dst = Connection::open(out).map_err(|e| sqlite_error(out, e))?;
    database::unsynced_if_scratch(&dst, out);
    {
        use rusqlite::backup::StepResult;
        let backup =
            rusqlite::backup::Backup::new(&src, &mut dst).map_err(|e| sqlite_error(db, e))?;
        // All pages in one step: one read transaction, so one consistent moment.
        let started = std::time::Instant::now();
        loop {
            match backup.step(-1).map_err(|e| sqlite_error(db, e))? {
                StepResult::Done => break,
                _ if started.elapsed() > Duration::from_secs(30) => {
                    return Err(Error::Refused(format!(
                        "{} stayed busy for 30s; no backup was made",
                        db.display()
                    )));
                }
                _ => std::thread::sleep(Duration::from_millis(50)),
            }
        }
    }
    leave_wal(&dst, out)?;
    dst.close().map_err(|(_, e)| sqlite_error(out, e))?;
    Ok(())
}

fn hash_file(path: &Path, algorithm: Algorithm) -> Result<(Checksum, u64), Error> {
    checksum::of_file(path, algorithm).map_err(io("reading", path))
}

/// A new file in `dir` that nothing reads under its name, and that goes away
/// if it is not renamed into place.
fn temporary_in(dir: &Path, prefix: &str) -> Result<tempfile::NamedTempFile, Error> {
    tempfile::Builder::new()
        .prefix(prefix)
        .suffix(".tmp")
        .tempfile_in(dir)
        .map_err(io("creating a temporary file in", dir))
}

fn sqlite_error(path: &Path, source: rusqlite::Error) -> Error {
    Error::Database(database::Error::Sqlite {
        path: path.to_path_buf(),
        source,
    })
}

fn sanitize(s: &str) -> String {
    s.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '-'
            }
        })
        .collect()
}

/// Makes a rename durable: the directory entry itself must reach the disk.
fn sync_dir(dir: &Path) -> Result<(), Error> {
    let dir = if dir.as_os_str().is_empty() {
        Path::new(".")
    } else {
        dir
    };
    File::open(dir)
        .and_then(|d| crate::shadow::sync(&d, dir))
        .map_err(io("syncing the directory", dir))
}

pub fn read_manifest(backup: &Path) -> Result<Option<Manifest>, Error> {
    let path = manifest_path(backup);
    match std::fs::read(&path) {
        Ok(bytes) => serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|e| Error::Manifest {
                path: backup.to_path_buf(),
                detail: e.to_string(),
            }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(io("reading", &path)(e)),
    }
}

/// The backups in `dir`, newest first: runbook's, and the application's
/// own if `app_prefix` names them. Each with a manifest is described in the
/// terms it was made with; the others are fingerprinted per `counting`.
pub fn list(
    dir: &Path,
    counting: &Counting,
    app_prefix: Option<&str>,
) -> Result<Vec<Entry>, Error> {
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(io("listing", dir)(e)),
    };
    let mut out = Vec::new();
    for entry in entries.filter_map(Result::ok) {
        let path = entry.path();
        let Some(name) = path.file_name().and_then(|n| n.to_str()).map(str::to_owned) else {
            continue;
        };
        if !name.ends_with(".db") {
            continue;
        }
        let size = entry.metadata().map(|m| m.len()).unwrap_or(0);
        if name.starts_with(PREFIX) {
            let (created_at, label, fingerprint, manifest) = match read_manifest(&path) {
                Ok(Some(m)) => {
                    let fingerprint = if m.raw {
                        Err(format!(
                            "a raw copy of a database SQLite could not read ({})",
                            m.unreadable.as_deref().unwrap_or("no reason recorded")
                        ))
                    } else {
                        Ok(m.fingerprint.clone())
                    };
                    (m.created_at.clone(), m.label.clone(), fingerprint, Some(m))
                }
                Ok(None) => (modified(&path), None, fingerprint_of(&path, counting), None),
                Err(e) => (modified(&path), None, Err(e.to_string()), None),
            };
            out.push(Entry {
                path,
                kind: "runbook",
                created_at,
                size,
                label,
                checksum: manifest.as_ref().and_then(Manifest::checksum),
                verified_at: verified_at(manifest.as_ref(), size),
                fingerprint,
            });
        } else if let Some(created_at) = app_prefix.and_then(|p| legacy_time(&name, p)) {
            // Its manifest, if any, is the one `backup verify` wrote.
            let manifest = read_manifest(&path).ok().flatten();
            let fingerprint = fingerprint_of(&path, counting);
            out.push(Entry {
                path,
                kind: "legacy",
                created_at,
                size,
                label: None,
                checksum: manifest.as_ref().and_then(Manifest::checksum),
                verified_at: verified_at(manifest.as_ref(), size),
                fingerprint,
            });
        }
    }
    out.sort_by(|a, b| {
        b.created_at
            .cmp(&a.created_at)
            .then_with(|| b.path.cmp(&a.path))
    });
    Ok(out)
}

fn verified_at(manifest: Option<&Manifest>, size: u64) -> Option<String> {
    manifest
        .and_then(|m| m.trusted_check(size))
        .map(|v| v.at.clone())
}

fn fingerprint_of(path: &Path, counting: &Counting) -> Result<Fingerprint, String> {
    database::open_immutable(path)
        .and_then(|c| database::fingerprint_on(&c, path, counting))
        .map_err(|e| e.to_string())
}

fn modified(path: &Path) -> String {
    std::fs::metadata(path)
        .and_then(|m| m.modified())
        .map(|t| {
            let t = time::OffsetDateTime::from(t);
            t.format(&time::format_description::well_known::Rfc3339)
                .unwrap_or_default()
        })
        .unwrap_or_default()
}

/// `PREFIX20240102-030405.db` → `2024-01-02T03:04:05Z`. An application
/// names its backups in its own local time; we cannot know its zone, and
/// read it as UTC.
fn legacy_time(name: &str, prefix: &str) -> Option<String> {
    let stamp = name.strip_prefix(prefix)?.strip_suffix(".db")?;
    let (date, clock) = stamp.split_once('-')?;
    if date.len() != 8
        || clock.len() != 6
        || !date
            .chars()
            .chain(clock.chars())
            .all(|c| c.is_ascii_digit())
    {
        return None;
    }
    Some(format!(
        "{}-{}-{}T{}:{}:{}Z",
        &date[..4],
        &date[4..6],
        &date[6..],
        &clock[..2],
        &clock[2..4],
        &clock[4..]
    ))
}

/// What verification found.
#[derive(Clone, Debug, Serialize)]
pub struct Verified {
    pub checksum: Checksum,
    /// Whether a manifest was there to compare the checksum with.
    pub manifest: bool,
    pub fingerprint: Fingerprint,
    /// When `integrity_check` passed on these bytes.
    pub checked_at: String,
    /// `false`: the check is the one the manifest records, trusted for
    /// bytes whose checksum is still to be compared (a restore compares it
    /// in its copy pass).
    pub checked_now: bool,
    /// Why the check could not be recorded in the manifest (it still passed).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub unrecorded: Option<String>,
}

impl Serialize for Checksum {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

/// `integrity_check` on the backup, and its checksum against its manifest;
/// the result is recorded in the manifest (written, for a backup that had
/// none), so that a restore need not check the content again.
pub fn verify(backup: &Path, counting: &Counting) -> Result<Verified, Error> {
    let manifest = read_manifest(backup)?;
    let algorithm = manifest
        .as_ref()
        .and_then(Manifest::checksum)
        .map_or(Algorithm::Blake3, |c| c.algorithm);
    let before = stamp(backup)?;
    // Each reads the whole file and is bound by the CPU, so they run side by side.
    let (content, hashed) = std::thread::scope(|scope| {
        let hashed =
            scope.spawn(|| crate::progress::silently(true, || hash_file(backup, algorithm)));
        (check_content(backup, counting), joined(hashed))
    });
    let fingerprint = content?;
    let (sum, size) = hashed?;
    check_sum(backup, manifest.as_ref(), &sum)?;
    let compared = manifest.is_some();
    let checked_at = crate::event::now();
    let unrecorded = if stamp(backup)? == before {
        record_check(
            backup,
            manifest,
            &sum,
            size,
            &fingerprint,
            counting,
            &checked_at,
        )
        .err()
    } else {
        Some(format!("{} changed while it was checked", backup.display()))
    };
    Ok(Verified {
        checksum: sum,
        manifest: compared,
        fingerprint,
        checked_at,
        checked_now: true,
        unrecorded,
    })
}

/// A file's size and modification time: what changes when it is written.
fn stamp(path: &Path) -> Result<(u64, std::time::SystemTime), Error> {
    std::fs::metadata(path)
        .and_then(|m| Ok((m.len(), m.modified()?)))
        .map_err(io("reading", path))
}

/// Records a passed check in the backup's manifest, replacing it whole;
/// a backup without one (the application's own) gets one.
fn record_check(
    backup: &Path,
    manifest: Option<Manifest>,
    sum: &Checksum,
    size: u64,
    fingerprint: &Fingerprint,
    counting: &Counting,
    at: &str,
) -> Result<(), String> {
    let mut m = manifest.unwrap_or_else(|| {
        let mut m = Manifest {
            format: MANIFEST_FORMAT,
            file: backup
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default(),
            blake3: None,
            sha256: None,
            size,
            created_at: modified(backup),
            source: String::new(),
            sqlite_version: String::new(),
            label: None,
            fingerprint: fingerprint.clone(),
            counting: counting.clone(),
            raw: false,
            unreadable: None,
            verified: None,
            pending_swap: false,
        };
        m.set_checksum(sum);
        m
    });
    // A pre-restore backup that matches is one whose exchange happened.
    m.pending_swap = false;
    m.verified = Some(Verification {
        at: at.to_owned(),
        integrity_check: "ok".into(),
        checksum: sum.to_string(),
        size,
        sqlite_version: rusqlite::version().to_owned(),
    });
    write_manifest(backup, &m).map_err(|e| e.to_string())
}

/// Replaces a backup's manifest whole, durably.
fn write_manifest(backup: &Path, m: &Manifest) -> Result<(), Error> {
    let path = manifest_path(backup);
    let json = serde_json::to_vec_pretty(m).map_err(|e| Error::Manifest {
        path: backup.to_path_buf(),
        detail: e.to_string(),
    })?;
    crate::report::write_atomically(&path, &json).map_err(io("writing", &path))?;
    sync_dir(backup.parent().unwrap_or_else(|| Path::new(".")))
}

/// `integrity_check` on a backup, then what it holds.
fn check_content(backup: &Path, counting: &Counting) -> Result<Fingerprint, Error> {
    let mut conn = database::open_immutable(backup)?;
    crate::progress::watch_sqlite(&mut conn, "integrity check");
    database::integrity_check_on(&conn, backup)?;
    Ok(database::fingerprint_on(&conn, backup, counting)?)
}

/// What a backup holds, as a restore knows it before the copy is in place.
enum Content {
    /// Checked now (`integrity_check`), and read from the backup.
    Checked(Fingerprint),
    /// Trusted by the check its manifest records (at `checked_at`) and its
    /// checksum.
    Trusted {
        fingerprint: Fingerprint,
        checked_at: String,
    },
}

/// What a backup whose manifest records a passed check holds: the
/// manifest's fingerprint where it was counted as asked now (its checksum,
/// compared in the copy pass, says the bytes are those it was read from),
/// else read from the backup, while the copy runs.
fn recorded_content(
    backup: &Path,
    manifest: Option<&Manifest>,
    counting: &Counting,
) -> Result<Fingerprint, Error> {
    match manifest {
        Some(m) if m.counting == *counting => Ok(m.fingerprint.clone()),
        _ => Ok(database::open_immutable(backup)
            .and_then(|conn| database::fingerprint_on(&conn, backup, counting))?),
    }
}

/// The backup's checksum against its manifest, if it has one.
fn check_sum(backup: &Path, manifest: Option<&Manifest>, actual: &Checksum) -> Result<(), Error> {
    match manifest.and_then(|m| Some((m, m.checksum()?))) {
        Some((m, expected)) if expected != *actual => Err(Error::Checksum {
            path: backup.to_path_buf(),
            expected,
            actual: actual.clone(),
            pending_swap: m.pending_swap,
        }),
        _ => Ok(()),
    }
}

/// A scoped thread's result; its panic, as an error.
fn joined<T>(handle: std::thread::ScopedJoinHandle<'_, Result<T, Error>>) -> Result<T, Error> {
    handle
        .join()
        .unwrap_or_else(|_| Err(Error::Refused("a worker thread failed".into())))
}

/// What `restore` did.
#[derive(Clone, Debug, Serialize)]
pub struct Restored {
    pub backup: PathBuf,
    /// The state before, kept (none if there was no database file at all).
    pub pre_restore_backup: Option<PathBuf>,
    /// How it was kept: `exchange` (the old file itself, moved into the
    /// backup directory in the same atomic rename that put the restored one
    /// in place) or `copy` (across filesystems).
    pub kept_by: Option<&'static str>,
    /// How the backup was checked before it replaced the database.
    pub checked: String,
    /// The restored file's checksum, as compared with the manifest.
    pub checksum: Checksum,
    pub fingerprint: Fingerprint,
    /// What the look for processes holding the old file could not cover:
    /// one of them may still have it open. Not a `warning` output, which
    /// would make the step ⚠: playbooks read a restore's outputs by its
    /// status, and a `sqlite.quiescent` check before it warns the run.
    pub unseen: Option<String>,
}

/// The first bytes of a rollback journal's header. A `-journal` that starts
/// with them is one SQLite would replay onto whatever file is then beside it.
const JOURNAL_MAGIC: [u8; 8] = [0xd9, 0xd5, 0x05, 0xf9, 0x20, 0xa1, 0x63, 0xd7];

/// Replaces the live database with a backup, so that at every instant the
/// file is either the old database or the new one, whole, and every write
/// committed to the old one is in the pre-restore backup. That backup is
/// taken under SQLite's exclusive lock on the live file, held until the
/// restored file is in place: a writer that comes in meanwhile fails rather
/// than commits to a file about to be replaced (docs/RELIABILITY.md, "A
/// writer that reconnects during a restore").
///
/// Where the backup directory is on the database's filesystem, the old
/// file is not copied: the restored copy is made in the backup directory,
/// named as the pre-restore backup, and exchanged with the live file in one
/// `renameat2(RENAME_EXCHANGE)`. A backup whose manifest records a passed
/// `integrity_check` is trusted by its checksum, compared in the copy pass.
pub fn restore(
    db: &Path,
    backup: &Path,
    dir: &Path,
    lock_timeout: Duration,
    counting: &Counting,
) -> Result<Restored, Error> {
    let real = real_file(db)?;
    let target = real.as_deref().unwrap_or(db);
    let db_dir = match target.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    std::fs::create_dir_all(dir).map_err(io("creating the backup directory", dir))?;
    let manifest = read_manifest(backup)?;
    let src = File::open(backup).map_err(io("opening", backup))?;
    let file_stamp = |f: &File| f.metadata().and_then(|m| Ok((m.len(), m.modified()?)));
    let before = file_stamp(&src).map_err(io("reading", backup))?;
    let trusted = manifest
        .as_ref()
        .and_then(|m| m.trusted_check(before.0))
        .cloned();
    let expected_sum = manifest.as_ref().and_then(Manifest::checksum);
    let algorithm = expected_sum
        .as_ref()
        .map_or(Algorithm::Blake3, |c| c.algorithm);
    // The restored copy is made where it can be exchanged with the live file.
    let exchange = real.is_some() && can_exchange(db_dir, dir);
    let copy_dir = if exchange { dir } else { db_dir };
    let mut tmp = temporary_in(copy_dir, ".runbook-restore-")?;
    // Checking the backup, copying it and keeping the current state are
    // independent, and each is bound by the CPU (an integrity check, two
    // checksum streams), so they run side by side. The live database is not
    // changed until all three have succeeded.
    let out = tmp.as_file_mut();
    let (content, copied, current) = std::thread::scope(|scope| {
        let current = scope.spawn(|| {
            crate::progress::silently(true, || {
                Current::keep(real.as_deref(), dir, lock_timeout, counting, exchange)
            })
        });
        let copied = scope.spawn(|| {
            crate::progress::silently(true, || {
                let copied = copy_checked(&src, out, backup, copy_dir, algorithm)
                    .and_then(|c| {
                        crate::shadow::sync(out, copy_dir)
                            .map(|()| c)
                            .map_err(io("syncing", copy_dir))
                    })
                    .map_err(|e| {
                        Error::Refused(format!(
                            "the copy of the backup failed, so nothing was restored: {e}"
                        ))
                    })?;
                Ok(copied)
            })
        });
        let content = match &trusted {
            Some(v) => recorded_content(backup, manifest.as_ref(), counting).map(|fingerprint| {
                Content::Trusted {
                    fingerprint,
                    checked_at: v.at.clone(),
                }
            }),
            None => check_content(backup, counting).map(Content::Checked),
        };
        (content, joined(copied), joined(current))
    });
    // Errors in the order the steps would come one after another: the
    // backup's own, then the pre-restore backup's, then the copy's. An early
    // return drops `current`: the lock is released and the pre-restore
    // backup removed, as nothing is going to be restored.
    let expected = content.and_then(|fingerprint| {
        if let Ok((sum, _)) = &copied {
            check_sum(backup, manifest.as_ref(), sum)?;
        }
        if file_stamp(&src).map_err(io("reading", backup))? != before {
            return Err(Error::Refused(format!(
                "{} changed while it was being restored; nothing was restored",
                backup.display()
            )));
        }
        Ok(fingerprint)
    });
    let (expected, mut current) = match (expected, current) {
        (Ok(expected), Ok(current)) => (expected, current),
        (Err(e), _) | (_, Err(e)) => return Err(e),
    };
    let (sum, size) = copied?;
    let checked = match &expected {
        Content::Trusted { checked_at, .. } => {
            format!("{sum} matches its manifest, whose integrity_check passed at {checked_at}")
        }
        Content::Checked(fp) => {
            // Checked now: recorded, so the next restore of it need not be.
            // Best effort: the restore does not depend on it.
            let now = crate::event::now();
            let _ = record_check(backup, manifest.clone(), &sum, size, fp, counting, &now);
            "integrity_check ok".to_owned()
        }
    };
    current.clear_sidecars(target)?;

    // Keep the live file's permissions: the app must still be able to open it.
    if let Ok(meta) = std::fs::metadata(target) {
        let _ = tmp.as_file().set_permissions(meta.permissions());
    }
    let journal = database::sidecar(target, "-journal");
    if journal.exists() {
        return Err(Error::Refused(format!(
            "{} exists: SQLite would replay it onto the restored file; nothing was restored",
            journal.display()
        )));
    }
    // The copy about to be put in place holds what the backup holds: its
    // checksum matched. A backup checked now is read again in its copy, here
    // and not once in place: from then on the app may write to the
    // restored file, and what it writes is its own. A trusted one is
    // trusted by that checksum, computed from the bytes the kernel copied.
    let copy = match expected {
        Content::Trusted { fingerprint, .. } => fingerprint,
        Content::Checked(expected) => {
            let copy = database::open_immutable(tmp.path())
                .and_then(|conn| database::fingerprint_on(&conn, tmp.path(), counting))?;
            if expected != copy {
                return Err(Error::Mismatch {
                    detail: format!("expected {expected:?}, found {copy:?}; nothing was restored"),
                });
            }
            copy
        }
    };
    let (pre_restore, kept_by) = match current.old.take() {
        Some(old) => {
            let path = old.exchange(tmp, target, db_dir, dir)?;
            (Some(path), Some("exchange"))
        }
        None => {
            tmp.persist(target)
                .map_err(|e| io("replacing", db)(e.error))?;
            // From here the restore has happened: the state before stays kept,
            // whatever fails next.
            let kept = current.kept.take().and_then(Kept::keep);
            sync_dir(db_dir)?;
            let by = kept.as_ref().map(|_| "copy");
            (kept, by)
        }
    };
    // The old database's shared-memory index must not be applied to the new file.
    let _ = std::fs::remove_file(database::sidecar(target, "-shm"));
    // Only now may a writer waiting on the old file go on: it finds the file
    // moved and fails; a new connection opens the restored file.
    let unseen = current.unseen.take();
    drop(current);

    Ok(Restored {
        unseen: unseen.map(|why| format!("no process seen holding the old database, but {why}")),
        backup: backup.to_path_buf(),
        pre_restore_backup: pre_restore,
        kept_by,
        checked,
        checksum: sum,
        fingerprint: copy,
    })
}

/// Whether a file in `a` can be exchanged with one in `b`: the same
/// filesystem, and one that supports `RENAME_EXCHANGE`. Asked of the
/// filesystem itself, with two empty files, as the answer depends on both.
fn can_exchange(a: &Path, b: &Path) -> bool {
    let (Ok(x), Ok(y)) = (
        temporary_in(a, ".runbook-probe-"),
        temporary_in(b, ".runbook-probe-"),
    ) else {
        return false;
    };
    exchange(x.path(), y.path()).is_ok()
}

/// Swaps two names atomically: each then names the other's file.
fn exchange(a: &Path, b: &Path) -> std::io::Result<()> {
    use std::ffi::CString;
    use std::os::unix::ffi::OsStrExt;
    let cstr = |p: &Path| {
        CString::new(p.as_os_str().as_bytes())
            .map_err(|_| std::io::Error::from(std::io::ErrorKind::InvalidInput))
    };
    let (a, b) = (cstr(a)?, cstr(b)?);
    // SAFETY: both are valid NUL-terminated paths; the call reads nothing else.
    let rc = unsafe {
        libc::renameat2(
            libc::AT_FDCWD,
            a.as_ptr(),
            libc::AT_FDCWD,
            b.as_ptr(),
            libc::RENAME_EXCHANGE,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

/// The file a restore replaces: the one `db` names, symlinks followed, so
/// that a symlink stays a symlink and the file it points to is restored;
/// `None` when there is no database file yet.
fn real_file(db: &Path) -> Result<Option<PathBuf>, Error> {
    use std::os::unix::fs::MetadataExt;
    match std::fs::symlink_metadata(db) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(io("reading", db)(e)),
        Ok(_) => {}
    }
    let real = std::fs::canonicalize(db).map_err(|e| {
        if e.kind() == std::io::ErrorKind::NotFound {
            Error::Refused(format!(
                "{} is a symbolic link to a file that does not exist; nothing was restored (point it at the database, or restore onto the path it should name)",
                db.display()
            ))
        } else {
            io("resolving", db)(e)
        }
    })?;
    let meta = std::fs::metadata(&real).map_err(io("reading", db))?;
    if !meta.is_file() {
        return Err(Error::Refused(format!(
            "{} is not a regular file; nothing was restored",
            db.display()
        )));
    }
    // The restored file takes the place of one name only: a process using
    // another (a hard link) would go on with the old file, and its writes
    // would land in neither the restored database nor the pre-restore backup.
    if meta.nlink() > 1 {
        return Err(Error::Refused(format!(
            "{} has {} hard links, and a restore replaces only this name: whatever uses another would go on with the old database; nothing was restored (find the others with `find / -xdev -samefile {}`, remove them, and try again)",
            db.display(),
            meta.nlink(),
            real.display()
        )));
    }
    Ok(Some(real))
}

/// The state a restore replaces, held until the restored file is in place.
struct Current {
    /// SQLite's exclusive lock on the live file, when SQLite can read it.
    lock: Option<Exclusive>,
    /// The pre-restore backup, copied; none when there was no database
    /// file, or when it is to be kept by exchange.
    kept: Option<Kept>,
    /// Processes the look for other holders could not cover, if any.
    unseen: Option<String>,
    /// What the live file holds, when it is to be kept by exchange.
    old: Option<Old>,
}

impl Current {
    /// Takes the live database (`None`: there is none) from every other
    /// writer and keeps its state at that moment: read (checksum and
    /// fingerprint) to be kept by exchange, or else backed up into `dir`.
    fn keep(
        db: Option<&Path>,
        dir: &Path,
        timeout: Duration,
        counting: &Counting,
        exchange: bool,
    ) -> Result<Current, Error> {
        let Some(db) = db else {
            return Ok(Current {
                lock: None,
                kept: None,
                unseen: None,
                old: None,
            });
        };
        // The clear error for an app left running: who has it, what lock was
        // refused, after waiting as long as the caller allows.
        let unseen = database::quiescent(db, timeout, false)?;
        let failed = |e: Error| {
            Error::Refused(format!(
                "the pre-restore backup failed, so nothing was restored: {e}"
            ))
        };
        match Exclusive::take(db, timeout) {
            Ok(lock) if exchange => {
                let old = lock.read(db, counting).map_err(failed)?;
                Ok(Current {
                    unseen,
                    lock: Some(lock),
                    kept: None,
                    old: Some(old),
                })
            }
            Ok(lock) => {
                let kept = lock.back_up(db, dir, counting).map_err(failed)?;
                Ok(Current {
                    unseen,
                    lock: Some(lock),
                    kept: Some(kept),
                    old: None,
                })
            }
            // A file SQLite cannot read has no lock to take, and no write can
            // commit to it either: its bytes are kept as they are.
            Err(e) if unreadable(&e) => {
                let (path, _) = create(db, dir, Some("pre-restore"), counting).map_err(failed)?;
                Ok(Current {
                    unseen,
                    lock: None,
                    kept: Some(Kept(Some(path))),
                    old: None,
                })
            }
            Err(e) => Err(e),
        }
    }

    /// Removes what SQLite would otherwise apply to the restored file.
    fn clear_sidecars(&self, db: &Path) -> Result<(), Error> {
        if self.lock.is_some() {
            return remove_cold_journal(db);
        }
        if self.kept.is_none() {
            return Ok(());
        }
        // They belong to the unreadable file, and are in its raw pre-restore
        // backup; left here, SQLite would apply them to the restored one.
        for side in ["-wal", "-journal", "-shm"] {
            let path = database::sidecar(db, side);
            if path.exists() {
                std::fs::remove_file(&path).map_err(io("removing", &path))?;
            }
        }
        Ok(())
    }
}

/// An open transaction holding SQLite's exclusive lock on the live file:
/// while it lasts no other connection can read or write it.
struct Exclusive {
    conn: Connection,
    /// The live file, to copy. Opened before the lock is taken and closed
    /// after it is released (fields drop in order): closing any descriptor
    /// of a file drops all of this process's POSIX locks on it, SQLite's too.
    file: File,
}

impl Exclusive {
    /// Settles the database (a hot journal rolled back, out of WAL mode, so
    /// the file alone is the database), then takes the exclusive lock and
    /// makes sure no other process has the file open.
    fn take(db: &Path, timeout: Duration) -> Result<Exclusive, Error> {
        database::check_header(db)?;
        let file = File::open(db).map_err(io("opening", db))?;
        let conn = database::open_read_write(db)?;
        conn.busy_timeout(timeout)
            .map_err(|e| sqlite_error(db, e))?;
        settle_on(&conn, db)?;
        conn.execute_batch("BEGIN EXCLUSIVE").map_err(|e| {
            if matches!(
                e.sqlite_error_code(),
                Some(rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked)
            ) {
                let lock = format!(
                    "no exclusive lock within {}: {e}",
                    humantime::format_duration(timeout)
                );
                Error::Database(database::in_use(
                    db,
                    &crate::holders::of(db).seen,
                    Some(lock),
                ))
            } else {
                sqlite_error(db, e)
            }
        })?;
        // A process may hold the file open without any lock, between two
        // transactions; it could write to the old file once the lock is
        // released, so it is waited for, and refused if it stays.
        let started = std::time::Instant::now();
        loop {
            let holders = crate::holders::of(db);
            if holders.seen.is_empty() {
                return Ok(Exclusive { conn, file });
            }
            if started.elapsed() >= timeout {
                return Err(database::in_use(db, &holders.seen, None).into());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The live file's bytes into a new backup in `dir`. Nothing can write
    /// while the lock is held, so the copy is of one moment, and the
    /// fingerprint, read in the same transaction, is of that moment.
    fn back_up(&self, db: &Path, dir: &Path, counting: &Counting) -> Result<Kept, Error> {
        std::fs::create_dir_all(dir).map_err(io("creating the backup directory", dir))?;
        let mut tmp = temporary_in(dir, ".runbook-backup-")?;
        let (checksum, size, fingerprint) =
            copy_hashing(&self.file, tmp.as_file_mut(), db, dir, || {
                Ok(database::fingerprint_on(&self.conn, db, counting)?)
            })?;
        let snapshot = Snapshot {
            tmp,
            checksum,
            size,
            fingerprint,
            counting: counting.clone(),
            unreadable: None,
        };
        let (path, _) = store(db, dir, Some("pre-restore"), snapshot)?;
        Ok(Kept(Some(path)))
    }

    /// What the live file holds, to be kept by exchange: its checksum and
    /// fingerprint, of the one moment the lock holds, and its bytes forced
    /// to disk, as after the exchange they are the pre-restore backup.
    fn read(&self, db: &Path, counting: &Counting) -> Result<Old, Error> {
        let size = self.file.metadata().map_err(io("reading", db))?.len();
        let file = &self.file;
        let silent = crate::progress::is_silent();
        let (sum, fingerprint) = std::thread::scope(|scope| {
            let sum = scope.spawn(|| {
                crate::progress::silently(silent, || {
                    checksum::of_range(file, size, db, Algorithm::Blake3).map_err(io("reading", db))
                })
            });
            let fingerprint = database::fingerprint_on(&self.conn, db, counting);
            Ok::<_, Error>((joined(sum)?, fingerprint?))
        })?;
        crate::shadow::sync(&self.file, db).map_err(io("syncing", db))?;
        Ok(Old {
            source: db.to_path_buf(),
            sum,
            size,
            fingerprint,
            counting: counting.clone(),
        })
    }
}

/// The live file's state before a restore, kept by exchanging it with the
/// restored copy.
struct Old {
    source: PathBuf,
    sum: Checksum,
    size: u64,
    fingerprint: Fingerprint,
    counting: Counting,
}

impl Old {
    /// Names the restored copy `copy` (in `dir`) as the pre-restore backup,
    /// its manifest first, describing the old state and marked
    /// `pending_swap`, then exchanges it with `target` in one atomic rename:
    /// the live name then holds the restored file, and the backup's name the
    /// old one, which its manifest describes. Killed before the exchange,
    /// the named file does not match its manifest, which says why; the live
    /// database is untouched. Returns the pre-restore backup's path.
    fn exchange(
        self,
        copy: tempfile::NamedTempFile,
        target: &Path,
        db_dir: &Path,
        dir: &Path,
    ) -> Result<PathBuf, Error> {
        let created_at = crate::event::now();
        let stamp: String = created_at
            .chars()
            .filter(|c| *c != '-' && *c != ':')
            .collect();
        let mut m = Manifest {
            format: MANIFEST_FORMAT,
            file: String::new(),
            blake3: None,
            sha256: None,
            size: self.size,
            created_at,
            source: self.source.display().to_string(),
            sqlite_version: rusqlite::version().to_owned(),
            label: Some("pre-restore".into()),
            fingerprint: self.fingerprint,
            counting: self.counting,
            raw: false,
            unreadable: None,
            verified: None,
            pending_swap: true,
        };
        m.set_checksum(&self.sum);
        let path = name_pre_restore(copy, dir, &stamp, &mut m).map_err(|e| {
            Error::Refused(format!(
                "the pre-restore backup failed, so nothing was restored: {e}"
            ))
        })?;
        exchange(&path, target).map_err(io("exchanging the restored file with", target))?;
        sync_dir(db_dir)?;
        if dir != db_dir {
            sync_dir(dir)?;
        }
        // The exchange happened: the backup holds what its manifest says.
        // If this rewrite fails the mark stays, and the checksum tells.
        m.pending_swap = false;
        let _ = write_manifest(&path, &m);
        Ok(path)
    }
}

/// Names the restored copy as the pre-restore backup `m` describes, its
/// manifest first, under a name no other backup has; both durable.
fn name_pre_restore(
    copy: tempfile::NamedTempFile,
    dir: &Path,
    stamp: &str,
    m: &mut Manifest,
) -> Result<PathBuf, Error> {
    let mut copy = copy;
    let mut n = 1;
    let path = loop {
        let name = if n == 1 {
            format!("{PREFIX}{stamp}-pre-restore.db")
        } else {
            format!("{PREFIX}{stamp}-pre-restore-{n}.db")
        };
        let candidate = dir.join(&name);
        m.file = name;
        let mut pending = temporary_in(dir, ".runbook-")?;
        rewrite(&mut pending, m, &candidate)?;
        let manifest = manifest_path(&candidate);
        let retry = |e: &std::io::Error| e.kind() == std::io::ErrorKind::AlreadyExists && n < 100;
        match pending.persist_noclobber(&manifest) {
            Ok(_) => {}
            Err(e) if retry(&e.error) => {
                n += 1;
                continue;
            }
            Err(e) => return Err(io("naming the manifest", &manifest)(e.error)),
        }
        match copy.persist_noclobber(&candidate) {
            Ok(_) => break candidate,
            Err(e) => {
                let _ = std::fs::remove_file(&manifest);
                if !retry(&e.error) {
                    return Err(io("naming the pre-restore backup", &candidate)(e.error));
                }
                copy = e.file;
                n += 1;
            }
        }
    };
    sync_dir(dir)?;
    Ok(path)
}

/// A pre-restore backup, removed again when it is dropped before
/// [`Kept::keep`]: it only has a reason to exist once the restore happened.
struct Kept(Option<PathBuf>);

impl Kept {
    fn keep(mut self) -> Option<PathBuf> {
        self.0.take()
    }
}

impl Drop for Kept {
    fn drop(&mut self) {
        if let Some(path) = self.0.take() {
            let _ = delete(&path);
        }
    }
}

/// Removes a `-journal` still beside the database once the exclusive lock
/// is held. Taking the lock rolled back any hot journal, so one still here
/// is one SQLite ignores: empty, or its header zeroed (a transaction
/// committed in PERSIST mode, or a kill at the right moment). Left in place
/// it would stop every later restore. One that still bears the journal's
/// magic is not understood, and would be replayed onto the restored file:
/// the restore stops instead.
fn remove_cold_journal(db: &Path) -> Result<(), Error> {
    use std::io::Read;
    let journal = database::sidecar(db, "-journal");
    let mut head = Vec::with_capacity(JOURNAL_MAGIC.len());
    match File::open(&journal) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(io("opening", &journal)(e)),
        Ok(f) => {
            f.take(JOURNAL_MAGIC.len() as u64)
                .read_to_end(&mut head)
                .map_err(io("reading", &journal))?;
        }
    }
    if head == JOURNAL_MAGIC {
        return Err(Error::Refused(format!(
            "{} is a rollback journal SQLite did not roll back, and would replay onto the restored file; nothing was restored (open the database once with sqlite3 to roll it back, then try again)",
            journal.display()
        )));
    }
    std::fs::remove_file(&journal).map_err(io("removing", &journal))
}

/// Brings the live database to a single self-contained file before it is
/// replaced: a hot journal rolled back, WAL content checkpointed and the
/// `-wal` file removed (by leaving WAL mode). Its content is unchanged.
fn settle_on(conn: &Connection, db: &Path) -> Result<(), Error> {
    // Any read rolls back a hot journal.
    conn.query_row("SELECT count(*) FROM sqlite_master", [], |r| {
        r.get::<_, i64>(0)
    })
    .map_err(|e| sqlite_error(db, e))?;
    // Asked of the connection, not read from the file: opening and closing
    // the file here would drop the connection's locks on it.
    let mode: String = conn
        .query_row("PRAGMA journal_mode", [], |r| r.get(0))
        .map_err(|e| sqlite_error(db, e))?;
    if mode.eq_ignore_ascii_case("wal") {
        conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |r| {
            r.get::<_, i64>(0)
        })
        .map_err(|e| sqlite_error(db, e))?;
        leave_wal(conn, db)?;
    }
    Ok(())
}

/// Switches a database to rollback-journal mode, which in WAL mode
/// checkpoints everything and removes the `-wal` file: one self-contained file.
fn leave_wal(conn: &Connection, path: &Path) -> Result<(), Error> {
    let mode: String = conn
        .query_row("PRAGMA journal_mode = DELETE", [], |r| r.get(0))
        .map_err(|e| sqlite_error(path, e))?;
    if !mode.eq_ignore_ascii_case("delete") {
        return Err(Error::Refused(format!(
            "could not take {} out of WAL mode (still in {mode} mode)",
            path.display()
        )));
    }
    Ok(())
}

/// Removes a backup and its manifest.
pub fn delete(backup: &Path) -> Result<(), Error> {
    if !backup.is_file() {
        return Err(Error::Refused(format!(
            "{} is not a backup file",
            backup.display()
        )));
    }
    std::fs::remove_file(backup).map_err(io("deleting", backup))?;
    let manifest = manifest_path(backup);
    if manifest.exists() {
        std::fs::remove_file(&manifest).map_err(io("deleting", &manifest))?;
    }
    let dir = backup.parent().unwrap_or_else(|| Path::new("."));
    sync_dir(dir)
}

/// Why a backup was passed over by [`select`].
#[derive(Clone, Debug, Serialize)]
pub struct Rejected {
    pub path: PathBuf,
    pub why: String,
}

/// Which backups [`select`] may choose.
#[derive(Clone, Debug, Default)]
pub struct Criteria {
    /// Only backups with none of these tables.
    pub without_tables: Vec<String>,
    /// Only backups in which none of these migrations is recorded as done.
    pub without_markers: Vec<String>,
    /// Only backups with all of these tables.
    pub with_tables: Vec<String>,
    /// Only backups made with this label (`pre-restore`, `emergency`…).
    pub label: Option<String>,
    /// The terms the backups are read in: the tables and markers above are
    /// looked for, and the chosen one's fingerprint given, in these.
    pub counting: Counting,
    /// The prefix of the application's own backups, to choose among too.
    pub app_prefix: Option<String>,
}

/// What [`select`] chose, and what it passed over on the way.
#[derive(Clone, Debug)]
pub struct Selected {
    pub entry: Entry,
    pub verified: Verified,
    pub rejected: Vec<Rejected>,
}

/// The newest backup whose fingerprint has none of `without_tables` and none
/// of `without_markers` live, and that passes [`verify`], or whose manifest
/// records that it passed (then its checksum is for the restore to compare,
/// as it copies it). When none does, the error lists every backup and why
/// it was passed over.
pub fn select(dir: &Path, wanted: &Criteria) -> Result<Selected, Error> {
    let entries = list(dir, &wanted.counting, wanted.app_prefix.as_deref())?;
    let mut rejected = Vec::new();
    for mut entry in entries {
        let reject = |why: String| Rejected {
            path: entry.path.clone(),
            why,
        };
        // The label first: it rules a backup out without reading it.
        if let Some(label) = wanted
            .label
            .as_deref()
            .filter(|l| entry.label.as_deref() != Some(*l))
        {
            rejected.push(reject(format!("is not labelled `{label}`")));
            continue;
        }
        // In the caller's terms, whatever terms its manifest was made in.
        let fp = match &entry.fingerprint {
            Ok(_) => fingerprint_of(&entry.path, &wanted.counting),
            Err(e) => Err(e.clone()),
        };
        let fp = match fp {
            Ok(fp) => fp,
            Err(e) => {
                rejected.push(reject(e));
                continue;
            }
        };
        if let Some(t) = wanted.with_tables.iter().find(|t| !fp.has_table(t)) {
            rejected.push(reject(format!("has no table `{t}`")));
            continue;
        }
        if let Some(t) = wanted.without_tables.iter().find(|t| fp.has_table(t)) {
            rejected.push(reject(format!("has table `{t}`")));
            continue;
        }
        if let Some(m) = wanted
            .without_markers
            .iter()
            .find(|m| fp.markers.contains(m))
        {
            rejected.push(reject(format!("has live marker `{m}`")));
            continue;
        }
        let recorded = read_manifest(&entry.path).ok().flatten().and_then(|m| {
            let v = m.trusted_check(entry.size)?.clone();
            Some(Verified {
                checksum: m.checksum()?,
                manifest: true,
                fingerprint: fp.clone(),
                checked_at: v.at,
                checked_now: false,
                unrecorded: None,
            })
        });
        match recorded.map_or_else(|| verify(&entry.path, &wanted.counting), Ok) {
            Ok(verified) => {
                entry.fingerprint = Ok(verified.fingerprint.clone());
                return Ok(Selected {
                    entry,
                    verified,
                    rejected,
                });
            }
            Err(e) => rejected.push(reject(e.to_string())),
        }
    }
    let detail = if rejected.is_empty() {
        format!("there are no backups in {}", dir.display())
    } else {
        let lines: Vec<String> = rejected
            .iter()
            .map(|r| format!("{}: {}", r.path.display(), r.why))
            .collect();
        format!(
            "no backup in {} qualifies: {}",
            dir.display(),
            lines.join("; ")
        )
    };
    Err(Error::Refused(detail))
}
