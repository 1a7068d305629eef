//! Facts about an SQLite database file, read without changing it: whether
//! it is SQLite at all, its journal mode, its integrity, what it holds (the
//! fingerprint that tells a pre-migration backup from a post-migration one),
//! and whether any other process is using it.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use rusqlite::{Connection, OpenFlags};
use serde::{Deserialize, Serialize};

/// The tables whose row counts the fingerprint records.
pub const COUNTED_TABLES: &[&str] = &["images", "docs", "media"];
/// Where the app records finished migrations (GORM's `migration_records`).
const MARKER_TABLE: &str = "migration_records";

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{path} does not exist")]
    Missing { path: PathBuf },
    #[error("{path} is not an SQLite database ({why})")]
    NotSqlite { path: PathBuf, why: String },
    #[error("{path}: {source}")]
    Sqlite {
        path: PathBuf,
        #[source]
        source: rusqlite::Error,
    },
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path} failed its integrity check: {detail}")]
    Corrupt { path: PathBuf, detail: String },
    #[error("{path} is in use: {detail}")]
    Busy { path: PathBuf, detail: String },
}

fn sqlite(path: &Path) -> impl FnOnce(rusqlite::Error) -> Error + '_ {
    move |source| Error::Sqlite {
        path: path.to_path_buf(),
        source,
    }
}

/// What a database holds, enough to tell its state in the migration.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Fingerprint {
    /// Every table, sorted.
    pub tables: Vec<String>,
    /// Rows in each of [`COUNTED_TABLES`] that exists.
    pub counts: BTreeMap<String, i64>,
    /// Rows not soft-deleted (`deleted_at IS NULL`) in the same tables.
    pub live: BTreeMap<String, i64>,
    /// Names of completed migrations whose record is not soft-deleted.
    pub markers: Vec<String>,
}

impl Fingerprint {
    pub fn has_table(&self, name: &str) -> bool {
        self.tables.iter().any(|t| t == name)
    }
}

/// Checks the 16-byte header, so that a random file is called what it is.
pub fn check_header(path: &Path) -> Result<(), Error> {
    let mut f = std::fs::File::open(path).map_err(|source| match source.kind() {
        std::io::ErrorKind::NotFound => Error::Missing {
            path: path.to_path_buf(),
        },
        _ => Error::Io {
            path: path.to_path_buf(),
            source,
        },
    })?;
    let mut header = [0u8; 100];
    match f.read_exact(&mut header) {
        Ok(()) if &header[..16] == b"SQLite format 3\0" => Ok(()),
        Ok(()) => Err(Error::NotSqlite {
            path: path.to_path_buf(),
            why: "its header is not SQLite's".into(),
        }),
        Err(_) => Err(Error::NotSqlite {
            path: path.to_path_buf(),
            why: "it is shorter than an SQLite header".into(),
        }),
    }
}

/// Whether the header says WAL mode (bytes 18 and 19 are 2).
pub fn is_wal(path: &Path) -> bool {
    let mut header = [0u8; 20];
    std::fs::File::open(path)
        .and_then(|mut f| f.read_exact(&mut header))
        .is_ok_and(|()| header[18] == 2 && header[19] == 2)
}

/// A file beside the database: `-wal`, `-shm` or `-journal`.
pub fn sidecar(path: &Path, suffix: &str) -> PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push(suffix);
    PathBuf::from(s)
}

/// Opens an existing database read-only; never creates one.
pub fn open_read_only(path: &Path) -> Result<Connection, Error> {
    check_header(path)?;
    // URI: so that ATTACH can name files read-only (`file:…?mode=ro`); a
    // plain path is still a plain path.
    Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_ONLY
            | OpenFlags::SQLITE_OPEN_URI
            | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(sqlite(path))
}

/// Opens an existing database read-write, as the app does; never creates
/// one. A hot journal is rolled back at the first read, as by any client.
pub fn open_read_write(path: &Path) -> Result<Connection, Error> {
    Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(sqlite(path))
}

