//! The run's one record of facts: a typed summary built from its events,
//! and from nothing else. The terminal's closing lines, `report.md`,
//! `runbook report --format json` and every e-mail are rendered from it, so
//! they cannot tell different stories. Templates read it as `run`.

use std::sync::Arc;
use std::time::Duration;

use minijinja::value::{Enumerator, Object, Value};
use serde::Serialize;
use serde_json::{Map, Value as Json};

use crate::event::{Event, Phase, RunStatus, Status};

/// Every field a template can read of `run`, the summary's own and those
/// a running step sees live; `check` rejects any other (docs/playbooks.md,
/// "The run summary").
pub const FIELDS: &[&str] = &[
    "id",
    "playbook",
    "file",
    "dir",
    "started_at",
    "resumed_at",
    "finished_at",
    "dry_run",
    "rehearsal",
    "failed_on_purpose",
    "vars",
    "status",
    "failed_step",
    "error",
    "elapsed_s",
    "elapsed",
    "duration_ms",
    "deadline",
    "deadline_at",
    "deadline_met",
    "time_left_s",
    "steps",
    "recoveries",
    "failed_checks",
    "backups_made",
    "backups_restored",
    "warnings",
    "facts",
    "fingerprint",
    "timeline",
];

/// Where the run is: going on, or over (its steps, or all of it).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum State {
    #[default]
    Running,
    Succeeded,
    Failed,
    Aborted,
    Interrupted,
    Unpredictable,
}

impl From<RunStatus> for State {
    fn from(s: RunStatus) -> State {
        match s {
            RunStatus::Succeeded => State::Succeeded,
            RunStatus::Failed => State::Failed,
            RunStatus::Aborted => State::Aborted,
            RunStatus::Interrupted => State::Interrupted,
            RunStatus::Unpredictable => State::Unpredictable,
        }
    }
}

#[derive(Clone, Debug, Default, Serialize)]
pub struct Summary {
    /// The run directory's name.
    pub id: Option<String>,
    pub playbook: String,
    pub file: String,
    pub dir: Option<String>,
    /// The first start: a resumed run keeps it, and its clock counts from it.
    pub started_at: String,
    pub resumed_at: Vec<String>,
    /// When the run last ended (a resumed run can end more than once).
    pub finished_at: Option<String>,
    pub dry_run: bool,
    pub rehearsal: bool,
    /// Steps failed on purpose (`--fail`).
    pub failed_on_purpose: Vec<String>,
    pub vars: Map<String, Json>,
    /// `running` until the steps are over; in the `always` steps, how they ended.
    pub status: State,
    pub failed_step: Option<String>,
    pub error: Option<String>,
    /// Since the first start, to the last event (to the end, once ended).
    pub elapsed_s: u64,
    /// The same, for people: `3m 12s`.
    pub elapsed: String,
    /// Once ended: from the first start to the end, to the millisecond.
    pub duration_ms: Option<u64>,
    /// The playbook's deadline (`15m`) and when it falls (UTC).
    pub deadline: Option<String>,
    pub deadline_at: Option<String>,
    /// Whether the steps ended within the deadline; none without one, or
    /// before the steps are over.
    pub deadline_met: Option<bool>,
    pub time_left_s: Option<u64>,
    /// Each step's last word, in the order the steps first finished.
    pub steps: Vec<StepResult>,
    /// Where each step is in `steps`: a resumed run finishes steps again,
    /// and finding them must not cost time growing with the playbook.
    #[serde(skip)]
    step_index: std::collections::HashMap<String, usize>,
    /// Which fallback rescued which step.
    pub recoveries: Vec<Recovery>,
    pub failed_checks: Vec<FailedCheck>,
    /// Backups the built-in actions made (`backup.create`, and the
    /// pre-restore backup `backup.restore` keeps) and restored.
    pub backups_made: Vec<BackupMade>,
    pub backups_restored: Vec<BackupRestored>,
    /// `step: why` for each step that ran but fell short.
    pub warnings: Vec<String>,
    /// The playbook's declared facts, once the steps are over.
    pub facts: Map<String, Json>,
    /// Dry run: what `--expect-plan` compares.
    pub fingerprint: Option<String>,
    /// Everything that happened, in order, for the report's table.
    pub timeline: Vec<Entry>,
}

#[derive(Clone, Debug, Serialize)]
pub struct StepResult {
    pub id: String,
    pub name: String,
    pub status: Status,
    pub action: Option<String>,
    pub finished_at: String,
    pub duration_ms: u64,
    /// Why it was skipped, failed or fell short, or what it would do (dry run).
    pub detail: Option<String>,
    pub recovered_by: Option<String>,
    pub deadline_missed: bool,
    pub outputs: Map<String, Json>,
}

