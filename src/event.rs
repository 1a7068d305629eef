//! What happens during a run, as typed events. The executor emits them;
//! the terminal view, `--json`, the journal and the report consume them.
//! The journal is these events, one JSON object per line, so a report can
//! be rebuilt from it alone.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value as Json};

/// Version of the event format, written in `run_started`.
pub const FORMAT: u32 = 1;

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum Event {
    RunStarted {
        format: u32,
        at: String,
        playbook: String,
        file: String,
        dry_run: bool,
        /// On copies of the databases (`--rehearse`).
        #[serde(default)]
        rehearsal: bool,
        /// Steps failed on purpose (`--fail`).
        #[serde(default)]
        fail: Vec<String>,
        run_dir: Option<String>,
        vars: Map<String, Json>,
        /// The playbook's deadline (`15m`) and when it falls (UTC).
        #[serde(default)]
        deadline: Option<String>,
        #[serde(default)]
        deadline_at: Option<String>,
        /// The `--var` flags given, for `runbook resume`.
        #[serde(default)]
        cli_vars: Vec<(String, String)>,
        /// The plan's fingerprint: `resume` refuses a changed playbook.
        #[serde(default)]
        plan: String,
        /// This is `runbook resume` continuing the run.
        #[serde(default)]
        resumed: bool,
        /// The report's template (`report:`), for `runbook report`; none
        /// for the built-in one.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        report: Option<String>,
    },
    StepStarted {
        at: String,
        step: String,
        name: String,
    },
    CheckFinished {
        at: String,
        step: String,
        phase: Phase,
        check: String,
        passed: bool,
        detail: Option<String>,
    },
    AttemptFailed {
        at: String,
        step: String,
        attempt: u32,
        of: u32,
        error: String,
        retry_in_ms: u64,
    },
    FallbackStarted {
        at: String,
        step: String,
        /// What just failed: the step, or the fallback tried before this one.
        #[serde(default)]
        after: String,
        /// Why it failed.
        error: String,
        fallback: String,
    },
    StepFinished {
        at: String,
        step: String,
        name: String,
        status: Status,
        /// The action it ran (none for an include).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        action: Option<String>,
        duration_ms: u64,
        /// Why it was skipped or failed, or what it would do (dry run).
        detail: Option<String>,
        recovered_by: Option<String>,
        outputs: Map<String, Json>,
        /// The step's own `deadline` passed before it was done.
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        deadline_missed: bool,
    },
    /// The steps are over (or stopped); the `always` steps run next, and
    /// read how the steps ended from this.
    AlwaysStarted {
        at: String,
        status: RunStatus,
        #[serde(default)]
        failed_step: Option<String>,
        #[serde(default)]
        error: Option<String>,
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        warnings: Vec<String>,
        #[serde(default, skip_serializing_if = "Map::is_empty")]
        facts: Map<String, Json>,
        /// Whether the steps ended within the deadline: what the `always`
        /// steps' e-mails may state, and what `run_finished` records.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        deadline_met: Option<bool>,
    },
    RunFinished {
        at: String,
        status: RunStatus,
        duration_ms: u64,
        failed_step: Option<String>,
        error: Option<String>,
        /// Whether the run ended within the playbook's deadline.
        #[serde(default)]
        deadline_met: Option<bool>,
        /// Dry run: the fingerprint of the plan and of the state it saw,
        /// for `runbook run --expect-plan`.
        #[serde(default)]
        fingerprint: Option<String>,
        /// What ran but fell short, one `step: why` each (the steps whose
        /// own action warned, not the steps that include them).
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        warnings: Vec<String>,
        /// The facts the playbook declares, as they stood when the steps
        /// were over (`null` where one could not be evaluated).
        #[serde(default, skip_serializing_if = "Map::is_empty")]
        facts: Map<String, Json>,
    },
}

#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Phase {
    SkipIf,
    Require,
    Verify,
}

impl Phase {
    pub fn key(self) -> &'static str {
        match self {
            Phase::SkipIf => "skip_if",
            Phase::Require => "require",
            Phase::Verify => "verify",
        }
    }
}

#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    Ok,
    /// Ran, but did not achieve what its name promises (nobody to tell, a
    /// mail only written to the outbox, an optional probe that failed).
    Warning,
    Skipped,
    Failed,
    /// Failed, then a fallback succeeded in its place.
    Recovered,
    /// Dry run: would run (a mutating action, described, not executed).
    WouldRun,
    /// Dry run: a check already known to fail.
    WouldFail,
}

impl Status {
    /// Whether a step that ended so is done: a resume does not run it again.
    pub fn is_done(self) -> bool {
        matches!(
            self,
            Status::Ok | Status::Warning | Status::Skipped | Status::Recovered
        )
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Status::Ok => "ok",
            Status::Warning => "warning",
            Status::Skipped => "skipped",
            Status::Failed => "failed",
            Status::Recovered => "recovered",
            Status::WouldRun => "would run",
            Status::WouldFail => "would fail",
        }
    }
}

