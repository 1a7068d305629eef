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

/// Who has a database open, as far as this process may look.
#[derive(Debug, Default)]
pub struct Holders {
    /// Other processes seen holding the file: `pid (command)` for each.
    pub seen: Vec<String>,
    /// Processes whose open files this process may not look at (another
    /// user's, or one that made itself undumpable), counted by user.
    /// Nothing proves that they do not hold it.
    unseen: BTreeMap<u32, usize>,
    /// Why no process of another user could be looked at.
    hidden: Option<Hidden>,
}

#[derive(Debug)]
enum Hidden {
    /// `/proc` is mounted with this `hidepid=` option.
    Hidepid(String),
    /// `/proc` cannot be read at all.
    NoProc,
}

impl Holders {
    /// What the look could not cover, and how to let it cover everything;
    /// `None` when every process was looked at.
    pub fn blind_spot(&self) -> Option<String> {
        // SAFETY: geteuid has no preconditions.
        let me = unsafe { libc::geteuid() };
        let fix = if matches!(self.hidden, Some(Hidden::NoProc)) {
            "mount /proc so that every process can be seen"
        } else if me == 0 {
            "runbook runs as root without CAP_SYS_PTRACE or CAP_DAC_READ_SEARCH (a container \
             leaves the first out by default); give it both so that every process can be seen"
        } else {
            "run it as root (sudo) so that every process can be seen"
        };
        let what = if let Some(hidden) = &self.hidden {
            match hidden {
                Hidden::Hidepid(option) => format!(
                    "/proc is mounted with {option}: other users' processes may not be looked at"
                ),
                Hidden::NoProc => "/proc cannot be read (is it mounted here?)".to_owned(),
            }
        } else if self.unseen.is_empty() {
            return None;
        } else {
            let n: usize = self.unseen.values().sum();
            let users: Vec<String> = self.unseen.keys().map(|&uid| user_name(uid)).collect();
            format!(
                "the open files of {n} process{} of {} may not be looked at by user {}",
                if n == 1 { "" } else { "es" },
                users.join(", "),
                user_name(me)
            )
        };
        Some(format!("{what}; {fix}"))
    }
}

fn user_name(uid: u32) -> String {
    match nix::unistd::User::from_uid(nix::unistd::Uid::from_raw(uid)) {
        Ok(Some(u)) => u.name,
        _ => format!("uid {uid}"),
    }
}

/// Whether this process may look at the open files of every process of
/// its PID namespace: CAP_SYS_PTRACE to read another user's descriptors,
/// and CAP_DAC_READ_SEARCH or CAP_DAC_OVERRIDE to list them, as root has
/// outside a container and no other user has. What such a process is
/// still refused lies past a user namespace's edge or a security policy,
/// which no user of this machine could look past either, as the processes
/// outside a container are not even listed in it.
pub fn sees_every_process() -> bool {
    const DAC_OVERRIDE: u32 = 1;
    const DAC_READ_SEARCH: u32 = 2;
    const SYS_PTRACE: u32 = 19;
    let Some(caps) = std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| {
            let hex = status.lines().find_map(|l| l.strip_prefix("CapEff:"))?;
            u64::from_str_radix(hex.trim(), 16).ok()
        })
    else {
        return false;
    };
    let has = |cap: u32| caps & (1 << cap) != 0;
    has(SYS_PTRACE) && (has(DAC_READ_SEARCH) || has(DAC_OVERRIDE))
}

/// Whether a process whose files may not be looked at could hold any: not
/// one that has exited (a zombie holds nothing), nor a kernel thread.
/// `/proc/PID/stat` is readable by everyone.
fn may_hold_files(proc_dir: &Path) -> bool {
    const PF_KTHREAD: u64 = 0x0020_0000;
    let Ok(stat) = std::fs::read_to_string(proc_dir.join("stat")) else {
        return false; // gone
    };
    // pid (comm) state ppid pgrp session tty tpgid flags …; comm may hold
    // spaces and parentheses, so fields are counted after the last ')'.
    let Some((_, rest)) = stat.rsplit_once(')') else {
        return true;
    };
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let dead = matches!(fields.first(), Some(&("Z" | "X" | "x")));
    let kernel = fields
        .get(6)
        .and_then(|f| f.parse::<u64>().ok())
        .is_some_and(|flags| flags & PF_KTHREAD != 0);
    !dead && !kernel
}

