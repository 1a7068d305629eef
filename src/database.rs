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

/// What a fingerprint counts and reads: the application's terms, given by
/// the playbook (or the backup command), never assumed by runbook.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Counting {
    /// The tables whose rows are counted (default: every table).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tables: Option<Vec<String>>,
    /// A column that marks a row deleted when it is not NULL (`deleted_at`):
    /// `live` counts the rows of each counted table that has it and is NULL.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub soft_delete: Option<String>,
    /// Where the application records the migrations it has run (default: nowhere).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub markers: Option<Markers>,
}

/// How to read the migrations an application has run: a column of a table
/// (its rows soft-deleted per `soft_delete` left out, and with `done` only
/// those whose `done` column is true), or a query returning one column
/// (run read-only).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields, untagged)]
pub enum Markers {
    Column {
        table: String,
        column: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        done: Option<String>,
    },
    Query {
        query: String,
    },
}

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

/// What a database holds, in the terms of a [`Counting`]: enough to tell
/// one state of the application's schema and data from another.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Fingerprint {
    /// Every table, sorted.
    pub tables: Vec<String>,
    /// Rows in each counted table that exists.
    pub counts: BTreeMap<String, i64>,
    /// Rows not soft-deleted in the same tables (with a `soft_delete` column).
    #[serde(default)]
    pub live: BTreeMap<String, i64>,
    /// The migrations recorded as run (with `markers`).
    #[serde(default)]
    pub markers: Vec<String>,
    /// SHA-256 of the schema (every table's, index's, view's and trigger's
    /// SQL, in name order): two databases with the same tables and counts
    /// but another column or index differ here.
    #[serde(default)]
    pub schema: String,
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
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(sqlite(path))?;
    unsynced_if_scratch(&conn, path);
    Ok(conn)
}

/// A dry run's copy is removed when the dry run ends: its commits need not
/// wait for the disk (`crate::shadow::is_scratch`).
pub fn unsynced_if_scratch(conn: &Connection, path: &Path) {
    if crate::shadow::is_scratch(path) {
        // Failing to set it costs only time.
        let _ = conn.pragma_update(None, "synchronous", "OFF");
    }
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

pub fn fingerprint(path: &Path, counting: &Counting) -> Result<Fingerprint, Error> {
    let conn = open_read_only(path)?;
    fingerprint_on(&conn, path, counting)
}

/// Reads the fingerprint in one read transaction, so it is of one moment.
pub fn fingerprint_on(
    conn: &Connection,
    path: &Path,
    counting: &Counting,
) -> Result<Fingerprint, Error> {
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
        fp.schema = schema_digest(conn).map_err(err)?;
        let counted: Vec<String> = match &counting.tables {
            Some(wanted) => wanted.iter().filter(|t| fp.has_table(t)).cloned().collect(),
            None => fp.tables.clone(),
        };
        for table in &counted {
            let quoted = quote_identifier(table);
            let n: i64 = conn
                .query_row(&format!("SELECT count(*) FROM {quoted}"), [], |r| r.get(0))
                .map_err(err)?;
            fp.counts.insert(table.clone(), n);
            if let Some(column) = counting.soft_delete.as_deref() {
                if has_column(conn, table, column).map_err(err)? {
                    let live: i64 = conn
                        .query_row(
                            &format!(
                                "SELECT count(*) FROM {quoted} WHERE {} IS NULL",
                                quote_identifier(column)
                            ),
                            [],
                            |r| r.get(0),
                        )
                        .map_err(err)?;
                    fp.live.insert(table.clone(), live);
                }
            }
        }
        fp.markers = markers_on(conn, &fp.tables, counting).map_err(err)?;
        Ok(fp)
    })();
    if own {
        let _ = conn.execute_batch("COMMIT");
    }
    result
}

