//! The install lock: one operator at a time on a database. Every command
//! that can change a database holds an exclusive `flock` on a lock file
//! beside the real file (`<real path>.runbook-lock`, symlinks resolved) for
//! its whole run, includes and fallbacks included. The kernel releases it
//! when the process ends, however it ends, so a kill never leaves a stale
//! lock. The file's content names the holder (user, host, pid, command, run
//! directory, start, current step) for whoever is refused.
//!
//! A lock file rather than a lock on the database itself: a restore renames
//! a new file over the database, and a lock on the old inode would not stop
//! a second operator who opens the new one.

use std::fs::{File, OpenOptions};
use std::io::{self, Read, Seek, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::event::{Event, Sink};

const SUFFIX: &str = ".runbook-lock";
/// A directory's lock file, inside it.
pub const DIR_LOCK: &str = ".runbook-lock";

/// Who holds a lock, as written in the lock file.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct Holder {
    pub user: String,
    pub host: String,
    pub pid: u32,
    pub command: String,
    pub started_at: String,
    #[serde(default)]
    pub run_dir: Option<String>,
    #[serde(default)]
    pub step: Option<String>,
}

impl Holder {
    /// This process.
    pub fn me() -> Holder {
        Holder {
            user: user(),
            host: host(),
            pid: std::process::id(),
            command: command_line(),
            started_at: crate::event::now(),
            run_dir: None,
            step: None,
        }
    }

    /// In one parenthesis: who, and how far they have got.
    pub fn brief(&self) -> String {
        format!(
            "pid {}, {}@{}, step {}",
            self.pid,
            self.user,
            self.host,
            self.step.as_deref().unwrap_or("not started")
        )
    }

    fn describe(&self) -> String {
        let mut lines = vec![format!(
            "held by {}@{}, pid {}, since {}",
            self.user, self.host, self.pid, self.started_at
        )];
        lines.push(format!("command: {}", self.command));
        if let Some(dir) = &self.run_dir {
            lines.push(format!("run directory: {dir}"));
        }
        if let Some(step) = &self.step {
            lines.push(format!("current step: {step}"));
        }
        lines.join("\n  ")
    }
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(
        "another operator holds {}\n  {}\n  help: nothing was done; let that run finish (or stop it), or pass --wait DURATION (e.g. --wait 10m) to wait for it",
        target.display(),
        holder.as_deref().map_or_else(|| "held by a process that has not said who it is".to_owned(), Holder::describe)
    )]
    Held {
        target: PathBuf,
        holder: Option<Box<Holder>>,
    },
    #[error("cannot lock {} ({}): {source}\n  help: runbook needs to create or open that file to keep a second operator out; fix its directory's permissions", target.display(), file.display())]
    Io {
        target: PathBuf,
        file: PathBuf,
        #[source]
        source: io::Error,
    },
}

/// The lock file of a database (beside its real path, so that a symlink and
/// its target share one lock) or of a directory (inside it: a command that
/// changes the directory can write there, whatever its parent allows).
pub fn file_for(target: &Path) -> PathBuf {
    if let Some(real) = std::fs::canonicalize(target).ok().filter(|p| p.is_dir()) {
        return real.join(DIR_LOCK);
    }
    let real = std::fs::canonicalize(target).unwrap_or_else(|_| {
        // Not there yet (a restore onto a missing file): its real directory.
        let absolute = std::path::absolute(target).unwrap_or_else(|_| target.to_path_buf());
        match (absolute.parent(), absolute.file_name()) {
            (Some(dir), Some(name)) => std::fs::canonicalize(dir)
                .unwrap_or_else(|_| dir.to_path_buf())
                .join(name),
            _ => absolute,
        }
    });
    crate::database::sidecar(&real, SUFFIX)
}

/// Locks held by this process, released when dropped (or when it dies).
#[derive(Default)]
pub struct Locks {
    held: Vec<(PathBuf, File)>,
    holder: Holder,
}