/// Opens a file that is never written to again (a backup) as immutable,
/// which also keeps SQLite from creating `-wal`/`-shm` files beside it.
pub fn open_immutable(path: &Path) -> Result<Connection, Error> {
    check_header(path)?;
    Connection::open_with_flags(
        format!("file:{}?immutable=1", uri_path(path)),
        OpenFlags::SQLITE_OPEN_READ_ONLY
            | OpenFlags::SQLITE_OPEN_URI
            | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(sqlite(path))
}

/// Opens a database to read. In WAL mode even a read-only connection
/// writes the `-shm` index (and creates `-wal` and `-shm` files); a dry run
/// must write nothing. With no `-wal` file (nothing un-checkpointed to
/// read) it reads the main file alone, as immutable; with one, through
/// SQLite's read-only shared memory (`readonly_shm`), which reads the index
/// without writing it — every committed row, and not a byte changed.
pub fn open_for_reading(path: &Path, dry_run: bool) -> Result<Connection, Error> {
    if !(dry_run && is_wal(path)) {
        return open_read_only(path);
    }
    if !sidecar(path, "-wal").exists() {
        return open_immutable(path);
    }
    check_header(path)?;
    Connection::open_with_flags(
        format!("file:{}?mode=ro&readonly_shm=1", uri_path(path)),
        OpenFlags::SQLITE_OPEN_READ_ONLY
            | OpenFlags::SQLITE_OPEN_URI
            | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(sqlite(path))
}

/// A path as the path part of an SQLite URI: `%`, `?` and `#` escaped.
pub fn uri_path(path: &Path) -> String {
    path.to_string_lossy()
        .replace('%', "%25")
        .replace('?', "%3f")
        .replace('#', "%23")
}

/// `PRAGMA integrity_check` on a read-only connection.
pub fn integrity_check(path: &Path) -> Result<(), Error> {
    let conn = open_read_only(path)?;
    integrity_check_on(&conn, path)
}

pub fn integrity_check_on(conn: &Connection, path: &Path) -> Result<(), Error> {
    let mut stmt = conn
        .prepare("PRAGMA integrity_check")
        .map_err(|e| corrupt_or(path, e))?;
    let lines: Vec<String> = stmt
        .query_map([], |r| r.get::<_, String>(0))
        .and_then(|rows| rows.collect())
        .map_err(|e| corrupt_or(path, e))?;
    if lines == ["ok"] {
        Ok(())
    } else {
        Err(Error::Corrupt {
            path: path.to_path_buf(),
            detail: lines.into_iter().take(5).collect::<Vec<_>>().join("; "),
        })
    }
}

/// SQLite reports some damage as an error rather than as check output.
fn corrupt_or(path: &Path, e: rusqlite::Error) -> Error {
    match e.sqlite_error_code() {
        Some(rusqlite::ErrorCode::DatabaseCorrupt | rusqlite::ErrorCode::NotADatabase) => {
            Error::Corrupt {
                path: path.to_path_buf(),
                detail: e.to_string(),
            }
        }
        _ => Error::Sqlite {
            path: path.to_path_buf(),
            source: e,
        },
    }
}

pub fn fingerprint(path: &Path) -> Result<Fingerprint, Error> {
    let conn = open_read_only(path)?;
    fingerprint_on(&conn, path)
}

/// Reads the fingerprint in one read transaction, so it is of one moment.
pub fn fingerprint_on(conn: &Connection, path: &Path) -> Result<Fingerprint, Error> {
    let err = |e| corrupt_or(path, e);
    // Inside the caller's read transaction, if it has one; else in our own.
    let own = conn.is_autocommit();
    if own {
        conn.execute_batch("BEGIN").map_err(err)?;
    }
    let result = (|| {
        let mut stmt = conn
            .prepare("SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' ORDER BY name")
            .map_err(err)?;
        let tables: Vec<String> = stmt
            .query_map([], |r| r.get(0))
            .and_then(|rows| rows.collect())
            .map_err(err)?;
        let mut fp = Fingerprint {
            tables,
            ..Fingerprint::default()
        };
        for table in COUNTED_TABLES {
            if !fp.has_table(table) {
                continue;
            }
            // Table names come from the fixed list above, never from input.
            let n: i64 = conn
                .query_row(&format!("SELECT count(*) FROM \"{table}\""), [], |r| {
                    r.get(0)
                })
                .map_err(err)?;
            fp.counts.insert((*table).to_owned(), n);
            if has_column(conn, table, "deleted_at").map_err(err)? {
                let live: i64 = conn
                    .query_row(
                        &format!("SELECT count(*) FROM \"{table}\" WHERE deleted_at IS NULL"),
                        [],
                        |r| r.get(0),
                    )
                    .map_err(err)?;
                fp.live.insert((*table).to_owned(), live);
            }
        }
        if fp.has_table(MARKER_TABLE) {
            let deleted = if has_column(conn, MARKER_TABLE, "deleted_at").map_err(err)? {
                " AND deleted_at IS NULL"
            } else {
                ""
            };
            let mut stmt = conn
                .prepare(&format!(
                    "SELECT name FROM {MARKER_TABLE} WHERE completed{deleted} ORDER BY name"
                ))
                .map_err(err)?;
            fp.markers = stmt
                .query_map([], |r| r.get(0))
                .and_then(|rows| rows.collect())
                .map_err(err)?;
        }
        Ok(fp)
    })();
    if own {
        let _ = conn.execute_batch("COMMIT");
    }
    result
}

fn has_column(conn: &Connection, table: &str, column: &str) -> rusqlite::Result<bool> {
    let mut stmt = conn.prepare("SELECT 1 FROM pragma_table_info(?1) WHERE name = ?2")?;
    stmt.exists([table, column])
}

/// Other processes that have the file (or its `-wal`/`-journal`) open,
/// read from /proc: `pid (command)` for each. Open files are compared by
/// device and inode, not by name: a process may hold the database through
/// another name for it (a hard link, a bind mount, a container's view of a
/// volume) or under a name since removed, and is using it all the same.
pub fn holders(path: &Path) -> Vec<String> {
    use std::os::unix::fs::MetadataExt;
    // SQLite keeps the `-wal` and `-journal` beside the file a symlink names.
    let real = std::fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf());
    let ids: Vec<(u64, u64)> = ["", "-wal", "-journal"]
        .iter()
        .filter_map(|side| std::fs::metadata(sidecar(&real, side)).ok())
        .map(|m| (m.dev(), m.ino()))
        .collect();
    let mut found = Vec::new();
    if ids.is_empty() {
        return found;
    }
    let me = std::process::id();
    let Ok(procs) = std::fs::read_dir("/proc") else {
        return found;
    };
    for p in procs.filter_map(Result::ok) {
        let Some(pid) = p.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
            continue;
        };
        if pid == me {
            continue;
        }
        let Ok(fds) = std::fs::read_dir(p.path().join("fd")) else {
            continue;
        };
        // metadata follows the fd's link to the open file itself, which
        // works for a file whose every name is gone.
        let open = fds
            .filter_map(Result::ok)
            .filter_map(|fd| std::fs::metadata(fd.path()).ok())
            .any(|m| ids.contains(&(m.dev(), m.ino())));
        if open {
            let comm = std::fs::read_to_string(p.path().join("comm")).unwrap_or_default();
            found.push(format!("{pid} ({})", comm.trim()));
        }
    }
    found
}

