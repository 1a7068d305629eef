//! The run directory: `<runs>/<UTC timestamp>-<playbook>/`, made fresh for
//! every run (never reused, even for two runs in the same second), holding
//! the journal, the report, the outbox and any salvage files.

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
