//! The `sqlite.*` actions: SQL against a database file, with values always
//! passed as bound parameters, and checks of a database's state. A query
//! opens the database read-only and refuses statements that write; an exec
//! runs all its statements in one transaction, so it happens wholly or not
//! at all. None creates a database that does not exist: a mistyped path
//! must not become a fresh empty database.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::time::Duration;

use rusqlite::types::{Value as SqlValue, ValueRef};
use rusqlite::{Connection, OpenFlags};
use serde::Deserialize;
use serde_json::{Map, Value as Json};

use super::{ellipsize, Action, Context, Failure, Outputs};
use crate::{comparison, database};

#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "SqliteQuery")]
pub struct Query {
    db: PathBuf,
    sql: String,
    #[serde(default)]
    params: Params,
    /// Other database files to read, by schema name (read-only).
    #[serde(default)]
    attach: std::collections::BTreeMap<String, PathBuf>,
}

#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "SqliteExec")]
pub struct Exec {
    db: PathBuf,
    /// One statement with `params`, or use `statements` for several.
    #[serde(default)]
    sql: Option<String>,
    #[serde(default)]
    params: Params,
    #[serde(default)]
    statements: Vec<Statement>,
    /// Other database files to read from, by schema name (`old: backup.db`
    /// makes `old.orders` readable). Attached read-only.
    #[serde(default)]
    attach: std::collections::BTreeMap<String, PathBuf>,
    /// Rows to save to a JSON Lines file in the run directory, queried in
    /// the same transaction before the statements run, and on disk before
    /// it commits: what the statements are about to remove is kept.
    #[serde(default)]
    export: Option<Export>,
    /// How long to wait for another connection's lock (default 5s).
    #[serde(default, deserialize_with = "super::duration_opt::deserialize")]
    #[schemars(with = "Option<String>")]
    busy_timeout: Option<Duration>,
}

#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
struct Statement {
    sql: String,
    #[serde(default)]
    params: Params,
}

#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
struct Export {
    sql: String,
    #[serde(default)]
    params: Params,
    /// A file name inside the run directory.
    file: String,
}

/// Positional (`[a, b]` for `?1, ?2`) or named (`{name: v}` for `:name`) parameters.
#[derive(Debug, Default, Deserialize, schemars::JsonSchema)]
#[serde(untagged)]
enum Params {
    #[default]
    None,
    Positional(Vec<Json>),
    Named(Map<String, Json>),
}

/// `sqlite.quiescent`: no other process is using the database.
#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "SqliteQuiescent")]
pub struct Quiescent {
    db: PathBuf,
    /// How long to keep trying for the exclusive lock (default 5s).
    #[serde(default, deserialize_with = "super::duration_opt::deserialize")]
    #[schemars(with = "Option<String>")]
    timeout: Option<Duration>,
}

/// `sqlite.fingerprint`: tables, row counts, live markers, and optionally integrity.
#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "SqliteFingerprint")]
pub struct Fingerprint {
    db: PathBuf,
    /// Also run `PRAGMA integrity_check` (it reads the whole file).
    #[serde(default)]
    integrity: bool,
    /// What it counts and reads (docs/actions.md, "Fingerprints").
    #[serde(default)]
    fingerprint: database::Counting,
}

/// `sqlite.compare`: two queries' rows compared as sets, both ways, reading
/// each side once (what `left EXCEPT right` and `right EXCEPT left` count).
#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "SqliteCompare")]
pub struct Compare {
    db: PathBuf,
    /// A query, or `{sql, params}`.
    left: Side,
    /// A query with as many columns as `left`, or `{sql, params}`.
    right: Side,
    /// Other database files to read, by schema name (read-only).
    #[serde(default)]
    attach: std::collections::BTreeMap<String, PathBuf>,
    /// How many rows found on one side only to show, for both sides or as
    /// `{left: N, right: N}` (default 10). Showing them reads that side a
    /// second time, and only when it has such rows.
    #[serde(default)]
    samples: Samples,
}

#[derive(Debug, schemars::JsonSchema)]
#[serde(untagged)]
enum Side {
    Sql(String),
    Bound(Statement),
}

