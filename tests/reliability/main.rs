//! The reliability suite: kill -9 at random moments, a full disk, files the
//! process may not touch, a writer that never stops, and fuzzed playbooks.
//! `cargo test --test reliability` runs the fast part (about 150 kills);
//! `RELIABILITY_SCALE=10` multiplies the trials, `PROPTEST_CASES=1000000`
//! the fuzz cases. docs/RELIABILITY.md has the results of the long runs.

#[path = "../cli/gofastcdn.rs"]
#[allow(dead_code)]
mod gofastcdn;

mod corpus;
mod faults;
mod fuzz;
mod kills;
mod operators;
mod record;
mod resume;
mod secrets;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

pub const BIN: &str = env!("CARGO_BIN_EXE_runbook");
pub const PLAYBOOKS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/playbooks");

/// How many times the default number of trials to run.
pub fn scale() -> u32 {
    std::env::var("RELIABILITY_SCALE")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1)
}

/// `runbook ARGS` in `dir`, quiet.
pub fn runbook(dir: &Path, args: &[&str]) -> Command {
    let mut cmd = Command::new(BIN);
    cmd.args(args)
        .current_dir(dir)
        .env("NO_COLOR", "1")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    cmd
}

/// `runbook backup restore` of the install's go-fast-cdn backup, unasked.
pub const RESTORE_LEGACY: [&str; 7] = [
    "backup",
    "restore",
    "--db",
    "app/db_data/main.db",
    "--backup",
    "app/backups/db_backup_20240501-120000.db",
    "--force",
];

/// The emergency rollback as an operator starts it on the install under
/// `app/` (nothing to stop, start or probe here), with `extra` arguments.
pub fn emergency(extra: &[&str]) -> Vec<String> {
    let mut v: Vec<String> = vec![
        "run".into(),
        format!("{PLAYBOOKS}/emergency_rollback.yaml"),
        "--yes".into(),
    ];
    for var in [
        "root=app",
        "reason=media broken",
        "stop_command=true",
        "start_command=true",
        "probe=off",
        "notify_to=lead@example.com",
    ] {
        v.push("--var".into());
        v.push(var.into());
    }
    v.extend(extra.iter().map(|s| (*s).to_owned()));
    v
}

/// Every row of the tables that matter, as text: two databases with the
/// same dump hold the same data.
pub fn dump(db: &Path) -> BTreeMap<String, Vec<String>> {
    let conn =
        rusqlite::Connection::open_with_flags(db, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
            .unwrap();
    let tables: Vec<String> = conn
        .prepare("SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' ORDER BY name")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    let mut out = BTreeMap::new();
    for t in tables {
        let mut stmt = conn
            .prepare(&format!("SELECT * FROM \"{t}\" ORDER BY rowid"))
            .unwrap();
        let n = stmt.column_count();
        let rows: Vec<String> = stmt
            .query_map([], |r| {
                Ok((0..n)
                    .map(|i| format!("{:?}", r.get::<_, rusqlite::types::Value>(i).unwrap()))
                    .collect::<Vec<_>>()
                    .join("|"))
            })
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        out.insert(t, rows);
    }
    out
}

#[track_caller]
pub fn assert_integrity(db: &Path) {
    let conn = rusqlite::Connection::open(db).unwrap();
    let check: String = conn
        .query_row("PRAGMA integrity_check", [], |r| r.get(0))
        .unwrap();
    assert_eq!(check, "ok", "{} failed its integrity check", db.display());
}

/// Copies a directory tree (an install) so each trial starts the same.
pub fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target: PathBuf = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_tree(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).unwrap();
        }
    }
}

/// A small deterministic random source, so a failing trial can be replayed.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed | 1)
    }

    /// A number in [0, 1).
    pub fn fraction(&mut self) -> f64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 >> 11) as f64 / (1u64 << 53) as f64
    }
}