/// The migrations the database records as run, per `counting.markers`
/// (none if it names a table the database does not have). `tables` is
/// every table of the database.
pub fn markers_on(
    conn: &Connection,
    tables: &[String],
    counting: &Counting,
) -> rusqlite::Result<Vec<String>> {
    let sql = match &counting.markers {
        None => return Ok(Vec::new()),
        Some(Markers::Column { table, .. }) if !tables.contains(table) => return Ok(Vec::new()),
        Some(Markers::Column {
            table,
            column,
            done,
        }) => {
            let mut conditions = Vec::new();
            if let Some(done) = done {
                conditions.push(quote_identifier(done));
            }
            match counting.soft_delete.as_deref() {
                Some(c) if has_column(conn, table, c)? => {
                    conditions.push(format!("{} IS NULL", quote_identifier(c)));
                }
                _ => {}
            }
            let filter = if conditions.is_empty() {
                String::new()
            } else {
                format!(" WHERE {}", conditions.join(" AND "))
            };
            format!(
                "SELECT {} FROM {}{filter}",
                quote_identifier(column),
                quote_identifier(table)
            )
        }
        Some(Markers::Query { query }) => query.clone(),
    };
    let mut stmt = conn.prepare(&sql)?;
    // Read on the live database's own connection, inside a backup or a
    // restore: a query that would write is refused before it runs.
    if !stmt.readonly() {
        return Err(rusqlite::Error::InvalidQuery);
    }
    let mut names: Vec<String> = stmt
        .query_map([], |r| {
            r.get::<_, rusqlite::types::Value>(0).map(|v| match v {
                rusqlite::types::Value::Text(t) => t,
                rusqlite::types::Value::Integer(i) => i.to_string(),
                rusqlite::types::Value::Real(f) => f.to_string(),
                _ => String::new(),
            })
        })?
        .collect::<rusqlite::Result<_>>()?;
    names.sort();
    Ok(names)
}

/// SHA-256 of every schema object's SQL, in name order.
fn schema_digest(conn: &Connection) -> rusqlite::Result<String> {
    use sha2::Digest;
    let mut stmt = conn.prepare(
        "SELECT type, name, coalesce(sql, '') FROM sqlite_master WHERE name NOT LIKE 'sqlite_%' ORDER BY type, name",
    )?;
    let mut h = sha2::Sha256::new();
    let mut rows = stmt.query([])?;
    while let Some(row) = rows.next()? {
        for i in 0..3 {
            h.update(row.get::<_, String>(i)?.as_bytes());
            h.update([0]);
        }
    }
    Ok(h.finalize().iter().map(|b| format!("{b:02x}")).collect())
}

/// A name as an SQL identifier: in double quotes, inner quotes doubled, so
/// a table name from a playbook is only ever a name.
pub fn quote_identifier(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

fn has_column(conn: &Connection, table: &str, column: &str) -> rusqlite::Result<bool> {
    let mut stmt = conn.prepare("SELECT 1 FROM pragma_table_info(?1) WHERE name = ?2")?;
    stmt.exists([table, column])
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
/// process has it open is then the whole question. `Some` says what the
/// look could not cover (processes this one may not look at): nothing is
/// proved of them, and the caller says so.
pub fn quiescent(path: &Path, timeout: Duration, look_only: bool) -> Result<Option<String>, Error> {
    let lockable = match check_header(path) {
        Ok(()) => true,
        Err(Error::NotSqlite { .. }) => false,
        Err(e) => return Err(e),
    };
    let started = Instant::now();
    loop {
        let holders = crate::holders::of(path);
        let lock = if look_only || !lockable {
            Ok(())
        } else {
            match exclusive_lock(path) {
                Err(Error::Corrupt { .. }) => Ok(()),
                other => other,
            }
        };
        match (holders.seen.is_empty(), lock) {
            (true, Ok(())) => return Ok(holders.blind_spot()),
            (_, Err(e @ (Error::Io { .. } | Error::Missing { .. }))) => return Err(e),
            (_, lock) if started.elapsed() >= timeout => {
                let lock = lock.err().map(|e| {
                    format!(
                        "no exclusive lock within {}: {e}",
                        humantime::format_duration(timeout)
                    )
                });
                return Err(in_use(path, &holders.seen, lock));
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
