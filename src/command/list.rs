//! `runbook list`: the playbooks in a directory with their descriptions.

use std::path::Path;

use crate::exit::Exit;
use crate::{analyzer, playbook};

pub fn list(dir: &Path, json: bool) -> Exit {
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
        .filter(|p| crate::playbook::is_playbook_name(p))
        .collect();
    files.sort();
    for path in &files {
        let file = path.display().to_string();
        let (name, description) = match playbook::load(path) {
            Ok((pb, _)) => (pb.name.map(|n| n.value), pb.description),
            Err(_) => (None, None),
        };
        // What `check` says of it, counted the same way.
        let problems = match analyzer::analyze(path, &analyzer::Options::default()) {
            Ok(_) => 0,
            Err(d) => d.errors().count(),
        };
        if json {
            say!(
                "{}",
                serde_json::json!({"file": file, "name": name, "description": description, "valid": problems == 0, "problems": problems})
            );
        } else {
            let about = if problems == 0 {
                description
                    .as_deref()
                    .and_then(|d| d.lines().next())
                    .unwrap_or("")
                    .to_owned()
            } else {
                format!("(invalid: {problems} problem(s); run `runbook check {file}`)")
            };
            let width = files
                .iter()
                .map(|p| p.display().to_string().len())
                .max()
                .unwrap_or(0);
            say!("{file:width$}  {about}");
        }
    }
    Exit::Success
}
