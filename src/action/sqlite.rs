//! `sqlite.query` and `sqlite.exec`: SQL against a database file, with
//! values always passed as bound parameters. A query opens the database
//! read-only and refuses statements that write; an exec runs all its
//! statements in one transaction, so it happens wholly or not at all.
//! Neither creates a database that does not exist: a mistyped path must
//! not become a fresh empty database.

use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::time::Duration;

use rusqlite::types::{Value as SqlValue, ValueRef};
use rusqlite::{Connection, OpenFlags};
use serde::Deserialize;
use serde_json::{Map, Value as Json};

use super::{ellipsize, Action, Context, Failure, Outputs};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Query {
    db: PathBuf,
    sql: String,
    #[serde(default)]
    params: Params,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Exec {
    db: PathBuf,
    /// One statement with `params`, or use `statements` for several.
    #[serde(default)]
    sql: Option<String>,
    #[serde(default)]
    params: Params,
    #[serde(default)]
    statements: Vec<Statement>,
    /// How long to wait for another connection's lock (default 5s).
    #[serde(default, with = "humantime_serde_opt")]
    busy_timeout: Option<Duration>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Statement {
    sql: String,
    #[serde(default)]
    params: Params,
}

/// Positional (`[a, b]` for `?1, ?2`) or named (`{name: v}` for `:name`) parameters.
#[derive(Debug, Default, Deserialize)]
#[serde(untagged)]
enum Params {
    #[default]
    None,
    Positional(Vec<Json>),
    Named(Map<String, Json>),
}

mod humantime_serde_opt {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer};

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
        let s = String::deserialize(d)?;
        humantime::parse_duration(&s)
            .map(Some)
            .map_err(|err| serde::de::Error::custom(format!("`{s}` is not a duration: {err}")))
    }
}

impl Action for Query {
    fn mutates(&self) -> bool {
        false
    }

    fn describe(&self) -> String {
        format!(
            "query {}: {}{}",
            self.db.display(),
            ellipsize(&self.sql, 100),
            self.params.describe()
        )
    }

    fn run(&self, ctx: &Context<'_>) -> Result<Outputs, Failure> {
        let conn = open_read_only(&self.db, ctx.dry_run)?;
        let _watchdog = Watchdog::start(ctx.timeout, conn.get_interrupt_handle());
        let db = &self.db;
        {
            let mut stmt = conn
                .prepare(&self.sql)
                .map_err(|e| sql_error(&self.db, &e))?;
            if !stmt.readonly() {
                return Err(Failure::failed(
                    "sqlite.query runs only statements that read; use sqlite.exec to change the database",
                ));
            }
            let names: Vec<String> = stmt.column_names().map(str::to_owned).collect();
            self.params.bind(&mut stmt)?;
            let mut rows = stmt.raw_query();
            let mut out_rows = Vec::new();
            while let Some(row) = rows
                .next()
                .map_err(|e| interrupted_or(ctx.timeout, db, &e))?
            {
                let mut obj = Map::new();
                for (i, name) in names.iter().enumerate() {
                    let v = row.get_ref(i).map_err(|e| sql_error(&self.db, &e))?;
                    obj.insert(name.clone(), to_json(v));
                }
                out_rows.push(Json::Object(obj));
            }
            let mut out = Outputs::new();
            out.insert("row_count".into(), out_rows.len().into());
            out.insert("rows".into(), Json::Array(out_rows));
            Ok(out)
        }
    }
}

impl Exec {
    fn statements(&self) -> Result<Vec<(&str, &Params)>, Failure> {
        let mut all: Vec<(&str, &Params)> = Vec::new();
        if let Some(sql) = &self.sql {
            all.push((sql, &self.params));
        } else if !matches!(self.params, Params::None) {
            return Err(Failure::failed(
                "`params` goes with `sql`; inside `statements` each statement has its own",
            ));
        }
        all.extend(self.statements.iter().map(|s| (s.sql.as_str(), &s.params)));
        if all.is_empty() {
            return Err(Failure::failed("sqlite.exec needs `sql` or `statements`"));
        }
        Ok(all)
    }
}

