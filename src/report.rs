//! The incident report: the run's timeline rendered from its events alone,
//! as Markdown (`report.md`) or as data (`runbook report --format json`),
//! so it can be rebuilt from the journal at any time.

use std::fmt::Write as _;
use std::io;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use serde_json::{json, Map, Value as Json};

use crate::event::{Event, RunStatus, Sink, Status};

pub const FILE_NAME: &str = "report.md";

/// Collects a run's events and writes the report when the run ends.
pub struct Report {
    path: PathBuf,
    events: Vec<Event>,
    /// When report.md was last written.
    written: Option<Instant>,
}

impl Report {
    /// The report at `path`; `earlier` are the events of the run it
    /// resumes, if it resumes one.
    pub fn new(path: PathBuf, earlier: Vec<Event>) -> Report {
        Report {
            path,
            events: earlier,
            written: None,
        }
    }
}

impl Sink for Report {
    fn event(&mut self, event: &Event) -> io::Result<()> {
        self.events.push(event.clone());
        // Kept current as the run goes, so that a run that dies still leaves
        // its timeline, and always complete when the `always` steps start
        // (the outcome e-mail attaches it). Rewriting it after every step of
        // a long playbook would cost time quadratic in its length, so in
        // between it is rewritten at most twice a second.
        let due = match event {
            Event::AlwaysStarted { .. } => true,
            Event::StepFinished { .. } => self
                .written
                .is_none_or(|at| at.elapsed() >= Duration::from_millis(500)),
            _ => false,
        };
        if due {
            write_atomically(&self.path, render(&self.events).as_bytes())?;
            self.written = Some(Instant::now());
        }
        Ok(())
    }

    fn finish(&mut self) -> io::Result<()> {
        write_atomically(&self.path, render(&self.events).as_bytes())
    }
}

/// Writes through a temporary file and a rename, so a reader never sees half a report.
/// A write that fails (a full disk) leaves no temporary file behind.
pub fn write_atomically(path: &std::path::Path, bytes: &[u8]) -> io::Result<()> {
    use std::io::Write as _;
    let tmp = path.with_extension("tmp");
    let written = std::fs::File::create(&tmp).and_then(|mut f| {
        f.write_all(bytes)?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)
    });
    if written.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    written
}

