//! `runbook report RUN`: the incident report, rebuilt from the journal
//! alone, as Markdown or as the run summary in JSON (`--json`). It only
//! reads: the run's report.md stays as the run wrote it.

use std::path::Path;
use std::sync::Arc;

use crate::cli::{ReportFormat, RunRef};
use crate::event::Event;
use crate::exit::Exit;
use crate::report;
use crate::summary::Summary;

pub fn report(which: &RunRef, format: ReportFormat) -> Exit {
    let (_, events) = match super::recorded_run(which) {
        Ok(run) => run,
        Err(exit) => return exit,
    };
    let summary = Arc::new(Summary::from_events(&events));
    match format {
        // A read: the run's own report.md is left as the run wrote it.
        ReportFormat::Markdown => {
            match layout(&events).and_then(|l| l.render(&summary).map_err(|e| e.to_string())) {
                Ok(md) => say!(raw: md),
                Err(err) => {
                    eprintln!("error: {err}");
                    return Exit::Failed;
                }
            }
        }
        ReportFormat::Json => match serde_json::to_string_pretty(&*summary) {
            Ok(json) => say!("{json}"),
            Err(err) => {
                eprintln!("error: {err}");
                return Exit::Failed;
            }
        },
    }
    Exit::Success
}

/// The template the run was reported with; the built-in one if the run
/// used it, or if the playbook's is gone since (said on stderr).
fn layout(events: &[Event]) -> Result<report::Layout, String> {
    let recorded = events.first().and_then(|e| match e {
        Event::RunStarted { report, .. } => report.clone(),
        _ => None,
    });
    match recorded {
        Some(path) if Path::new(&path).exists() => report::Layout::load(Some(Path::new(&path)))
            .map_err(|e| format!("the report template {path}: {}", e.message)),
        Some(path) => {
            eprintln!("note: the run's report template {path} is gone; using the built-in one");
            report::Layout::load(None).map_err(|e| e.message)
        }
        None => report::Layout::load(None).map_err(|e| e.message),
    }
}