impl Action for Exec {
    fn mutates(&self) -> bool {
        true
    }

    fn describe(&self) -> String {
        match self.statements() {
            Ok(statements) => {
                let list: Vec<String> = statements
                    .iter()
                    .map(|(sql, params)| format!("{}{}", ellipsize(sql, 80), params.describe()))
                    .collect();
                format!(
                    "execute on {} in one transaction: {}",
                    self.db.display(),
                    list.join("; ")
                )
            }
            Err(err) => format!("<{err}>"),
        }
    }

    fn run(&self, ctx: &Context<'_>) -> Result<Outputs, Failure> {
        let statements = self.statements()?;
        let mut conn = open(&self.db, OpenFlags::SQLITE_OPEN_READ_WRITE)?;
        conn.busy_timeout(self.busy_timeout.unwrap_or(Duration::from_secs(5)))
            .map_err(|e| sql_error(&self.db, &e))?;
        let db = &self.db;
        let changes = {
            let interrupt = conn.get_interrupt_handle();
            let _guard = Watchdog::start(ctx.timeout, interrupt);
            // IMMEDIATE: take the write lock up front, so we fail before
            // changing anything rather than halfway through.
            let tx = conn
                .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
                .map_err(|e| sql_error(db, &e))?;
            let mut changes = 0usize;
            for (sql, params) in &statements {
                let mut stmt = tx.prepare(sql).map_err(|e| sql_error(db, &e))?;
                params.bind(&mut stmt)?;
                changes += stmt
                    .raw_execute()
                    .map_err(|e| interrupted_or(ctx.timeout, db, &e))?;
            }
            // Dropping `tx` on any error above rolls everything back.
            tx.commit()
                .map_err(|e| interrupted_or(ctx.timeout, db, &e))?;
            changes
        };
        let mut out = Outputs::new();
        out.insert("changes".into(), changes.into());
        out.insert("statements".into(), statements.len().into());
        Ok(out)
    }
}

impl Params {
    fn bind(&self, stmt: &mut rusqlite::Statement<'_>) -> Result<(), Failure> {
        match self {
            Params::None => Ok(()),
            Params::Positional(values) => {
                for (i, v) in values.iter().enumerate() {
                    stmt.raw_bind_parameter(i + 1, to_sql(v))
                        .map_err(|e| Failure::failed(format!("parameter {}: {e}", i + 1)))?;
                }
                Ok(())
            }
            Params::Named(values) => {
                for (name, v) in values {
                    let key = format!(":{name}");
                    let index = stmt
                        .parameter_index(&key)
                        .map_err(|e| Failure::failed(format!("parameter `{name}`: {e}")))?
                        .ok_or_else(|| {
                            Failure::failed(format!("the SQL has no parameter `:{name}`"))
                        })?;
                    stmt.raw_bind_parameter(index, to_sql(v))
                        .map_err(|e| Failure::failed(format!("parameter `{name}`: {e}")))?;
                }
                Ok(())
            }
        }
    }

    fn describe(&self) -> String {
        match self {
            Params::None => String::new(),
            Params::Positional(v) => format!(" with {}", Json::Array(v.clone())),
            Params::Named(m) => format!(" with {}", Json::Object(m.clone())),
        }
    }
}

fn open(db: &Path, mode: OpenFlags) -> Result<Connection, Failure> {
    must_exist(db)?;
    Connection::open_with_flags(db, mode | OpenFlags::SQLITE_OPEN_NO_MUTEX)
        .map_err(|e| sql_error(db, &e))
}