/// One of two forms, each with its own error: an untagged enum would say
/// only that neither matched.
impl<'de> Deserialize<'de> for Side {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Side, D::Error> {
        match Json::deserialize(d)? {
            Json::String(sql) => Ok(Side::Sql(sql)),
            map @ Json::Object(_) => serde_json::from_value(map)
                .map(Side::Bound)
                .map_err(serde::de::Error::custom),
            other => Err(serde::de::Error::custom(format!(
                "expected a query, or {{sql, params}}; found {}",
                super::json_kind(&other)
            ))),
        }
    }
}

impl Side {
    fn sql(&self) -> &str {
        match self {
            Side::Sql(sql) => sql,
            Side::Bound(s) => &s.sql,
        }
    }

    fn params(&self) -> &Params {
        match self {
            Side::Sql(_) => &Params::None,
            Side::Bound(s) => &s.params,
        }
    }
}

#[derive(Debug, schemars::JsonSchema)]
#[serde(untagged)]
enum Samples {
    Both(usize),
    Each(EachSide),
}

#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
struct EachSide {
    left: usize,
    right: usize,
}

impl<'de> Deserialize<'de> for Samples {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Samples, D::Error> {
        match Json::deserialize(d)? {
            map @ Json::Object(_) => serde_json::from_value(map)
                .map(Samples::Each)
                .map_err(serde::de::Error::custom),
            Json::Number(n) if n.as_u64().is_some() => {
                Ok(Samples::Both(n.as_u64().unwrap_or_default() as usize))
            }
            Json::Number(n) => Err(serde::de::Error::custom(format!(
                "samples is a number of rows, not {n}"
            ))),
            other => Err(serde::de::Error::custom(format!(
                "expected a number of rows, or {{left: N, right: N}}; found {}",
                super::json_kind(&other)
            ))),
        }
    }
}

impl Default for Samples {
    fn default() -> Samples {
        Samples::Both(10)
    }
}

impl Action for Query {
    fn files_mut(&mut self) -> Vec<&mut PathBuf> {
        db_and_attached(&mut self.db, &mut self.attach)
    }

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
        let db = &self.db;
        must_exist(db)?;
        let conn = database::open_for_reading(db, ctx.dry_run).map_err(Failure::failed)?;
        attach(&conn, &self.attach)?;
        let _watchdog = Watchdog::start(ctx.timeout, conn.get_interrupt_handle());
        let mut stmt = prepare_reading(
            &conn,
            db,
            &self.sql,
            &self.params,
            "sqlite.query runs only statements that read; use sqlite.exec to change the database",
        )?;
        let mut rows = Vec::new();
        for_each_row(
            &mut stmt,
            |e| interrupted_or(ctx.timeout, db, e),
            |row| {
                rows.push(row);
                Ok(())
            },
        )?;
        let mut out = Outputs::new();
        out.insert("row_count".into(), rows.len().into());
        out.insert("rows".into(), Json::Array(rows));
        Ok(out)
    }
}

/// Prepares a statement that must only read, with its parameters bound;
/// one that would write is refused with `refusal`.
fn prepare_reading<'c>(
    conn: &'c Connection,
    db: &Path,
    sql: &str,
    params: &Params,
    refusal: &str,
) -> Result<rusqlite::Statement<'c>, Failure> {
    let mut stmt = conn.prepare(sql).map_err(|e| sql_error(db, &e))?;
    if !stmt.readonly() {
        return Err(Failure::failed(refusal));
    }
    params.bind(&mut stmt)?;
    Ok(stmt)
}

/// Runs a bound statement, handing each row (column name → value) to `each`.
fn for_each_row(
    stmt: &mut rusqlite::Statement<'_>,
    err: impl Fn(&rusqlite::Error) -> Failure,
    mut each: impl FnMut(Json) -> Result<(), Failure>,
) -> Result<(), Failure> {
    let names = column_names(stmt);
    let mut rows = stmt.raw_query();
    while let Some(row) = rows.next().map_err(|e| err(&e))? {
        each(row_to_json(row, &names).map_err(|e| err(&e))?)?;
    }
    Ok(())
}

fn column_names(stmt: &rusqlite::Statement<'_>) -> Vec<String> {
    stmt.column_names().map(str::to_owned).collect()
}