#[derive(Clone, Debug, Serialize)]
pub struct Recovery {
    pub step: String,
    pub by: String,
}

#[derive(Clone, Debug, Serialize)]
pub struct FailedCheck {
    pub step: String,
    pub phase: Phase,
    pub check: String,
    pub detail: Option<String>,
}

#[derive(Clone, Debug, Serialize)]
pub struct BackupMade {
    pub step: String,
    pub path: String,
    pub label: Option<String>,
    /// `blake3:<hex>`; none for a pre-restore backup, whose checksum is in its manifest.
    pub checksum: Option<String>,
}

#[derive(Clone, Debug, Serialize)]
pub struct BackupRestored {
    pub step: String,
    pub backup: String,
}

/// One line of the timeline.
#[derive(Clone, Debug, Serialize)]
pub struct Entry {
    pub at: String,
    pub step: Option<String>,
    pub what: String,
    pub outcome: String,
    pub duration_ms: Option<u64>,
}

impl Summary {
    pub fn from_events(events: &[Event]) -> Summary {
        let mut s = Summary::default();
        for e in events {
            s.apply(e);
        }
        s
    }

    /// Takes one more event into the record.
    pub fn apply(&mut self, event: &Event) {
        match event {
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
                if *resumed && !self.started_at.is_empty() {
                    self.resumed_at.push(at.clone());
                    self.status = State::Running;
                    self.failed_step = None;
                    self.error = None;
                    self.deadline_met = None;
                    self.duration_ms = None;
                    self.finished_at = None;
                    self.timeline.push(Entry {
                        at: at.clone(),
                        step: None,
                        what: "**resumed** (`runbook resume`)".into(),
                        outcome: String::new(),
                        duration_ms: None,
                    });
                } else {
                    self.started_at = at.clone();
                    self.playbook = playbook.clone();
                    self.file = file.clone();
                    self.dry_run = *dry_run;
                    self.rehearsal = *rehearsal;
                    self.failed_on_purpose = fail.clone();
                    self.dir = run_dir.clone();
                    self.id = run_dir.as_deref().and_then(|d| {
                        std::path::Path::new(d)
                            .file_name()
                            .map(|n| n.to_string_lossy().into_owned())
                    });
                    self.vars = vars.clone();
                    self.deadline = deadline.clone();
                    self.deadline_at = deadline_at.clone();
                }
            }
            Event::StepStarted { .. } => {}
            Event::CheckFinished {
                at,
                step,
                phase,
                check,
                passed,
                detail,
            } => {
                self.timeline.push(Entry {
                    at: at.clone(),
                    step: Some(step.clone()),
                    what: format!("{} `{check}`", phase.key()),
                    outcome: if *passed { "passed" } else { "not passed" }.into(),
                    duration_ms: None,
                });
                if !passed {
                    self.failed_checks.push(FailedCheck {
                        step: step.clone(),
                        phase: *phase,
                        check: check.clone(),
                        detail: detail.clone(),
                    });
                }
            }
            Event::AttemptFailed {
                at,
                step,
                attempt,
                of,
                error,
                ..
            } => self.timeline.push(Entry {
                at: at.clone(),
                step: Some(step.clone()),
                what: format!("attempt {attempt} of {of}"),
                outcome: format!("failed: {error}"),
                duration_ms: None,
            }),
            Event::FallbackStarted {
                at,
                step,
                after,
                error,
                fallback,
            } => {
                let after = if after.is_empty() { step } else { after };
                self.timeline.push(Entry {
                    at: at.clone(),
                    step: Some(step.clone()),
                    what: format!("fallback to `{fallback}`"),
                    outcome: format!("after `{after}` failed: {error}"),
                    duration_ms: None,
                });
            }
            Event::StepFinished {
                at,
                step,
                name,
                status,
                action,
                duration_ms,
                detail,
                recovered_by,
                outputs,
                deadline_missed,
            } => {
                // A fallback that took over but fell short is a recovery all
                // the same: the step's status says it fell short.
                let mut outcome = match (status, recovered_by) {
                    (Status::Recovered, Some(by)) => format!("recovered by `{by}`"),
                    (Status::Warning, Some(by)) => format!("recovered by `{by}`, with warnings"),
                    _ => status.as_str().to_owned(),
                };
                if *deadline_missed {
                    outcome.push_str(" (its deadline passed)");
                }
                self.timeline.push(Entry {
                    at: at.clone(),
                    step: Some(step.clone()),
                    what: name.clone(),
                    outcome,
                    duration_ms: Some(*duration_ms),
                });
                // A resumed run finishes a step again: its last word counts.
                self.recoveries.retain(|r| r.step != *step);
                self.backups_made.retain(|b| b.step != *step);
                self.backups_restored.retain(|b| b.step != *step);
                if let (Status::Recovered | Status::Warning, Some(by)) = (status, recovered_by) {
                    self.recoveries.push(Recovery {
                        step: step.clone(),
                        by: by.clone(),
                    });
                }
                if matches!(status, Status::Ok | Status::Warning) {
                    self.backups(step, action.as_deref(), outputs);
                }
                let result = StepResult {
                    id: step.clone(),
                    name: name.clone(),
                    status: *status,
                    action: action.clone(),
                    finished_at: at.clone(),
                    duration_ms: *duration_ms,
                    detail: detail.clone(),
                    recovered_by: recovered_by.clone(),
                    deadline_missed: *deadline_missed,
                    outputs: outputs.clone(),
                };
                match self.step_index.get(step) {
                    Some(&i) => self.steps[i] = result,
                    None => {
                        self.step_index.insert(step.clone(), self.steps.len());
                        self.steps.push(result);
                    }
                }
            }
            Event::AlwaysStarted {
                at,
                status,
                failed_step,
                error,
                warnings,
                facts,
                deadline_met,
            } => {
                self.timeline.push(Entry {
                    at: at.clone(),
                    step: None,
                    what: format!("steps over ({}); the always steps run", status.as_str()),
                    outcome: String::new(),
                    duration_ms: None,
                });
                self.status = (*status).into();
                self.failed_step = failed_step.clone();
                self.error = error.clone();
                self.warnings = warnings.clone();
                self.facts = facts.clone();
                self.deadline_met = *deadline_met;
            }
            Event::RunFinished {
                at,
                status,
                duration_ms,
                failed_step,
                error,
                deadline_met,
                fingerprint,
                warnings,
                facts,
            } => {
                let at_step = failed_step
                    .as_deref()
                    .map(|s| format!(" at `{s}`"))
                    .unwrap_or_default();
                self.timeline.push(Entry {
                    at: at.clone(),
                    step: None,
                    what: format!("run ended: {}{at_step}", status.as_str()),
                    outcome: String::new(),
                    duration_ms: None,
                });
                self.finished_at = Some(at.clone());
                self.status = (*status).into();
                self.failed_step = failed_step.clone();
                self.error = error.clone();
                self.deadline_met = *deadline_met;
                self.fingerprint = fingerprint.clone();
                self.warnings = warnings.clone();
                self.facts = facts.clone();
                self.duration_ms = Some(*duration_ms);
                self.set_elapsed(Duration::from_millis(*duration_ms));
                return;
            }
        }
        if let Some(since) = since_start(&self.started_at, at_of(event)) {
            self.set_elapsed(since);
        }
    }

    fn set_elapsed(&mut self, elapsed: Duration) {
        self.elapsed_s = elapsed.as_secs();
        self.elapsed =
            humantime::format_duration(Duration::from_secs(elapsed.as_secs())).to_string();
        if let Some(deadline) = self
            .deadline
            .as_deref()
            .and_then(|d| humantime::parse_duration(d).ok())
        {
            self.time_left_s = Some(deadline.saturating_sub(elapsed).as_secs());
        }
    }

    /// What the built-in backup actions leave: the backups a run can point
    /// people to, whatever the playbook calls its steps.
    fn backups(&mut self, step: &str, action: Option<&str>, outputs: &Map<String, Json>) {
        let text = |key: &str| outputs.get(key).and_then(Json::as_str).map(str::to_owned);
        match action {
            Some("backup.create") => {
                if let Some(path) = text("path") {
                    self.backups_made.push(BackupMade {
                        step: step.to_owned(),
                        path,
                        label: text("label"),
                        checksum: text("checksum"),
                    });
                }
            }
            Some("backup.restore") => {
                if let Some(path) = text("pre_restore_backup") {
                    self.backups_made.push(BackupMade {
                        step: step.to_owned(),
                        path,
                        label: Some("pre-restore".into()),
                        checksum: None,
                    });
                }
                if let Some(backup) = text("backup") {
                    self.backups_restored.push(BackupRestored {
                        step: step.to_owned(),
                        backup,
                    });
                }
            }
            _ => {}
        }
    }

    /// The summary as templates read it: `run`. `live` is the run's clock
    /// while it goes on, which moves between events.
    pub fn view(self: &Arc<Self>, live: Option<Live>) -> Value {
        Value::from_object(RunView {
            summary: Arc::clone(self),
            live,
        })
    }

    /// One field, as templates see it.
    fn field(&self, key: &str) -> Option<Value> {
        use crate::template::value;
        Some(match key {
            "id" => value(&self.id),
            "playbook" => value(&self.playbook),
            "file" => value(&self.file),
            "dir" => value(&self.dir),
            "started_at" => value(&self.started_at),
            "resumed_at" => value(&self.resumed_at),
            "finished_at" => value(&self.finished_at),
            "dry_run" => value(&self.dry_run),
            "rehearsal" => value(&self.rehearsal),
            "failed_on_purpose" => value(&self.failed_on_purpose),
            "vars" => value(&self.vars),
            "status" => value(&self.status),
            "failed_step" => value(&self.failed_step),
            "error" => value(&self.error),
            "elapsed_s" => value(&self.elapsed_s),
            "elapsed" => value(&self.elapsed),
            "duration_ms" => value(&self.duration_ms),
            "deadline" => value(&self.deadline),
            "deadline_at" => value(&self.deadline_at),
            "deadline_met" => value(&self.deadline_met),
            "time_left_s" => value(&self.time_left_s),
            "steps" => value(&self.steps),
            "recoveries" => value(&self.recoveries),
            "failed_checks" => value(&self.failed_checks),
            "backups_made" => value(&self.backups_made),
            "backups_restored" => value(&self.backups_restored),
            "warnings" => value(&self.warnings),
            "facts" => Value::from_object(Facts(self.facts.clone())),
            "fingerprint" => value(&self.fingerprint),
            "timeline" => value(&self.timeline),
            _ => return None,
        })
    }
}

