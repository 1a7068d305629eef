//! The run directory: `<runs>/<UTC timestamp>-<playbook>/`, made fresh for
//! every run (never reused, even for two runs in the same second), holding
//! the journal, the report, the outbox and any salvage files; and finding
//! one again from what an operator types.

use std::io;
use std::path::{Path, PathBuf};

pub fn create(runs: &Path, playbook: &str) -> io::Result<PathBuf> {
    std::fs::create_dir_all(runs)?;
    let stamp = time::OffsetDateTime::now_utc()
        .format(time::macros::format_description!(
            "[year][month][day]T[hour][minute][second]Z"
        ))
        .map_err(io::Error::other)?;
    let name: String = playbook
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect();
    for n in 1..1000 {
        let dir = if n == 1 {
            runs.join(format!("{stamp}-{name}"))
        } else {
            runs.join(format!("{stamp}-{name}-{n}"))
        };
        // create_dir (not _all) fails if it exists: the directory is ours alone.
        match std::fs::create_dir(&dir) {
            Ok(()) => {
                std::fs::create_dir(dir.join("outbox"))?;
                return Ok(dir);
            }
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(e),
        }
    }
    Err(io::Error::new(
        io::ErrorKind::AlreadyExists,
        "too many runs in the same second",
    ))
}

/// The run directories under `runs` (those with a journal), oldest first:
/// their names begin with the time they started.
pub fn list(runs: &Path) -> io::Result<Vec<PathBuf>> {
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(runs)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.join(crate::journal::FILE_NAME).is_file())
        .collect();
    dirs.sort();
    Ok(dirs)
}

/// A run directory from what the operator typed: a path, a name under
/// `runs`, or `latest`.
pub fn locate(run: &str, runs: &Path) -> Result<PathBuf, String> {
    let direct = Path::new(run);
    if direct.join(crate::journal::FILE_NAME).is_file() {
        return Ok(direct.to_path_buf());
    }
    if run == "latest" {
        return list(runs)
            .map_err(|e| format!("cannot list {}: {e}", runs.display()))?
            .pop()
            .ok_or_else(|| format!("there are no runs in {}", runs.display()));
    }
    let named = runs.join(run);
    if named.join(crate::journal::FILE_NAME).is_file() {
        return Ok(named);
    }
    Err(format!(
        "no run `{run}`: neither a run directory nor a run in {} (name one of `ls {}`, or `latest`)",
        runs.display(),
        runs.display()
    ))
}