/// A row as column name → value.
fn row_to_json(row: &rusqlite::Row<'_>, names: &[String]) -> rusqlite::Result<Json> {
    let mut obj = Map::new();
    for (i, name) in names.iter().enumerate() {
        obj.insert(name.clone(), to_json(row.get_ref(i)?));
    }
    Ok(Json::Object(obj))
}

impl Action for Compare {
    fn files_mut(&mut self) -> Vec<&mut PathBuf> {
        db_and_attached(&mut self.db, &mut self.attach)
    }

    fn mutates(&self) -> bool {
        false
    }

    fn describe(&self) -> String {
        format!(
            "compare the rows of {}{} with those of {}{}",
            ellipsize(self.left.sql(), 70),
            self.left.params().describe(),
            ellipsize(self.right.sql(), 70),
            self.right.params().describe(),
        )
    }

    fn run(&self, ctx: &Context<'_>) -> Result<Outputs, Failure> {
        let db = &self.db;
        must_exist(db)?;
        let mut conn = database::open_for_reading(db, ctx.dry_run).map_err(Failure::failed)?;
        attach(&conn, &self.attach)?;
        crate::progress::watch_sqlite(&mut conn, "comparison");
        let _watchdog = Watchdog::start(ctx.timeout, conn.get_interrupt_handle());
        let err = |e: &rusqlite::Error| interrupted_or(ctx.timeout, db, e);
        let spill =
            |e: std::io::Error| Failure::failed(format!("comparing rows of {}: {e}", db.display()));
        // One read transaction: both sides see the same state of the file.
        conn.execute_batch("BEGIN").map_err(|e| sql_error(db, &e))?;
        let prepare = |side: &Side| {
            prepare_reading(
                &conn,
                db,
                side.sql(),
                side.params(),
                "sqlite.compare runs only statements that read",
            )
        };
        let (mut left, mut right) = (prepare(&self.left)?, prepare(&self.right)?);
        let columns = left.column_count();
        if right.column_count() != columns {
            return Err(Failure::failed(format!(
                "left has {columns} columns and right {}: rows compare column by column",
                right.column_count()
            )));
        }
        let digest = |stmt: &mut rusqlite::Statement<'_>| {
            comparison::digest_rows(&mut stmt.raw_query(), columns).map_err(|e| match e {
                comparison::Error::Sql(e) => err(&e),
                comparison::Error::Spill(e) => spill(e),
            })
        };
        let (mut left_digests, mut right_digests) = (digest(&mut left)?, digest(&mut right)?);
        let c = comparison::compare(&mut left_digests, &mut right_digests).map_err(spill)?;
        let (n_left, n_right) = match self.samples {
            Samples::Both(n) => (n, n),
            Samples::Each(EachSide { left, right }) => (left, right),
        };
        let mut out = super::outputs(&c);
        out.insert(
            "same".into(),
            (c.only_left == 0 && c.only_right == 0).into(),
        );
        out.insert(
            "only_left_sample".into(),
            sample(&mut left, &c.only_left_digests, n_left, columns, err)?,
        );
        out.insert(
            "only_right_sample".into(),
            sample(&mut right, &c.only_right_digests, n_right, columns, err)?,
        );
        Ok(out)
    }
}

/// Up to `n` of a side's rows whose digests are `wanted`, in the order its
/// query gives them: the side is read again, and only if there are any.
fn sample(
    stmt: &mut rusqlite::Statement<'_>,
    wanted: &std::collections::HashSet<u128>,
    n: usize,
    columns: usize,
    err: impl Fn(&rusqlite::Error) -> Failure,
) -> Result<Json, Failure> {
    let mut rows = Vec::new();
    if n == 0 || wanted.is_empty() {
        return Ok(Json::Array(rows));
    }
    let names = column_names(stmt);
    let mut digest = comparison::RowDigest::default();
    let mut query = stmt.raw_query();
    while let Some(row) = query.next().map_err(|e| err(&e))? {
        if wanted.contains(&digest.of(row, columns).map_err(|e| err(&e))?) {
            rows.push(row_to_json(row, &names).map_err(|e| err(&e))?);
            if rows.len() == n {
                break;
            }
        }
    }
    Ok(Json::Array(rows))
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

/// The database and the files attached to it: every file an action reads.
fn db_and_attached<'a>(
    db: &'a mut PathBuf,
    attach: &'a mut std::collections::BTreeMap<String, PathBuf>,
) -> Vec<&'a mut PathBuf> {
    std::iter::once(db).chain(attach.values_mut()).collect()
}