/// Opens a database to read. In WAL mode, even a read-only connection
/// creates `-wal` and `-shm` files; a dry run must write nothing, so when
/// there is no `-wal` file (nothing un-checkpointed to read) it opens the
/// file as immutable, which reads the main file alone and creates nothing.
fn open_read_only(db: &Path, dry_run: bool) -> Result<Connection, Failure> {
    let mut wal = db.as_os_str().to_owned();
    wal.push("-wal");
    if !(dry_run && is_wal_mode(db) && !Path::new(&wal).exists()) {
        return open(db, OpenFlags::SQLITE_OPEN_READ_ONLY);
    }
    must_exist(db)?;
    let uri = format!("file:{}?immutable=1", uri_path(db));
    Connection::open_with_flags(
        uri,
        OpenFlags::SQLITE_OPEN_READ_ONLY
            | OpenFlags::SQLITE_OPEN_URI
            | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(|e| sql_error(db, &e))
}

fn must_exist(db: &Path) -> Result<(), Failure> {
    if db.exists() {
        Ok(())
    } else {
        Err(Failure::failed(format!(
            "database {} does not exist (runbook never creates one by accident; check the path)",
            db.display()
        )))
    }
}

/// Bytes 18 and 19 of the database header are 2 in WAL mode.
fn is_wal_mode(db: &Path) -> bool {
    use std::io::Read;
    let mut header = [0u8; 20];
    std::fs::File::open(db)
        .and_then(|mut f| f.read_exact(&mut header))
        .is_ok_and(|()| header[18] == 2 && header[19] == 2)
}

/// A path as the path part of an SQLite URI: `%`, `?` and `#` escaped.
fn uri_path(db: &Path) -> String {
    db.to_string_lossy()
        .replace('%', "%25")
        .replace('?', "%3f")
        .replace('#', "%23")
}

fn sql_error(db: &Path, err: &rusqlite::Error) -> Failure {
    Failure::failed(format!("{}: {err}", db.display()))
}

fn interrupted_or(timeout: Option<Duration>, db: &Path, err: &rusqlite::Error) -> Failure {
    match (timeout, err.sqlite_error_code()) {
        (Some(limit), Some(rusqlite::ErrorCode::OperationInterrupted)) => Failure::TimedOut(limit),
        _ => sql_error(db, err),
    }
}

/// Interrupts a connection when a timeout passes, unless dropped first.
struct Watchdog {
    cancel: Option<mpsc::Sender<()>>,
}

impl Watchdog {
    fn start(timeout: Option<Duration>, handle: rusqlite::InterruptHandle) -> Watchdog {
        let Some(limit) = timeout else {
            return Watchdog { cancel: None };
        };
        let (tx, rx) = mpsc::channel::<()>();
        std::thread::spawn(move || {
            if let Err(mpsc::RecvTimeoutError::Timeout) = rx.recv_timeout(limit) {
                handle.interrupt();
            }
        });
        Watchdog { cancel: Some(tx) }
    }
}

impl Drop for Watchdog {
    fn drop(&mut self) {
        if let Some(tx) = self.cancel.take() {
            let _ = tx.send(());
        }
    }
}

fn to_sql(v: &Json) -> SqlValue {
    match v {
        Json::Null => SqlValue::Null,
        Json::Bool(b) => SqlValue::Integer(i64::from(*b)),
        Json::Number(n) => match n.as_i64() {
            Some(i) => SqlValue::Integer(i),
            None => SqlValue::Real(n.as_f64().unwrap_or(f64::NAN)),
        },
        Json::String(s) => SqlValue::Text(s.clone()),
        other => SqlValue::Text(other.to_string()),
    }
}

/// Column values as JSON; blobs become lower-case hex, so checksums compare as text.
fn to_json(v: ValueRef<'_>) -> Json {
    match v {
        ValueRef::Null => Json::Null,
        ValueRef::Integer(i) => Json::from(i),
        ValueRef::Real(x) => Json::from(x),
        ValueRef::Text(t) => Json::String(String::from_utf8_lossy(t).into_owned()),
        ValueRef::Blob(b) => Json::String(b.iter().map(|byte| format!("{byte:02x}")).collect()),
    }
}