pub fn render(events: &[Event]) -> String {
    let mut out = String::new();
    let mut timeline = String::new();
    let mut details = String::new();
    let mut last_end = None;
    for e in events {
        match e {
            Event::RunStarted {
                at,
                playbook,
                file,
                dry_run,
                rehearsal,
                fail,
                run_dir,
                vars,
                deadline,
                deadline_at,
                resumed,
                ..
            } => {
                if *resumed {
                    let _ = writeln!(
                        timeline,
                        "| {} | | **resumed** (`runbook resume`) | | |",
                        time_of(at)
                    );
                    continue;
                }
                let _ = writeln!(out, "# Run of `{playbook}`\n");
                let _ = writeln!(out, "- Playbook: `{file}`");
                let _ = writeln!(out, "- Started: {at}");
                if *dry_run {
                    let _ = writeln!(out, "- Dry run: nothing was changed");
                }
                if let (Some(d), Some(at)) = (deadline, deadline_at) {
                    let _ = writeln!(out, "- Deadline: {d}, by {at}");
                }
                if *rehearsal {
                    let _ = writeln!(
                        out,
                        "- Rehearsal: on copies of the databases; the live ones were not touched"
                    );
                }
                if !fail.is_empty() {
                    let _ = writeln!(
                        out,
                        "- Failed on purpose: {}",
                        fail.iter()
                            .map(|f| format!("`{f}`"))
                            .collect::<Vec<_>>()
                            .join(", ")
                    );
                }
                if let Some(dir) = run_dir {
                    let _ = writeln!(out, "- Run directory: `{dir}`");
                }
                if !vars.is_empty() {
                    let _ = writeln!(out, "- Variables:");
                    for (k, v) in vars {
                        let _ = writeln!(out, "  - `{k}` = `{}`", scalar(v));
                    }
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
                let mut outcome = match (status, recovered_by) {
                    (Status::Recovered, Some(by)) => format!("recovered by `{by}`"),
                    _ => status.as_str().to_owned(),
                };
                if *deadline_missed {
                    outcome.push_str(" (its deadline passed)");
                }
                let _ = writeln!(
                    timeline,
                    "| {} | `{step}` | {} | {outcome} | {} |",
                    time_of(at),
                    cell(name),
                    seconds(*duration_ms)
                );
                if detail.is_some() || !outputs.is_empty() {
                    let _ = writeln!(details, "### `{step}` — {outcome}\n");
                    if let Some(d) = detail {
                        let _ = writeln!(details, "{}\n", quote(d));
                    }
                    if !outputs.is_empty() {
                        let pretty = serde_json::to_string_pretty(outputs).unwrap_or_default();
                        let _ = writeln!(details, "```json\n{pretty}\n```\n");
                    }
                }
            }
            Event::CheckFinished {
                at,
                step,
                phase,
                check,
                passed,
                detail,
            } => {
                let mark = if *passed { "passed" } else { "not passed" };
                let _ = writeln!(
                    timeline,
                    "| {} | `{step}` | {} `{}` | {mark} | |",
                    time_of(at),
                    phase.key(),
                    cell(check)
                );
                if let Some(d) = detail.as_ref().filter(|_| !passed) {
                    let _ = writeln!(
                        details,
                        "### `{step}` {} `{}` — not passed\n\n{}\n",
                        phase.key(),
                        check,
                        quote(d)
                    );
                }
            }
            Event::AttemptFailed {
                at,
                step,
                attempt,
                of,
                error,
                ..
            } => {
                let _ = writeln!(
                    timeline,
                    "| {} | `{step}` | attempt {attempt} of {of} | failed: {} | |",
                    time_of(at),
                    cell(error)
                );
            }
            Event::FallbackStarted {
                at,
                step,
                after,
                error,
                fallback,
            } => {
                let after = if after.is_empty() { step } else { after };
                let _ = writeln!(
                    timeline,
                    "| {} | `{step}` | fallback to `{fallback}` | after `{after}` failed: {} | |",
                    time_of(at),
                    cell(error)
                );
            }
            Event::RunFinished {
                at,
                status,
                failed_step,
                ..
            } => {
                // A resumed run ends more than once; the header tells the last end.
                let at_step = failed_step
                    .as_deref()
                    .map(|s| format!(" at `{s}`"))
                    .unwrap_or_default();
                let _ = writeln!(
                    timeline,
                    "| {} | | run ended: {}{at_step} | | |",
                    time_of(at),
                    status.as_str()
                );
                last_end = Some(e);
            }
            Event::AlwaysStarted { at, status } => {
                let _ = writeln!(
                    timeline,
                    "| {} | | steps over ({}); the always steps run | | |",
                    time_of(at),
                    status.as_str()
                );
            }
            Event::StepStarted { .. } => {}
        }
    }
    match last_end {
        Some(Event::RunFinished {
            at,
            status,
            duration_ms,
            failed_step,
            error,
            deadline_met,
            fingerprint,
            warnings,
            facts,
        }) => {
            let _ = writeln!(out, "- Finished: {at}");
            let _ = writeln!(out, "- Duration: {}", seconds(*duration_ms));
            let _ = write!(out, "- Outcome: **{}**", status.as_str());
            if let (Some(step), true) = (failed_step, *status != RunStatus::Succeeded) {
                let _ = write!(out, " at step `{step}`");
            }
            let _ = writeln!(out);
            if let Some(e) = error {
                let _ = writeln!(out, "- Error: {}", quote_inline(e));
            }
            for w in warnings {
                let _ = writeln!(out, "- Warning: {}", quote_inline(w));
            }
            for (name, value) in facts {
                let value = match value {
                    Json::Null => "not established".to_owned(),
                    Json::String(s) => s.clone(),
                    other => other.to_string(),
                };
                let _ = writeln!(out, "- Fact `{name}`: {}", quote_inline(&value));
            }
            if let Some(met) = deadline_met {
                let _ = writeln!(
                    out,
                    "- Deadline: **{}**",
                    if *met { "met" } else { "missed" }
                );
            }
            if let Some(fp) = fingerprint {
                let _ = writeln!(out, "- Plan fingerprint: `{fp}`");
            }
        }
        _ => {
            let _ = writeln!(
                out,
                "- Outcome: **not finished** (written while the run was going on, or it was stopped before its end)"
            );
        }
    }
    let _ = writeln!(out, "\n## Timeline (UTC)\n");
    let _ = writeln!(out, "| time | step | what | outcome | duration |");
    let _ = writeln!(out, "|---|---|---|---|---|");
    out.push_str(&timeline);
    if !details.is_empty() {
        let _ = writeln!(out, "\n## Details\n");
        out.push_str(&details);
    }
    out
}

fn time_of(at: &str) -> &str {
    at.split_once('T')
        .map_or(at, |(_, t)| t.trim_end_matches('Z'))
}

fn seconds(ms: u64) -> String {
    format!("{:.1}s", ms as f64 / 1000.0)
}

fn cell(s: &str) -> String {
    s.replace('|', "\\|").replace('\n', " ")
}

fn scalar(v: &Json) -> String {
    match v {
        Json::String(s) => s.clone(),
        other => other.to_string(),
    }
}

fn quote(s: &str) -> String {
    s.lines()
        .map(|l| format!("> {l}"))
        .collect::<Vec<_>>()
        .join("\n")
}

fn quote_inline(s: &str) -> String {
    format!("`{}`", s.replace('`', "'"))
}

/// The report as data: the outcome, each step's last word, the fallbacks
/// that rescued steps, the deadline and the evidence (every step's outputs).
pub fn summary(events: &[Event]) -> Json {
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
                warnings,
                facts,
                ..
            } => {
                out.insert("warnings".into(), warnings.clone().into());
                out.insert("facts".into(), Json::Object(facts.clone()));
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_journal_that_stops_early_renders_as_not_finished() {
        let events = vec![Event::RunStarted {
            format: crate::event::FORMAT,
            at: "2026-11-23T03:00:00.000Z".into(),
            playbook: "emergency".into(),
            file: "pb.yaml".into(),
            dry_run: false,
            rehearsal: false,
            fail: Vec::new(),
            deadline: None,
            deadline_at: None,
            cli_vars: Vec::new(),
            plan: String::new(),
            resumed: false,
            run_dir: None,
            vars: serde_json::Map::new(),
        }];
        let md = render(&events);
        assert!(md.contains("**not finished**"), "{md}");
    }
}