impl Locks {
    /// Takes the lock of every target, in one order (so two waiting runs
    /// cannot each hold what the other waits for), waiting up to `wait`.
    /// On refusal, none is kept.
    pub fn acquire(targets: &[PathBuf], wait: Option<Duration>) -> Result<Locks, Error> {
        let mut files: Vec<(PathBuf, PathBuf)> =
            targets.iter().map(|t| (file_for(t), t.clone())).collect();
        files.sort();
        files.dedup_by(|a, b| a.0 == b.0);
        let mut locks = Locks {
            held: Vec::new(),
            holder: Holder::me(),
        };
        let deadline = Instant::now() + wait.unwrap_or(Duration::ZERO);
        for (file, target) in files {
            let io = |source| Error::Io {
                target: target.clone(),
                file: file.clone(),
                source,
            };
            // Refusals whose holder let go before it could be named.
            let mut gone = 0;
            let f = loop {
                let f = match OpenOptions::new()
                    .read(true)
                    .write(true)
                    .create(true)
                    .truncate(false)
                    .open(&file)
                {
                    Ok(f) => f,
                    // No such directory: no database or backup there to keep
                    // anyone from; what the run does there fails on its own,
                    // with its own clearer error.
                    Err(e) if e.kind() == io::ErrorKind::NotFound => break None,
                    Err(e) => return Err(io(e)),
                };
                match try_exclusive(&f) {
                    // The holder before us removes the file as it lets go:
                    // a lock on a file no longer under that name is no lock.
                    Ok(true) if same_file(&f, &file) => break Some(f),
                    Ok(true) => {}
                    Ok(false) if Instant::now() < deadline => {
                        std::thread::sleep(Duration::from_millis(20));
                    }
                    Ok(false) => match read_holder(&f) {
                        // Free again by now (its holder just finished): try again.
                        None if gone < 5 => gone += 1,
                        holder => {
                            return Err(Error::Held {
                                target,
                                holder: holder.map(Box::new),
                            })
                        }
                    },
                    Err(e) => return Err(io(e)),
                }
            };
            if let Some(f) = f {
                locks.held.push((file, f));
            }
        }
        locks.write().map_err(|source| Error::Io {
            target: targets.first().cloned().unwrap_or_default(),
            file: locks.held.first().map(|h| h.0.clone()).unwrap_or_default(),
            source,
        })?;
        Ok(locks)
    }

    /// Records the run directory in the lock files.
    pub fn set_run_dir(&mut self, dir: &Path) {
        self.holder.run_dir = Some(dir.display().to_string());
        let _ = self.write();
    }

    fn write(&mut self) -> io::Result<()> {
        let text = serde_json::to_vec(&self.holder).map_err(io::Error::other)?;
        for (_, f) in &mut self.held {
            f.set_len(0)?;
            f.rewind()?;
            f.write_all(&text)?;
        }
        Ok(())
    }
}

/// Letting go leaves nothing behind: the file is removed while still
/// locked, and whoever waited on it sees it is gone and makes a new one.
/// A killed holder leaves its file, unlocked, for the next taker to reuse.
impl Drop for Locks {
    fn drop(&mut self) {
        for (path, f) in &self.held {
            if same_file(f, path) {
                let _ = std::fs::remove_file(path);
            }
        }
    }
}

/// Whether `path` still names the open file `f`.
fn same_file(f: &File, path: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    match (f.metadata(), std::fs::metadata(path)) {
        (Ok(a), Ok(b)) => a.dev() == b.dev() && a.ino() == b.ino(),
        _ => false,
    }
}

/// The lock files follow the run: the current step is what a refused
/// operator most needs to know.
impl Sink for Locks {
    fn event(
        &mut self,
        event: &Event,
        _: &std::sync::Arc<crate::summary::Summary>,
    ) -> io::Result<()> {
        if let Event::StepStarted { step, .. } = event {
            self.holder.step = Some(step.clone());
            // The lock is what matters; a holder note that could not be
            // updated does not stop the run.
            let _ = self.write();
        }
        Ok(())
    }
}

/// Whether a run holds the lock of `target` now, and who, without taking it
/// and without creating anything (a dry run or a rehearsal only looks).
pub fn holder_of(target: &Path) -> Option<Holder> {
    let f = File::open(file_for(target)).ok()?;
    lock_owner(&f)?;
    read_holder(&f)
}

/// The process holding a `flock` on `f`, from the kernel's table of locks
/// (`/proc/locks`, which names the file by device and inode): never by
/// trying the lock, which could make a real taker's attempt fail.
fn lock_owner(f: &File) -> Option<u32> {
    use std::os::unix::fs::MetadataExt;
    let meta = f.metadata().ok()?;
    let (major, minor) = (libc::major(meta.dev()), libc::minor(meta.dev()));
    let id = format!("{major:02x}:{minor:02x}:{}", meta.ino());
    let table = lock_table()?;
    table.lines().find_map(|line| {
        // `1: FLOCK  ADVISORY  WRITE 4242 fd:01:1234 0 EOF`; a waiter's
        // line has `->` after the number.
        let fields: Vec<&str> = line.split_whitespace().collect();
        match fields.as_slice() {
            [_, "FLOCK", _, _, pid, file, ..] if *file == id => pid.parse().ok(),
            _ => None,
        }
    })
}