/// Attaches other database files read-only, by schema name. ATTACH cannot
/// run inside a transaction, so this comes first.
fn attach(
    conn: &Connection,
    files: &std::collections::BTreeMap<String, PathBuf>,
) -> Result<(), Failure> {
    {
        for (schema, path) in files {
            let valid = schema
                .chars()
                .next()
                .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
                && schema
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_');
            if !valid || ["main", "temp"].contains(&schema.as_str()) {
                return Err(Failure::failed(format!(
                    "`{schema}` cannot be a schema name for attach"
                )));
            }
            must_exist(path)?;
            database::check_header(path).map_err(Failure::failed)?;
            // The schema name was checked above; the file name is bound.
            conn.execute(
                &format!("ATTACH DATABASE ?1 AS {schema}"),
                [format!("file:{}?mode=ro", database::uri_path(path))],
            )
            .map_err(|e| sql_error(path, &e))?;
        }
        Ok(())
    }
}

impl Action for Exec {
    fn invalid(&self) -> Option<String> {
        self.statements().err().map(|e| e.to_string())
    }

    fn files_mut(&mut self) -> Vec<&mut PathBuf> {
        db_and_attached(&mut self.db, &mut self.attach)
    }

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
                let mut d = format!(
                    "execute on {} in one transaction: {}",
                    self.db.display(),
                    list.join("; ")
                );
                for (schema, path) in &self.attach {
                    d.push_str(&format!("; reading {} as `{schema}`", path.display()));
                }
                if let Some(e) = &self.export {
                    d.push_str(&format!(
                        "; first saving the rows of `{}` to {}",
                        ellipsize(&e.sql, 60),
                        e.file
                    ));
                }
                d
            }
            Err(err) => format!("<{err}>"),
        }
    }

    fn run(&self, ctx: &Context<'_>) -> Result<Outputs, Failure> {
        let statements = self.statements()?;
        let db = &self.db;
        must_exist(db)?;
        let export_path = match &self.export {
            Some(e) => Some(export_path(ctx, &e.file)?),
            None => None,
        };
        let mut conn = Connection::open_with_flags(
            db,
            OpenFlags::SQLITE_OPEN_READ_WRITE
                | OpenFlags::SQLITE_OPEN_URI
                | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .map_err(|e| sql_error(db, &e))?;
        database::unsynced_if_scratch(&conn, db);
        conn.busy_timeout(self.busy_timeout.unwrap_or(Duration::from_secs(5)))
            .map_err(|e| sql_error(db, &e))?;
        // ATTACH cannot run inside a transaction.
        attach(&conn, &self.attach)?;
        crate::progress::watch_sqlite(&mut conn, "transaction");
        let mut out = Outputs::new();
        {
            let _guard = Watchdog::start(ctx.timeout, conn.get_interrupt_handle());
            // IMMEDIATE: take the write lock up front, so we fail before
            // changing anything rather than halfway through.
            let tx = conn
                .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
                .map_err(|e| sql_error(db, &e))?;
            let mut export = None;
            if let (Some(spec), Some(path)) = (&self.export, &export_path) {
                let mut file = tempfile::Builder::new()
                    .prefix(".export-")
                    .tempfile_in(path.parent().unwrap_or_else(|| Path::new(".")))
                    .map_err(|e| {
                        Failure::failed(format!("cannot create {}: {e}", path.display()))
                    })?;
                let mut stmt = tx.prepare(&spec.sql).map_err(|e| sql_error(db, &e))?;
                spec.params.bind(&mut stmt)?;
                let mut count = 0usize;
                for_each_row(
                    &mut stmt,
                    |e| interrupted_or(ctx.timeout, db, e),
                    |row| {
                        count += 1;
                        writeln!(file, "{row}").map_err(|e| {
                            Failure::failed(format!("writing {}: {e}", path.display()))
                        })
                    },
                )?;
                export = Some((file, count));
            }
            let mut changes = Vec::new();
            for (sql, params) in &statements {
                let mut stmt = tx.prepare(sql).map_err(|e| sql_error(db, &e))?;
                params.bind(&mut stmt)?;
                changes.push(
                    stmt.raw_execute()
                        .map_err(|e| interrupted_or(ctx.timeout, db, &e))?,
                );
            }
            if let (Some((file, count)), Some(path)) = (export, &export_path) {
                crate::shadow::sync(file.as_file(), path)
                    .map_err(|e| Failure::failed(format!("syncing {}: {e}", path.display())))?;
                // Replacing: the export is a reading of the database in this
                // transaction, so a repeat (a resumed run, a fallback that
                // carries back the same rows) writes what is true now.
                file.persist(path).map_err(|e| {
                    Failure::failed(format!("writing {}: {}", path.display(), e.error))
                })?;
                // The rename must be on disk before the commit that drops
                // the rows it keeps.
                if let Some(dir) = path.parent() {
                    std::fs::File::open(dir)
                        .and_then(|d| crate::shadow::sync(&d, dir))
                        .map_err(|e| Failure::failed(format!("syncing {}: {e}", dir.display())))?;
                }
                out.insert("exported".into(), count.into());
                out.insert("export_file".into(), path.display().to_string().into());
            }
            // Dropping `tx` on any error above rolls everything back.
            tx.commit()
                .map_err(|e| interrupted_or(ctx.timeout, db, &e))?;
            out.insert("changes".into(), changes.iter().sum::<usize>().into());
            out.insert("changes_by_statement".into(), changes.into());
        }
        out.insert("statements".into(), statements.len().into());
        Ok(out)
    }
}

