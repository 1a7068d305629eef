//! `runbook list`: the playbooks in a directory with their descriptions.

use std::path::Path;

use crate::exit::Exit;
use crate::playbook;

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
        .filter(|p| p.extension().is_some_and(|x| x == "yaml" || x == "yml"))
        .collect();
    files.sort();
    for path in &files {
        let file = path.display().to_string();
        let (name, description, problems) = match playbook::load(path) {
            Ok((pb, problems)) => (pb.name.map(|n| n.value), pb.description, problems.0.len()),
            Err(d) => (None, None, d.0.len()),
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