/// Other processes that have the file (or its `-wal`/`-journal`) open,
/// read from /proc, and those that could not be looked at. Open files are
/// compared by device and inode, not by name: a process may hold the
/// database through another name for it (a hard link, a bind mount, a
/// container's view of a volume) or under a name since removed, and is
/// using it all the same.
pub fn holders(path: &Path) -> Holders {
    use std::os::unix::fs::MetadataExt;
    // SQLite keeps the `-wal` and `-journal` beside the file a symlink names.
    let real = std::fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf());
    let ids: Vec<(u64, u64)> = ["", "-wal", "-journal"]
        .iter()
        .filter_map(|side| std::fs::metadata(sidecar(&real, side)).ok())
        .map(|m| (m.dev(), m.ino()))
        .collect();
    let mut found = Holders::default();
    if ids.is_empty() {
        return found;
    }
    let blind = !sees_every_process();
    if blind {
        found.hidden = std::fs::read_to_string("/proc/self/mountinfo")
            .ok()
            .and_then(|info| hidepid(&info))
            .map(Hidden::Hidepid);
    }
    let mut unseen = |p: &std::fs::DirEntry| {
        if !blind || !may_hold_files(&p.path()) {
            return;
        }
        if let Ok(m) = p.metadata() {
            *found.unseen.entry(m.uid()).or_default() += 1;
        }
    };
    let me = std::process::id();
    let Ok(procs) = std::fs::read_dir("/proc") else {
        found.hidden = Some(Hidden::NoProc);
        return found;
    };
    for p in procs.filter_map(Result::ok) {
        let Some(pid) = p.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
            continue;
        };
        if pid == me {
            continue;
        }
        let fds = match std::fs::read_dir(p.path().join("fd")) {
            Ok(fds) => fds,
            Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => {
                unseen(&p);
                continue;
            }
            // Gone since the listing, or no descriptors at all.
            Err(_) => continue,
        };
        // metadata follows the fd's link to the open file itself, which
        // works for a file whose every name is gone. Whether a process's
        // descriptors may be looked at is decided for the whole process:
        // once its links cannot even be read, the rest are not asked (a
        // supervisor holding hundreds of them cost a stat each). A file
        // that refuses only its own stat (a FUSE mount of another user)
        // leaves the link readable, and the process is looked at further.
        let mut open = false;
        for fd in fds.filter_map(Result::ok) {
            match std::fs::metadata(fd.path()) {
                Ok(m) if ids.contains(&(m.dev(), m.ino())) => {
                    open = true;
                    break;
                }
                Err(e)
                    if e.kind() == std::io::ErrorKind::PermissionDenied
                        && std::fs::read_link(fd.path()).is_err() =>
                {
                    unseen(&p);
                    break;
                }
                _ => {}
            }
        }
        if open {
            let comm = std::fs::read_to_string(p.path().join("comm")).unwrap_or_default();
            found.seen.push(format!("{pid} ({})", comm.trim()));
        }
    }
    found
}

/// The `hidepid=` option of the `/proc` mount, from `/proc/self/mountinfo`
/// text, when it hides other users' processes. Of mounts stacked on
/// `/proc`, the last is the one in effect.
fn hidepid(mountinfo: &str) -> Option<String> {
    let line = mountinfo
        .lines()
        .rev()
        .find(|line| line.split(' ').nth(4) == Some("/proc"))?;
    // ID PARENT MAJ:MIN ROOT MOUNTPOINT OPTIONS [TAGS] - FSTYPE SOURCE SUPER
    let (_, fs) = line.split_once(" - ")?;
    let mut fs = fs.split(' ');
    if fs.next() != Some("proc") {
        return None;
    }
    fs.nth(1)?
        .split(',')
        .find(|o| {
            o.strip_prefix("hidepid=")
                .is_some_and(|v| !matches!(v, "0" | "off"))
        })
        .map(str::to_owned)
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
        let holders = holders(path);
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

#[cfg(test)]
mod tests {
    use super::{hidepid, may_hold_files};
    use std::path::Path;

    /// What the look may not cover is only counted against it where it
    /// could hide a holder: not a process that has exited, nor a kernel
    /// thread, whose descriptors a non-root user is refused all the same.
    #[test]
    fn exited_processes_and_kernel_threads_hold_no_files() {
        assert!(may_hold_files(
            &Path::new("/proc").join(std::process::id().to_string())
        ));
        // kthreadd is PID 2 wherever the kernel's threads are in view.
        if std::fs::read_to_string("/proc/2/comm").is_ok_and(|c| c.trim() == "kthreadd") {
            assert!(!may_hold_files(Path::new("/proc/2")));
        }
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let dir = Path::new("/proc").join(child.id().to_string());
        // Not waited for: once it has exited it stays a zombie until reaped.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while may_hold_files(&dir) && std::time::Instant::now() < deadline {
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        assert!(!may_hold_files(&dir), "a zombie counted as holding files");
        child.wait().unwrap();
        assert!(
            !may_hold_files(&dir),
            "a process gone counted as holding files"
        );
    }

    /// Lines as the kernel writes them (proc_show_options): the option is
    /// a number on older kernels, a word since 5.8; `gid=` may follow.
    #[test]
    fn hidepid_is_read_from_the_proc_mount_only_when_it_hides() {
        let plain = "22 27 0:21 / /proc rw,relatime - proc proc rw\n";
        assert_eq!(hidepid(plain), None);
        let off = "22 27 0:21 / /proc rw,relatime shared:12 - proc proc rw,hidepid=0\n";
        assert_eq!(hidepid(off), None);
        let hidden = "30 1 8:1 / / rw - ext4 /dev/sda1 rw\n\
                      22 27 0:21 / /proc rw,nosuid shared:12 - proc proc rw,gid=4,hidepid=invisible\n";
        assert_eq!(hidepid(hidden).as_deref(), Some("hidepid=invisible"));
        let old = "22 27 0:21 / /proc rw - proc proc rw,hidepid=2\n";
        assert_eq!(hidepid(old).as_deref(), Some("hidepid=2"));
        // Of two mounts stacked on /proc, the last one is in effect.
        let stacked = format!("{old}23 22 0:60 / /proc rw - proc proc rw\n");
        assert_eq!(hidepid(&stacked), None);
        let stacked = format!("{plain}{old}");
        assert_eq!(hidepid(&stacked).as_deref(), Some("hidepid=2"));
        // Another proc mount (a container's, a chroot's) is not this one.
        let elsewhere = "40 27 0:50 / /srv/jail/proc rw - proc proc rw,hidepid=2\n";
        assert_eq!(hidepid(elsewhere), None);
    }
}