#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum RunStatus {
    Succeeded,
    Failed,
    /// An operator declined a manual step.
    Aborted,
    /// Ctrl-C: stopped between steps.
    Interrupted,
    /// Dry run: it cannot tell whether the run would succeed (a step whose
    /// outcome depends on what it could not do or read beforehand).
    Unpredictable,
}

impl RunStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            RunStatus::Succeeded => "succeeded",
            RunStatus::Failed => "failed",
            RunStatus::Aborted => "aborted",
            RunStatus::Interrupted => "interrupted",
            RunStatus::Unpredictable => "unpredictable",
        }
    }
}

/// Every kind of event, as `event` names it in JSON; docs/events.md
/// documents each.
pub const KINDS: &[&str] = &[
    "run_started",
    "step_started",
    "check_finished",
    "attempt_failed",
    "fallback_started",
    "step_finished",
    "always_started",
    "run_finished",
];

impl Event {
    /// Replaces every secret value by `***`, wherever in the event it appears.
    #[must_use]
    pub fn redacted(&self, secrets: &crate::secret::Secrets) -> Event {
        if secrets.is_empty() {
            return self.clone();
        }
        let Ok(mut json) = serde_json::to_value(self) else {
            return self.clone();
        };
        secrets.redact(&mut json);
        serde_json::from_value(json).unwrap_or_else(|_| self.clone())
    }
}

/// Now, in UTC, as RFC 3339 with milliseconds.
pub fn now() -> String {
    let now = time::OffsetDateTime::now_utc();
    let format = time::macros::format_description!(
        "[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:3]Z"
    );
    now.format(&format).unwrap_or_else(|_| now.to_string())
}

/// Where a recorded UTC time (`2026-11-23T15:50:00Z`, as events write
/// them) falls on this process's monotonic clock, past or future: the
/// start of a resumed run, the deadline it started with.
pub fn instant_of(at: &str) -> Option<std::time::Instant> {
    let at =
        time::OffsetDateTime::parse(at, &time::format_description::well_known::Rfc3339).ok()?;
    let from_now = at - time::OffsetDateTime::now_utc();
    let now = std::time::Instant::now();
    match std::time::Duration::try_from(from_now) {
        Ok(ahead) => now.checked_add(ahead),
        Err(_) => std::time::Duration::try_from(-from_now)
            .ok()
            .and_then(|ago| now.checked_sub(ago)),
    }
}

/// Anything that consumes events: the journal, the report, a view.
pub trait Sink {
    /// One more event, and the run's summary with it taken in: the one
    /// record of the run, kept by the executor, that a report or a view
    /// reads rather than building its own.
    fn event(
        &mut self,
        event: &Event,
        run: &std::sync::Arc<crate::summary::Summary>,
    ) -> std::io::Result<()>;

    /// Called once after the last event.
    fn finish(&mut self, run: &std::sync::Arc<crate::summary::Summary>) -> std::io::Result<()> {
        let _ = run;
        Ok(())
    }

    /// A view (the terminal, `--json`) shows the run; the others record
    /// it, and are written first, so that a view can say the record failed.
    fn is_view(&self) -> bool {
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redaction_reaches_every_string_in_an_event() {
        let mut outputs = Map::new();
        outputs.insert("stdout".into(), Json::from("token=abc123 and abc123"));
        outputs.insert("nested".into(), serde_json::json!({"list": ["abc123"]}));
        let e = Event::StepFinished {
            at: now(),
            step: "s".into(),
            name: "uses abc123".into(),
            status: Status::Ok,
            action: Some("shell".into()),
            duration_ms: 1,
            detail: Some("abc123".into()),
            recovered_by: None,
            outputs,
            deadline_missed: false,
        };
        let secrets = crate::secret::Secrets::new(vec!["abc123".into()]);
        let text = serde_json::to_string(&e.redacted(&secrets)).expect("json");
        assert!(!text.contains("abc123"), "{text}");
        assert!(text.contains("token=*** and ***"), "{text}");
    }

    #[test]
    fn events_round_trip_through_json() {
        let e = Event::RunFinished {
            at: now(),
            status: RunStatus::Aborted,
            duration_ms: 5,
            failed_step: Some("confirm".into()),
            error: None,
            deadline_met: Some(true),
            fingerprint: None,
            warnings: vec!["probe: no answer".into()],
            facts: Map::new(),
        };
        let back: Event =
            serde_json::from_str(&serde_json::to_string(&e).expect("json")).expect("parse");
        assert_eq!(back, e);
    }
}