/// The error for a database someone else is using: who has it open, and
/// the lock that could not be taken.
pub fn in_use(path: &Path, holders: &[String], lock: Option<String>) -> Error {
    let mut why = Vec::new();
    if !holders.is_empty() {
        why.push(format!("open by process {}", holders.join(", ")));
    }
    why.extend(lock);
    Error::Busy {
        path: path.to_path_buf(),
        detail: format!(
            "{} (stop the app, or whatever holds it, and try again)",
            why.join("; ")
        ),
    }
}

/// Proves no other process is using the database: none has it open, and an
/// exclusive lock can be taken within `timeout` (then released at once).
/// `look_only` (a dry run) checks the open files alone: taking the lock
/// opens the database for writing, which in WAL mode creates files. So
/// does a file SQLite cannot read, which has no lock to take: whether a
/// process has it open is then the whole question.
pub fn quiescent(path: &Path, timeout: Duration, look_only: bool) -> Result<(), Error> {
    let lockable = match check_header(path) {
        Ok(()) => true,
        Err(Error::NotSqlite { .. }) => false,
        Err(e) => return Err(e),
    };
    let started = Instant::now();
    loop {
        let holders = holders(path);
        let lock = if look_only || !lockable {
            Ok(())
        } else {
            match exclusive_lock(path) {
                Err(Error::Corrupt { .. }) => Ok(()),
                other => other,
            }
        };
        match (holders.is_empty(), lock) {
            (true, Ok(())) => return Ok(()),
            (_, Err(e @ (Error::Io { .. } | Error::Missing { .. }))) => return Err(e),
            (_, lock) if started.elapsed() >= timeout => {
                let lock = lock.err().map(|e| {
                    format!(
                        "no exclusive lock within {}: {e}",
                        humantime::format_duration(timeout)
                    )
                });
                return Err(in_use(path, &holders, lock));
            }
            _ => std::thread::sleep(Duration::from_millis(50)),
        }
    }
}

/// Takes SQLite's exclusive lock and releases it. Read-write open, so a
/// hot journal would be rolled back here, as any SQLite client would.
fn exclusive_lock(path: &Path) -> Result<(), Error> {
    let conn = open_read_write(path)?;
    conn.execute_batch("BEGIN EXCLUSIVE; ROLLBACK;")
        .map_err(|e| match e.sqlite_error_code() {
            Some(rusqlite::ErrorCode::NotADatabase | rusqlite::ErrorCode::DatabaseCorrupt) => {
                corrupt_or(path, e)
            }
            Some(rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked) => {
                Error::Busy {
                    path: path.to_path_buf(),
                    detail: "another connection holds a lock on it (SQLITE_BUSY)".to_owned(),
                }
            }
            _ => Error::Busy {
                path: path.to_path_buf(),
                detail: e.to_string(),
            },
        })
}