/// The clock of a run going on, which no event has recorded yet.
#[derive(Clone, Copy, Debug)]
pub struct Live {
    pub elapsed: Duration,
    pub deadline: Option<Duration>,
}

#[derive(Debug)]
struct RunView {
    summary: Arc<Summary>,
    live: Option<Live>,
}

impl Object for RunView {
    fn get_value(self: &Arc<Self>, key: &Value) -> Option<Value> {
        let key = key.as_str()?;
        if let Some(live) = self.live {
            let secs = live.elapsed.as_secs();
            match key {
                "elapsed_s" => return Some(secs.into()),
                "elapsed" => {
                    let text = humantime::format_duration(Duration::from_secs(secs)).to_string();
                    return Some(text.into());
                }
                "time_left_s" => {
                    return Some(crate::template::value(
                        &live
                            .deadline
                            .map(|d| d.saturating_sub(live.elapsed).as_secs()),
                    ))
                }
                _ => {}
            }
        }
        self.summary.field(key)
    }

    fn enumerate(self: &Arc<Self>) -> Enumerator {
        Enumerator::Str(FIELDS)
    }
}

/// `run.facts`: a declared fact not yet known (before the steps are over)
/// reads as none, not as an error; `check` has made sure it is declared.
#[derive(Debug)]
struct Facts(Map<String, Json>);

