//! `--rehearse`: the playbook runs for real, but on copies. Every top-level
//! variable that names an SQLite database gets a consistent snapshot in the
//! run directory; every one that names a directory of backups gets a mirror
//! (hard links where the file system allows: backups are never written in
//! place, only added and removed); every variable declared with a
//! `rehearsal:` value takes it (the app's stop and start commands become
//! `true`, e-mail stays in the outbox). The overrides are ordinary
//! `--var`s, so every included playbook sees them; a `--var` the operator
//! gave wins over all of this.

use std::path::{Path, PathBuf};

use anyhow::Context as _;
use serde_json::{Map, Value as Json};

use crate::{backup, database};

/// What a rehearsal changed, to tell the operator.
pub struct Prepared {
    pub overrides: Vec<(String, String)>,
    pub notes: Vec<String>,
}

pub fn prepare(
    vars: &Map<String, Json>,
    harmless: &[(String, String)],
    explicit: &[(String, String)],
    scratch: &Path,
) -> anyhow::Result<Prepared> {
    let given = |name: &str| explicit.iter().any(|(k, _)| k == name);
    let mut prepared = Prepared {
        overrides: Vec::new(),
        notes: Vec::new(),
    };
    // What the playbooks declare harmless in a rehearsal, wherever declared.
    for (name, stand_in) in harmless.iter().filter(|(n, _)| !given(n)) {
        prepared.overrides.push((name.clone(), stand_in.clone()));
        match vars.get(name).and_then(Json::as_str) {
            Some(value) if value != stand_in => prepared
                .notes
                .push(format!("{name}: `{stand_in}` instead of `{value}`")),
            _ => {}
        }
    }
    for (name, value) in vars {
        let Some(value) = value.as_str().filter(|v| !v.is_empty()) else {
            continue;
        };
        if given(name) || harmless.iter().any(|(n, _)| n == name) {
            continue;
        }
        let path = Path::new(value);
        let (what, stand_in) = if path.is_file() && database::check_header(path).is_ok() {
            let copy = scratch
                .join(name)
                .join(path.file_name().unwrap_or_else(|| "database.db".as_ref()));
            backup::snapshot(path, &copy)
                .with_context(|| format!("copying {} for the rehearsal", path.display()))?;
            ("a copy", copy)
        } else if path.is_dir() && holds_databases(path) {
            let mirror = scratch.join(name);
            mirror_dir(path, &mirror)
                .with_context(|| format!("mirroring {} for the rehearsal", path.display()))?;
            ("a mirror", mirror)
        } else {
            continue;
        };
        prepared.notes.push(format!(
            "{name}: {what} of {} in {}",
            path.display(),
            stand_in.display()
        ));
        prepared
            .overrides
            .push((name.clone(), stand_in.display().to_string()));
    }
    Ok(prepared)
}

fn holds_databases(dir: &Path) -> bool {
    std::fs::read_dir(dir).is_ok_and(|entries| {
        entries
            .filter_map(Result::ok)
            .any(|e| e.path().extension().is_some_and(|x| x == "db"))
    })
}

/// The regular files of `dir`, hard-linked (or copied) into `mirror`.
pub(crate) fn mirror_dir(dir: &Path, mirror: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(mirror)?;
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        // The live directory's lock belongs to it, not to the mirror.
        if !entry.file_type()?.is_file() || entry.file_name() == crate::lock::DIR_LOCK {
            continue;
        }
        let to: PathBuf = mirror.join(entry.file_name());
        if std::fs::hard_link(entry.path(), &to).is_err() {
            std::fs::copy(entry.path(), &to)?;
        }
    }
    Ok(())
}