/// `/proc/locks` in one read: read piecewise, entries that change between
/// two reads can be skipped, and a held lock go unseen.
fn lock_table() -> Option<String> {
    let mut f = File::open("/proc/locks").ok()?;
    let mut buf = vec![0u8; 1 << 20];
    let n = f.read(&mut buf).ok()?;
    buf.truncate(n);
    String::from_utf8(buf).ok()
}

/// Who holds the lock on `f`: the name its holder wrote, once the holder
/// the kernel names has written it (a taker writes just after it takes the
/// lock, over what a killed holder may have left). Without a lock, none.
fn read_holder(f: &File) -> Option<Holder> {
    let mut last = None;
    for _ in 0..25 {
        let owner = lock_owner(f)?;
        let mut text = String::new();
        let mut reader = f;
        if reader.rewind().is_ok() && reader.read_to_string(&mut text).is_ok() {
            if let Ok(h) = serde_json::from_str::<Holder>(&text) {
                if h.pid == owner {
                    return Some(h);
                }
            }
        }
        last = Some(owner);
        std::thread::sleep(Duration::from_millis(20));
    }
    last.map(|pid| Holder {
        pid,
        command: "(it has not written its name yet)".to_owned(),
        ..Holder::default()
    })
}

/// Takes an exclusive lock (`flock`) on an open file if no one else has
/// it: whether it was taken.
pub fn try_exclusive(f: &File) -> io::Result<bool> {
    match f.try_lock() {
        Ok(()) => Ok(true),
        Err(std::fs::TryLockError::WouldBlock) => Ok(false),
        Err(std::fs::TryLockError::Error(e)) => Err(e),
    }
}

/// The command line, with the values of `--var` left out: one may be a
/// secret, and the lock file is readable by whoever can see the install.
fn command_line() -> String {
    let mut out: Vec<String> = Vec::new();
    let mut value_next = false;
    for arg in std::env::args() {
        if value_next {
            let key = arg.split_once('=').map_or(arg.as_str(), |(k, _)| k);
            out.push(format!("{key}=…"));
            value_next = false;
        } else if let Some(kv) = arg.strip_prefix("--var=") {
            let key = kv.split_once('=').map_or(kv, |(k, _)| k);
            out.push(format!("--var={key}=…"));
        } else {
            value_next = arg == "--var";
            out.push(arg);
        }
    }
    out.join(" ")
}

/// The user's name from the password database, as `ps` would show it.
fn user() -> String {
    let uid = nix::unistd::Uid::current();
    match nix::unistd::User::from_uid(uid) {
        Ok(Some(user)) => user.name,
        _ => format!("uid {uid}"),
    }
}

fn host() -> String {
    nix::unistd::gethostname().map_or_else(
        |_| "unknown host".to_owned(),
        |h| h.to_string_lossy().into_owned(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_taker_is_refused_and_told_who_holds_it() {
        let dir = tempfile::tempdir().expect("tempdir");
        let db = dir.path().join("main.db");
        std::fs::write(&db, "x").expect("write");
        let mut first = Locks::acquire(std::slice::from_ref(&db), None).expect("first");
        first.set_run_dir(Path::new("/runs/r1"));
        // A second open file description: flock treats it as another taker.
        let err = Locks::acquire(std::slice::from_ref(&db), None)
            .err()
            .expect("refused");
        let Error::Held { holder, .. } = &err else {
            panic!("{err}")
        };
        let holder = holder.as_deref().cloned().expect("named");
        assert_eq!(holder.pid, std::process::id());
        assert_eq!(holder.run_dir.as_deref(), Some("/runs/r1"));
        assert_eq!(holder_of(&db).map(|h| h.pid), Some(std::process::id()));
        drop(first);
        assert!(holder_of(&db).is_none());
        Locks::acquire(&[db], None).expect("free again");
    }

    #[test]
    fn a_symlink_and_its_target_share_one_lock() {
        let dir = tempfile::tempdir().expect("tempdir");
        let real = dir.path().join("real.db");
        std::fs::write(&real, "x").expect("write");
        let link = dir.path().join("link.db");
        std::os::unix::fs::symlink(&real, &link).expect("symlink");
        assert_eq!(file_for(&link), file_for(&real));
        let _held = Locks::acquire(&[real], None).expect("first");
        assert!(Locks::acquire(&[link], None).is_err());
    }
}