impl Object for Facts {
    fn get_value(self: &Arc<Self>, key: &Value) -> Option<Value> {
        let key = key.as_str()?;
        Some(
            self.0
                .get(key)
                .map_or(Value::from(()), crate::template::value),
        )
    }

    fn enumerate(self: &Arc<Self>) -> Enumerator {
        Enumerator::Values(self.0.keys().map(|k| Value::from(k.as_str())).collect())
    }
}

fn at_of(event: &Event) -> &str {
    match event {
        Event::RunStarted { at, .. }
        | Event::StepStarted { at, .. }
        | Event::CheckFinished { at, .. }
        | Event::AttemptFailed { at, .. }
        | Event::FallbackStarted { at, .. }
        | Event::StepFinished { at, .. }
        | Event::AlwaysStarted { at, .. }
        | Event::RunFinished { at, .. } => at,
    }
}

fn since_start(started: &str, at: &str) -> Option<Duration> {
    use time::format_description::well_known::Rfc3339;
    let start = time::OffsetDateTime::parse(started, &Rfc3339).ok()?;
    let at = time::OffsetDateTime::parse(at, &Rfc3339).ok()?;
    Duration::try_from(at - start).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_field_is_readable_and_listed() {
        let s = Arc::new(Summary::default());
        let Json::Object(map) = serde_json::to_value(&*s).expect("json") else {
            panic!("a summary is an object");
        };
        let keys: Vec<&str> = map.keys().map(String::as_str).collect();
        let mut listed = FIELDS.to_vec();
        listed.sort_unstable();
        let mut keys = keys;
        keys.sort_unstable();
        assert_eq!(keys, listed, "FIELDS and the summary's fields differ");
        for f in FIELDS {
            assert!(s.field(f).is_some(), "`run.{f}` cannot be read");
        }
    }
}
