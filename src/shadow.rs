//! A dry run's throwaway copy of what the plan changes. Each database the
//! plan writes is copied (read through SQLite without writing a byte of
//! it, `-shm` included) and each backup directory mirrored (hard links:
//! backups are only ever added and removed, never written in place) into a
//! temporary directory. The dry run then makes the plan's changes there for
//! real, so that what later steps and checks read is what the run will
//! read, instead of "cannot be predicted". What it shows keeps the real
//! paths; the copy is removed when the dry run ends.

use std::path::{Path, PathBuf};
use std::sync::Mutex;

use serde_json::Value as Json;

use crate::action::Call;
use crate::database;

/// The directories of this process's dry-run copies, while they exist.
static SCRATCH: Mutex<Vec<PathBuf>> = Mutex::new(Vec::new());

/// Whether `path` lies in a dry run's copy, which is removed when the dry
/// run ends: forcing it to disk protects nothing. Only a directory that
/// `Shadow::prepare` has just made (a fresh, randomly named temporary
/// directory) is ever one, so no file of the real plan can be.
pub fn is_scratch(path: &Path) -> bool {
    let dirs = SCRATCH.lock().unwrap_or_else(|e| e.into_inner());
    dirs.iter().any(|d| path.starts_with(d))
}

/// Forces a file (or a directory's entries) to disk, unless it lies in a
/// dry run's copy.
pub fn sync(file: &std::fs::File, path: &Path) -> std::io::Result<()> {
    if is_scratch(path) {
        Ok(())
    } else {
        file.sync_all()
    }
}

pub struct Shadow {
    dir: tempfile::TempDir,
    /// Each target as the plan names it, and its stand-in.
    roots: Vec<(PathBuf, PathBuf)>,
    /// Files the dry run made (a backup, a pre-restore backup), as the
    /// plan would name them: their names hold the moment they were made.
    made: std::cell::RefCell<std::collections::BTreeSet<String>>,
}

impl Shadow {
    /// Copies of `targets` (files or directories; one that does not exist
    /// yet stands in as a path that does not exist either). A target that
    /// cannot be copied is left out: changes to it are only described.
    pub fn prepare(targets: &[PathBuf]) -> Option<Shadow> {
        let dir = tempfile::Builder::new()
            .prefix("runbook-dry-run-")
            .tempdir()
            .ok()?;
        std::fs::create_dir(dir.path().join("run")).ok()?;
        SCRATCH
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(dir.path().to_path_buf());
        let mut roots = Vec::new();
        for (i, target) in targets.iter().enumerate() {
            let name = target
                .file_name()
                .map_or_else(|| "target".into(), |n| n.to_owned());
            let stand_in = dir.path().join(i.to_string()).join(name);
            let made = match std::fs::metadata(target) {
                Ok(m) if m.is_dir() => crate::rehearsal::mirror_dir(target, &stand_in),
                Ok(_) => copy_database(target, &stand_in),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                    stand_in.parent().map_or(Ok(()), std::fs::create_dir_all)
                }
                Err(e) => Err(e),
            };
            if made.is_ok() {
                roots.push((target.clone(), stand_in));
            }
        }
        Some(Shadow {
            dir,
            roots,
            made: std::cell::RefCell::default(),
        })
    }

    /// Where a change that writes into the run directory writes instead.
    pub fn run_dir(&self) -> PathBuf {
        self.dir.path().join("run")
    }

    /// Points every file of `call` that lies under a copied target at its
    /// copy; returns whether every one of them did.
    pub fn redirect(&self, call: &mut Call) -> bool {
        let mut all = true;
        for path in call.action_mut().files_mut() {
            match self.stand_in(path) {
                Some(p) => *path = p,
                None => all = false,
            }
        }
        all
    }

    fn stand_in(&self, path: &Path) -> Option<PathBuf> {
        self.roots.iter().find_map(|(target, stand_in)| {
            path.strip_prefix(target).ok().map(|rest| {
                if rest.as_os_str().is_empty() {
                    stand_in.clone()
                } else {
                    stand_in.join(rest)
                }
            })
        })
    }

    /// `text` with the copies' paths put back as the plan names them.
    pub fn unredirect(&self, text: &str) -> String {
        let mut out = text.to_owned();
        for (target, stand_in) in &self.roots {
            out = out.replace(
                &stand_in.display().to_string(),
                &target.display().to_string(),
            );
        }
        out.replace(&self.run_dir().display().to_string(), "<run directory>")
    }

    /// The same, in every string of a value; a path to a file the dry run
    /// made is remembered as made.
    pub fn unredirect_json(&self, value: &mut Json) {
        match value {
            Json::String(s) => {
                let named = self.unredirect(s);
                if named != *s && Path::new(s).exists() && !Path::new(&named).exists() {
                    self.made.borrow_mut().insert(named.clone());
                }
                *s = named;
            }
            Json::Array(items) => items.iter_mut().for_each(|v| self.unredirect_json(v)),
            Json::Object(map) => map.values_mut().for_each(|v| self.unredirect_json(v)),
            _ => {}
        }
    }
}

impl Drop for Shadow {
    fn drop(&mut self) {
        let mut dirs = SCRATCH.lock().unwrap_or_else(|e| e.into_inner());
        dirs.retain(|d| d != self.dir.path());
    }
}

impl Shadow {
    /// `text` with each file the dry run made named as such: the run will
    /// make its own, under another name, and that is not a change of plan.
    pub fn without_made(&self, text: &str) -> String {
        self.made.borrow().iter().fold(text.to_owned(), |t, made| {
            t.replace(made.as_str(), "<made by the run>")
        })
    }

    /// `text` with each file the dry run made marked as such, for people:
    /// it does not exist, and the run's will have another name.
    pub fn marked(&self, text: &str) -> String {
        self.made.borrow().iter().fold(text.to_owned(), |t, made| {
            t.replace(made.as_str(), &format!("{made} (made by the run)"))
        })
    }
}

/// A consistent copy of a database, read as the dry run reads: never
/// writing the file or its `-shm`. A file SQLite cannot read is copied as
/// bytes, so the dry run meets it as the run will.
fn copy_database(db: &Path, to: &Path) -> std::io::Result<()> {
    if let Some(parent) = to.parent() {
        std::fs::create_dir_all(parent)?;
    }
    let read = database::open_for_reading(db, true)
        .map_err(std::io::Error::other)
        .and_then(|src| {
            let mut dst = rusqlite::Connection::open(to).map_err(std::io::Error::other)?;
            database::unsynced_if_scratch(&dst, to);
            let backup =
                rusqlite::backup::Backup::new(&src, &mut dst).map_err(std::io::Error::other)?;
            backup
                .run_to_completion(i32::MAX, std::time::Duration::from_millis(50), None)
                .map_err(std::io::Error::other)
        });
    if read.is_err() {
        let _ = std::fs::remove_file(to);
        std::fs::copy(db, to)?;
    }
    Ok(())
}
