//! `runbook check`: analyze playbooks and report every problem; run nothing.

use serde_json::json;

use crate::analyzer;
use crate::diagnostic::Diagnostic;
use crate::exit::Exit;

pub fn check(playbooks: &[std::path::PathBuf], json: bool) -> Exit {
    let mut failed = false;
    let options = analyzer::Options::default();
    for path in playbooks {
        let result = analyzer::analyze(path, &options);
        failed |= result.is_err();
        match (result, json) {
            (Ok(plan), false) => {
                for w in &plan.warnings {
                    eprintln!("{w}");
                }
                say!("ok: {} ({} steps)", path.display(), plan.all_steps().len())
            }
            (Err(diagnostics), false) => eprintln!("{diagnostics}"),
            (Ok(plan), true) => say!(
                "{}",
                json!({"file": path, "ok": true, "steps": plan.all_steps().len(), "fingerprint": plan.fingerprint, "problems": [], "warnings": plan.warnings.iter().map(problem).collect::<Vec<_>>()})
            ),
            (Err(diagnostics), true) => say!(
                "{}",
                json!({"file": path, "ok": false, "problems": diagnostics.errors().map(problem).collect::<Vec<_>>(), "warnings": diagnostics.warnings().map(problem).collect::<Vec<_>>()})
            ),
        }
    }
    if failed {
        Exit::Invalid
    } else {
        Exit::Success
    }
}

/// A problem for tools: where it is (when known), what, and what to do.
fn problem(d: &Diagnostic) -> serde_json::Value {
    json!({
        "file": d.span.as_ref().map(|s| s.path().display().to_string()),
        "line": d.span.as_ref().map(|s| s.line),
        "column": d.span.as_ref().map(|s| s.column),
        "level": if d.warning { "warning" } else { "error" },
        "message": d.message,
        "help": d.help,
    })
}
