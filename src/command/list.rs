//! `runbook list`: the playbooks in a directory with their descriptions.

use std::path::Path;

use crate::exit::Exit;
use crate::playbook;

pub fn list(dir: &Path) -> Exit {
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(err) => {
            eprintln!("error: cannot list {}: {err}\n  help: name a directory of playbooks: runbook list DIR", dir.display());
            return Exit::Invalid;
        }
    };
    let mut files: Vec<_> = entries
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "yaml" || x == "yml"))
        .collect();
    files.sort();
    let rows: Vec<(String, String)> = files
        .iter()
        .map(|path| {
            let name = path.display().to_string();
            let about = match playbook::load(path) {
                Ok((pb, problems)) if problems.is_empty() => pb
                    .description
                    .as_deref()
                    .and_then(|d| d.lines().next())
                    .unwrap_or("")
                    .to_owned(),
                Ok((_, d)) | Err(d) => format!(
                    "(invalid: {} problem(s); run `runbook check {name}`)",
                    d.0.len()
                ),
            };
            (name, about)
        })
        .collect();
    let width = rows.iter().map(|(n, _)| n.len()).max().unwrap_or(0);
    for (name, about) in rows {
        println!("{name:width$}  {about}");
    }
    Exit::Success
}
