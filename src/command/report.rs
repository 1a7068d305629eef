//! `runbook report RUN`: the incident report, rebuilt from the journal
//! alone, as Markdown (also written back to the run's report.md) or JSON.

use std::path::{Path, PathBuf};

use serde_json::{json, Map, Value as Json};

use crate::cli::ReportFormat;
use crate::event::{Event, Status};
use crate::exit::Exit;
use crate::{journal, report};

pub fn report(run: &str, format: ReportFormat, runs: &Path) -> Exit {
    let dir = match locate(run, runs) {
        Ok(d) => d,
        Err(msg) => {
            eprintln!("error: {msg}");
            return Exit::Invalid;
        }
    };
    let events = match journal::read(&dir.join(journal::FILE_NAME)) {
        Ok(e) => e,
        Err(err) => {
            eprintln!("error: {err:#}");
            return Exit::Failed;
        }
    };
    match format {
        ReportFormat::Markdown => {
            let md = report::render(&events);
            if let Err(err) = report::write_atomically(&dir.join(report::FILE_NAME), md.as_bytes())
            {
                eprintln!(
                    "error: cannot write {}: {err}",
                    dir.join(report::FILE_NAME).display()
                );
                return Exit::Failed;
            }
            print!("{md}");
        }
        ReportFormat::Json => println!("{}", summary(&events)),
    }
    Exit::Success
}

/// A run directory from what the operator typed: a path, a name under
/// `runs`, or `latest`.
pub(crate) fn locate(run: &str, runs: &Path) -> Result<PathBuf, String> {
    let direct = Path::new(run);
    if direct.join(journal::FILE_NAME).is_file() {
        return Ok(direct.to_path_buf());
    }
    if run == "latest" {
        let mut dirs: Vec<PathBuf> = std::fs::read_dir(runs)
            .map_err(|e| format!("cannot list {}: {e}", runs.display()))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.join(journal::FILE_NAME).is_file())
            .collect();
        dirs.sort();
        return dirs
            .pop()
            .ok_or_else(|| format!("there are no runs in {}", runs.display()));
    }
    let named = runs.join(run);
    if named.join(journal::FILE_NAME).is_file() {
        return Ok(named);
    }
    Err(format!(
        "no run `{run}`: neither a run directory nor a run in {} (name one of `ls {}`, or `latest`)",
        runs.display(),
        runs.display()
    ))
}

/// The report as data: the outcome, each step's last word, the fallbacks
/// that rescued steps, the deadline and the evidence (every step's outputs).
fn summary(events: &[Event]) -> Json {
    let mut out = Map::new();
    let mut steps: Vec<Json> = Vec::new();
    let mut evidence = Map::new();
    let mut recoveries = Vec::new();
    let mut failed_checks = Vec::new();
    for e in events {
        match e {
            Event::RunStarted {
                at,
                playbook,
                file,
                dry_run,
                rehearsal,
                deadline,
                deadline_at,
                resumed,
                ..
            } => {
                if *resumed {
                    out.insert("resumed_at".into(), at.clone().into());
                } else {
                    out.insert("playbook".into(), playbook.clone().into());
                    out.insert("file".into(), file.clone().into());
                    out.insert("started_at".into(), at.clone().into());
                    out.insert("dry_run".into(), (*dry_run).into());
                    out.insert("rehearsal".into(), (*rehearsal).into());
                    out.insert("deadline".into(), deadline.clone().into());
                    out.insert("deadline_at".into(), deadline_at.clone().into());
                }
            }
            Event::StepFinished {
                at,
                step,
                name,
                status,
                duration_ms,
                detail,
                recovered_by,
                outputs,
                deadline_missed,
            } => {
                if let (Status::Recovered, Some(by)) = (status, recovered_by) {
                    recoveries.push(json!({"step": step, "by": by}));
                }
                if !outputs.is_empty() {
                    evidence.insert(step.clone(), Json::Object(outputs.clone()));
                }
                steps.push(json!({
                    "step": step, "name": name, "status": status, "finished_at": at,
                    "duration_ms": duration_ms, "detail": detail, "recovered_by": recovered_by,
                    "deadline_missed": deadline_missed,
                }));
            }
            Event::CheckFinished {
                step,
                phase,
                check,
                passed: false,
                detail,
                ..
            } => {
                failed_checks
                    .push(json!({"step": step, "phase": phase, "check": check, "detail": detail}));
            }
            Event::RunFinished {
                at,
                status,
                duration_ms,
                failed_step,
                error,
                deadline_met,
                ..
            } => {
                out.insert("finished_at".into(), at.clone().into());
                out.insert("status".into(), json!(status));
                out.insert("duration_ms".into(), (*duration_ms).into());
                out.insert("failed_step".into(), failed_step.clone().into());
                out.insert("error".into(), error.clone().into());
                out.insert("deadline_met".into(), (*deadline_met).into());
            }
            _ => {}
        }
    }
    out.entry("status").or_insert_with(|| "not finished".into());
    out.insert("recoveries".into(), recoveries.into());
    out.insert("failed_checks".into(), failed_checks.into());
    out.insert("steps".into(), steps.into());
    out.insert("evidence".into(), Json::Object(evidence));
    Json::Object(out)
}