/// Export files live in the run directory, under a plain file name.
fn export_path(ctx: &Context<'_>, file: &str) -> Result<PathBuf, Failure> {
    let name = Path::new(file);
    if name.components().count() != 1 || file.starts_with('.') {
        return Err(Failure::failed(format!(
            "export file `{file}` must be a plain file name (it goes in the run directory)"
        )));
    }
    let dir = ctx
        .run_dir
        .as_ref()
        .ok_or_else(|| Failure::failed("an export needs a run directory"))?;
    Ok(dir.join(name))
}

impl Action for Quiescent {
    fn files_mut(&mut self) -> Vec<&mut PathBuf> {
        vec![&mut self.db]
    }

    fn mutates(&self) -> bool {
        false
    }

    fn describe(&self) -> String {
        format!("check that no other process is using {}", self.db.display())
    }

    fn run(&self, ctx: &Context<'_>) -> Result<Outputs, Failure> {
        must_exist(&self.db)?;
        let unseen = database::quiescent(
            &self.db,
            self.timeout.unwrap_or(Duration::from_secs(5)),
            ctx.dry_run,
        )
        .map_err(Failure::failed)?;
        let mut out = Outputs::new();
        out.insert("quiescent".into(), unseen.is_none().into());
        if let Some(why) = unseen {
            // Seen to be unused only as far as it could look: not the promise.
            out.insert(
                super::WARNING.into(),
                format!("no process seen using it, but {why}").into(),
            );
        }
        Ok(out)
    }
}

impl Action for Fingerprint {
    fn files_mut(&mut self) -> Vec<&mut PathBuf> {
        vec![&mut self.db]
    }

    fn mutates(&self) -> bool {
        false
    }

    fn describe(&self) -> String {
        format!("read the tables and row counts of {}", self.db.display())
    }

    fn run(&self, ctx: &Context<'_>) -> Result<Outputs, Failure> {
        must_exist(&self.db)?;
        let mut conn =
            database::open_for_reading(&self.db, ctx.dry_run).map_err(Failure::failed)?;
        if self.integrity {
            crate::progress::watch_sqlite(&mut conn, "integrity check");
        }
        let _watchdog = Watchdog::start(ctx.timeout, conn.get_interrupt_handle());
        let fp = database::fingerprint_on(&conn, &self.db, &self.fingerprint)
            .map_err(Failure::failed)?;
        let mut out = super::outputs(&fp);
        if self.integrity {
            database::integrity_check_on(&conn, &self.db).map_err(Failure::failed)?;
            out.insert("integrity".into(), "ok".into());
        }
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
