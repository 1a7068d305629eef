//! `runbook backup`: the backup actions, ad hoc, for an operator at a shell.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::json;

use crate::action::{confirm, Failure};
use crate::backup;
use crate::cli::{BackupArgs, BackupOp, WaitArg};
use crate::exit::Exit;

pub fn backup(args: &BackupArgs) -> Exit {
    match run(args) {
        Ok(()) => Exit::Success,
        Err(Problem::Locked(err)) => super::run::refused(&err),
        Err(Problem::Usage(msg)) => {
            eprintln!("error: {msg}");
            Exit::Invalid
        }
        Err(Problem::Declined(msg)) => {
            eprintln!("error: {msg}");
            Exit::Aborted
        }
        Err(Problem::Failed(msg)) => {
            eprintln!("error: {msg}");
            Exit::Failed
        }
    }
}

enum Problem {
    Usage(String),
    Locked(Box<crate::lock::Error>),
    Failed(String),
    Declined(String),
}

impl From<backup::Error> for Problem {
    fn from(e: backup::Error) -> Problem {
        Problem::Failed(e.to_string())
    }
}

/// `root/db_data/main.db` keeps its backups in `root/backups`, as the app does.
fn default_dir(db: &Path) -> PathBuf {
    let parent = db
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    if parent.file_name().is_some_and(|n| n == "db_data") {
        parent
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."))
            .join("backups")
    } else {
        parent.join("backups")
    }
}

fn ask(question: &str, force: bool) -> Result<(), Problem> {
    confirm::ask("runbook backup", question, force).map_err(|e| match e {
        Failure::Declined(m) => Problem::Declined(m),
        other => Problem::Failed(format!("{other}; pass --force to go ahead without asking")),
    })
}

fn run(args: &BackupArgs) -> Result<(), Problem> {
    match &args.op {
        BackupOp::Create {
            db,
            dir,
            label,
            counting,
            wait,
            json,
        } => {
            let dir = dir.clone().unwrap_or_else(|| default_dir(db));
            let _lock = lock(std::slice::from_ref(&dir), wait)?;
            let (path, m) = backup::create(db, &dir, label.as_deref(), &counting.counting())?;
            if *json {
                say!("{}", json!({"path": path, "manifest": m}));
            } else {
                say!("{}", path.display());
                let sum = m.checksum().map(|c| c.to_string()).unwrap_or_default();
                say!("  {sum}  {} bytes  {}", m.size, summary(&m.fingerprint));
            }
        }
        BackupOp::List {
            dir,
            db,
            app_backups,
            counting,
            json,
        } => {
            let dir = match (dir, db) {
                (Some(d), _) => d.clone(),
                (None, Some(db)) => default_dir(db),
                (None, None) => {
                    return Err(Problem::Usage(
                        "give --dir DIR, or --db PATH to use its backups directory".into(),
                    ))
                }
            };
            let entries = backup::list(&dir, &counting.counting(), app_backups.as_deref())?;
            if *json {
                // The shape of the `backup.list` action's outputs.
                let backups: Vec<serde_json::Value> =
                    entries.iter().map(backup::Entry::to_json).collect();
                say!("{}", json!({"count": backups.len(), "backups": backups}));
            } else if entries.is_empty() {
                say!("no backups in {}", dir.display());
            } else {
                for e in &entries {
                    let what = match &e.fingerprint {
                        Ok(fp) => summary(fp),
                        Err(why) => format!("unreadable: {why}"),
                    };
                    let label = e
                        .label
                        .as_deref()
                        .map(|l| format!(" [{l}]"))
                        .unwrap_or_default();
                    say!(
                        "{}  {:7} {:>12}  {}{label}  {what}",
                        e.created_at,
                        e.kind,
                        e.size,
                        e.path.display()
                    );
                }
            }
        }
        BackupOp::Verify {
            backup: file,
            counting,
            json,
        } => {
            let v = backup::verify(file, &counting.counting())?;
            if *json {
                let mut out = json!({"backup": file, "integrity": "ok"});
                if let (Some(o), serde_json::Value::Object(v)) = (out.as_object_mut(), json!(v)) {
                    o.extend(v);
                }
                say!("{out}");
            } else {
                let had_manifest = v.manifest;
                let checksum = if had_manifest {
                    format!("{} matches its manifest", v.checksum.algorithm.name())
                } else {
                    format!(
                        "no manifest to compare the {} with",
                        v.checksum.algorithm.name()
                    )
                };
                say!(
                    "ok: {} (integrity ok, {checksum}; {})",
                    file.display(),
                    summary(&v.fingerprint)
                );
                match &v.unrecorded {
                    None if had_manifest => {
                        say!("  recorded in {}", backup::manifest_path(file).display())
                    }
                    None => say!(
                        "  recorded in a new manifest, {}",
                        backup::manifest_path(file).display()
                    ),
                    Some(why) => {
                        say!("  not recorded in a manifest: {why}; a restore will check it again")
                    }
                }
            }
        }
        BackupOp::Restore {
            db,
            backup: file,
            dir,
            force,
            counting,
            wait,
            json,
        } => {
            let dir = dir.clone().unwrap_or_else(|| default_dir(db));
            let _lock = lock(&[db.clone(), dir.clone()], wait)?;
            ask(
                &format!(
                    "Replace {} with {}? (a pre-restore backup is made first)",
                    db.display(),
                    file.display()
                ),
                *force,
            )?;
            let r = backup::restore(
                db,
                file,
                &dir,
                Duration::from_secs(10),
                &counting.counting(),
            )?;
            if *json {
                say!("{}", serde_json::to_string(&r).unwrap_or_default());
            } else {
                say!("restored {} from {}", db.display(), file.display());
                say!("  checked: {}", r.checked);
                match (&r.pre_restore_backup, r.kept_by) {
                    (Some(p), Some("exchange")) => say!(
                        "  the state before is in {} (the old file itself, exchanged)",
                        p.display()
                    ),
                    (Some(p), _) => say!("  the state before is in {}", p.display()),
                    (None, _) => say!("  there was no database file before"),
                }
                say!("  now: {}", summary(&r.fingerprint));
                if let Some(why) = &r.unseen {
                    eprintln!("warning: {why}");
                }
            }
        }
        BackupOp::Delete {
            backup: file,
            force,
            wait,
            json,
        } => {
            let parent = file
                .parent()
                .filter(|p| !p.as_os_str().is_empty())
                .unwrap_or(Path::new("."));
            let _lock = lock(&[parent.to_path_buf()], wait)?;
            ask(&format!("Delete the backup {}?", file.display()), *force)?;
            backup::delete(file)?;
            if *json {
                say!("{}", json!({"deleted": file}));
            } else {
                say!("deleted {}", file.display());
            }
        }
    }
    Ok(())
}

/// The install lock for what this command changes, held until it returns.
fn lock(targets: &[PathBuf], wait: &WaitArg) -> Result<crate::lock::Locks, Problem> {
    crate::lock::Locks::acquire(targets, wait.wait).map_err(|e| Problem::Locked(Box::new(e)))
}

/// `orders 80, users 120; markers: 0042_add_email`: each table counted,
/// in the terms the fingerprint was read in.
fn summary(fp: &crate::database::Fingerprint) -> String {
    let counts: Vec<String> = fp.counts.iter().map(|(t, n)| format!("{t} {n}")).collect();
    let mut s = if counts.is_empty() {
        "no tables counted".to_owned()
    } else {
        counts.join(", ")
    };
    if !fp.markers.is_empty() {
        s.push_str(&format!("; markers: {}", fp.markers.join(", ")));
    }
    s
}
