//! `runbook report RUN`: the incident report, rebuilt from the journal
//! alone, as Markdown (also written back to the run's report.md) or as the
//! run summary in JSON.

use std::path::Path;
use std::sync::Arc;

use crate::cli::{ReportFormat, RunRef};
use crate::event::Event;
use crate::exit::Exit;
use crate::report;
use crate::summary::Summary;

pub fn report(which: &RunRef, format: ReportFormat) -> Exit {
    let (dir, events) = match super::recorded_run(which) {
        Ok(run) => run,
        Err(exit) => return exit,
    };
    let summary = Arc::new(Summary::from_events(&events));
    match format {
        ReportFormat::Markdown => {
            let md =
                match layout(&events).and_then(|l| l.render(&summary).map_err(|e| e.to_string())) {
                    Ok(md) => md,
                    Err(err) => {
                        eprintln!("error: {err}");
                        return Exit::Failed;
                    }
                };
            if let Err(err) = report::write_atomically(&dir.join(report::FILE_NAME), md.as_bytes())
            {
                eprintln!(
                    "error: cannot write {}: {err}",
                    dir.join(report::FILE_NAME).display()
                );
                return Exit::Failed;
            }
            say!(raw: md);
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
