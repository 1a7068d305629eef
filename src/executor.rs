//! Runs a [`Plan`]: steps in order, each with its `when`, `skip_if`,
//! `require`, confirmation, action, `verify`, retries, timeout and
//! fallbacks; then the `always` steps, whatever happened. It emits events
//! and prints nothing itself. In a dry run, read-only actions and checks run
//! for real and mutating actions are only described.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{Map, Value as Json};

use crate::action::{self, confirm, Call, Failure};
use crate::event::{self, Event, Phase, RunStatus, Sink, Status};
use crate::plan::{Body, CheckKind, Plan, PlanCheck, PlanStep};
use crate::shadow::Shadow;
use crate::summary::{Live, Summary};
use crate::template::{self, render_error, TValue};

/// Steps a run finished, by full id, as their `step_finished` said.
pub type Finished = std::collections::HashMap<String, Done>;

/// A step as an earlier run finished it.
#[derive(Clone, Debug)]
pub struct Done {
    pub status: Status,
    pub outputs: Map<String, Json>,
    pub detail: Option<String>,
    /// The full id of the fallback that rescued it.
    pub recovered_by: Option<String>,
}

#[derive(Debug, Default)]
pub struct Options {
    pub dry_run: bool,
    /// `--yes`: confirm manual steps in advance.
    pub yes: bool,
    pub run_dir: Option<PathBuf>,
    /// Steps to fail on purpose (a rehearsal's `--fail`).
    pub fail: Vec<String>,
    /// Running on copies (`--rehearse`).
    pub rehearsal: bool,
    /// The `--var` flags given, recorded for `resume`.
    pub cli_vars: Vec<(String, String)>,
    /// `resume`: steps finished in the interrupted run, by full id, with
    /// their status and outputs (none, if it was killed in its first step);
    /// `None` for a run that resumes nothing.
    pub previous: Option<Finished>,
    /// Set by Ctrl-C: stop at the next step boundary.
    pub interrupt: Option<std::sync::Arc<std::sync::atomic::AtomicBool>>,
    /// `resume`: the events of the run it continues. The incident's clock
    /// — elapsed time, the deadline — counts from its first start, and its
    /// summary goes on from theirs.
    pub earlier: Vec<Event>,
    /// How `fleet` steps reach their hosts (`--accept-new-host-keys`, `--remote-binary`).
    pub remote: crate::cli::RemoteArgs,
}

impl Options {
    fn interrupted(&self) -> bool {
        self.interrupt
            .as_ref()
            .is_some_and(|f| f.load(std::sync::atomic::Ordering::SeqCst))
    }
}

const INTERRUPTED: &str = "interrupted (Ctrl-C)";

/// How a step taken as done on resume is described; [`reason`] reads past it.
const DONE_BEFORE: &str = "done before the interruption";

/// Step records as templates see them, converted once when recorded and
/// shared with every later context rather than copied into each: a context
/// costs the same at the thousandth step as at the first.
type Records = Arc<BTreeMap<String, minijinja::Value>>;

/// How a run ended, and the first problem a sink had, if any.
pub struct Outcome {
    pub status: RunStatus,
    pub sink_error: Option<std::io::Error>,
    /// Dry run: the fingerprint of the plan and of the path it predicts.
    pub fingerprint: Option<String>,
    /// Dry run: each top-level step and what it would do, for people.
    pub path: Vec<String>,
    /// The run's record, as the views were told it.
    pub summary: Arc<Summary>,
}

pub fn execute(plan: &Plan, options: &Options, sinks: &mut [&mut dyn Sink]) -> Outcome {
    let mut ex = Executor {
        plan,
        options,
        sinks,
        vars: plan
            .scopes
            .iter()
            .map(|s| {
                s.vars
                    .iter()
                    .map(|(k, v)| (k.clone(), template::value(v)))
                    .collect()
            })
            .collect(),
        // One map each: `vec![…; n]` would share one among the scopes.
        outputs: (0..plan.scopes.len()).map(|_| Records::default()).collect(),
        finishing: false,
        summary: Arc::new(Summary::from_events(&options.earlier)),
        // A resumed run's clock counts from its first start.
        started: options
            .earlier
            .first()
            .and_then(|e| match e {
                Event::RunStarted { at, .. } => event::instant_of(at),
                _ => None,
            })
            .unwrap_or_else(Instant::now),
        sink_error: None,
        uncertain: false,
        state: sha2::Digest::new(),
        descriptions: std::collections::HashMap::new(),
        unsure_checks: false,
        warnings: Vec::new(),
        path: Vec::new(),
        facts: Map::new(),
        // What the plan changes, copied, for the dry run to change instead.
        shadow: if options.dry_run {
            Shadow::prepare(&plan.changes())
        } else {
            None
        },
        simulating: false,
        simulated: std::collections::HashSet::new(),
        unknowable: Vec::new(),
        commands_not_run: Vec::new(),
        failing_now: false,
        foreseen: None,
    };
    ex.run()
}

/// What one try of a step came to: its status, what the run does next,
/// why (or what it would do, in a dry run), and its outputs.
type Attempt = (Status, StepResult, Option<String>, Map<String, Json>);

enum StepResult {
    Done,
    /// Skipped by its `when`: it does not apply, so as a fallback it rescues nothing.
    NotApplicable,
    Failed(String),
    /// The operator said no: stop, no fallback.
    Declined(String),
    /// Ctrl-C between two steps: stop, no fallback; the `always` steps run.
    Interrupted,
}

enum CheckResult {
    Passed,
    /// Passed as far as its action could look, which was not everywhere:
    /// the action's warning says where it could not.
    PassedBut(String),
    NotPassed(String),
    /// Dry run: depends on what earlier steps will produce.
    Unknown(String),
}

struct Executor<'a, 's> {
    plan: &'a Plan,
    options: &'a Options,
    sinks: &'a mut [&'s mut dyn Sink],
    /// Per scope: its variables, as templates see them.
    vars: Vec<BTreeMap<String, minijinja::Value>>,
    /// Per scope: each finished step's record (status and outputs), by local id.
    outputs: Vec<Records>,
    /// Every step's record, by full id.
    /// Running the `always` steps, which Ctrl-C does not stop: they are
    /// what tells the team how the run ended.
    finishing: bool,
    /// The run's record so far, built from the events emitted; templates
    /// read it as `run`.
    summary: Arc<Summary>,
    started: Instant,
    sink_error: Option<std::io::Error>,
    /// Dry run: a mutating step has been described but not run, so what later
    /// steps read may differ from what the dry run sees now.
    uncertain: bool,
    /// Dry run: what the read-only steps and checks saw, hashed; with the
    /// plan's own fingerprint it makes the one `--expect-plan` compares.
    state: sha2::Sha256,
    /// Dry run: what each step that would run would do, by full id.
    descriptions: std::collections::HashMap<String, String>,
    /// Dry run: a check of the step being looked at could not be decided,
    /// or holds only on the state before the steps ahead of it run.
    unsure_checks: bool,
    /// `step: why` for each action that ran but fell short, in order.
    warnings: Vec<String>,
    /// Dry run: each top-level step and what it would do.
    path: Vec<String>,
    /// The playbook's facts, once the steps are over.
    facts: Map<String, Json>,
    /// Dry run: the copies its changes are made on.
    shadow: Option<Shadow>,
    /// Dry run: a change is being made, for real, on the copies.
    simulating: bool,
    /// Dry run: the changes made on the copies, by full id. Later steps
    /// see them as done (`ok`), as they will in the run.
    simulated: std::collections::HashSet<String>,
    /// Dry run: `step: why` for each step whose outcome it cannot know.
    unknowable: Vec<String>,
    /// Commands a dry run described rather than ran, with their argv: a
    /// later step may fail in the dry run only because they did not make a
    /// file they name.
    commands_not_run: Vec<(String, Vec<String>)>,
    /// Dry run: a check of the step being looked at fails now, on a state
    /// the steps ahead of it will change.
    failing_now: bool,
    /// Dry run: the warning the step being finished will give in the run.
    foreseen: Option<String>,
}

impl Executor<'_, '_> {
    /// Whether Ctrl-C asks to stop before the next step.
    fn stopping(&self) -> bool {
        !self.finishing && self.options.interrupted()
    }

    /// An event, redacted, taken into the run's summary and sent to every sink.
    fn emit(&mut self, event: &Event) {
        let event = event.redacted(&self.plan.secrets);
        // Contexts are dropped after use, so this updates in place.
        Arc::make_mut(&mut self.summary).apply(&event);
        self.send(&event, |_| true);
    }

    /// An event the summary has taken in, to the sinks `which` picks.
    fn send(&mut self, event: &Event, which: impl Fn(&dyn Sink) -> bool) {
        for sink in self.sinks.iter_mut() {
            if !which(&**sink) {
                continue;
            }
            if let Err(err) = sink.event(event, &self.summary) {
                self.sink_error.get_or_insert(err);
            }
        }
    }

    fn run(&mut self) -> Outcome {
        let started = self.started;
        let started_at = event::now();
        let (deadline, deadline_at) = match self.plan.deadline {
            Some(deadline) => {
                let at = time::OffsetDateTime::now_utc() - self.started.elapsed() + deadline;
                let format = time::macros::format_description!(
                    "[year]-[month]-[day]T[hour]:[minute]:[second]Z"
                );
                (
                    Some(humantime::format_duration(deadline).to_string()),
                    Some(at.format(&format).unwrap_or_default()),
                )
            }
            None => (None, None),
        };
        self.emit(&Event::RunStarted {
            format: event::FORMAT,
            at: started_at,
            playbook: self.plan.name.clone(),
            file: self.plan.file.display().to_string(),
            dry_run: self.options.dry_run,
            rehearsal: self.options.rehearsal,
            fail: self.options.fail.clone(),
            run_dir: self
                .options
                .run_dir
                .as_ref()
                .map(|d| d.display().to_string()),
            vars: self
                .plan
                .scopes
                .first()
                .map(|s| s.vars.clone())
                .unwrap_or_default(),
            cli_vars: self.options.cli_vars.clone(),
            plan: self.plan.fingerprint.clone(),
            resumed: self.options.previous.is_some(),
            // Where it really is: `runbook report` may be run from anywhere.
            report: self.plan.report.as_ref().map(|p| {
                std::fs::canonicalize(p)
                    .unwrap_or_else(|_| p.clone())
                    .display()
                    .to_string()
            }),
            deadline,
            deadline_at,
        });

        let mut status = RunStatus::Succeeded;
        let mut failed_step = None;
        let mut error = None;
        for step in &self.plan.steps {
            if self.stopping() {
                status = RunStatus::Interrupted;
                failed_step = Some(step.id.clone());
                error = Some(format!("{INTERRUPTED} before this step"));
                break;
            }
            match self.step(step) {
                StepResult::Done | StepResult::NotApplicable => {}
                StepResult::Interrupted => {
                    status = RunStatus::Interrupted;
                    failed_step = Some(step.id.clone());
                    error = Some(INTERRUPTED.to_owned());
                    break;
                }
                StepResult::Failed(err) => {
                    status = RunStatus::Failed;
                    failed_step = Some(step.id.clone());
                    error = Some(err);
                    break;
                }
                StepResult::Declined(err) => {
                    status = RunStatus::Aborted;
                    failed_step = Some(step.id.clone());
                    error = Some(err);
                    break;
                }
            }
        }
        self.establish_facts();
        // Judged once, when the steps are over: the e-mails the `always`
        // steps send and the run's record state the same answer.
        let deadline_met = self.plan.deadline.map(|d| started.elapsed() <= d);
        if !self.plan.always.is_empty() {
            self.emit(&Event::AlwaysStarted {
                at: event::now(),
                status,
                failed_step: failed_step.clone(),
                error: error.clone(),
                warnings: self.warnings.clone(),
                facts: self.facts.clone(),
                deadline_met,
            });
        }
        self.finishing = true;
        for step in &self.plan.always {
            let result = self.step(step);
            if let (StepResult::Failed(err) | StepResult::Declined(err), RunStatus::Succeeded) =
                (result, status)
            {
                status = RunStatus::Failed;
                failed_step = Some(step.id.clone());
                error = Some(err);
            }
        }
        // A failure about a file that a command the dry run did not run
        // names may be that command's work left undone (`touch app.db`,
        // then a step that opens it): no prediction either way.
        let undone = error.as_deref().and_then(|why| {
            self.commands_not_run
                .iter()
                .find(|(_, argv)| {
                    argv[1..]
                        .iter()
                        .filter(|a| a.contains('/') || a.contains('.'))
                        .any(|a| why.contains(a.as_str()))
                })
                .map(|(id, _)| id.clone())
        });
        if let (true, RunStatus::Failed, Some(command)) = (self.options.dry_run, status, undone) {
            status = RunStatus::Unpredictable;
            error = error.map(|why| {
                format!(
                    "{why}, unless `{command}` (a command, which a dry run does not run) makes it"
                )
            });
        }
        // A prediction that rests on what the dry run could not know is no
        // prediction: it says which step, and does not say "succeeded".
        if let (true, RunStatus::Succeeded, Some(first)) =
            (self.options.dry_run, status, self.unknowable.first())
        {
            status = RunStatus::Unpredictable;
            let (step, why) = first.split_once(": ").unwrap_or((first.as_str(), ""));
            failed_step = Some(step.to_owned());
            error = Some(match self.unknowable.len() {
                1 => why.to_owned(),
                n => format!("{why} (and {} more steps)", n - 1),
            });
        }
        let fingerprint = self.options.dry_run.then(|| {
            use sha2::Digest;
            let mut h = sha2::Sha256::new();
            h.update(self.plan.fingerprint.as_bytes());
            h.update(self.state.clone().finalize());
            h.finalize()
                .iter()
                .take(6)
                .map(|b| format!("{b:02x}"))
                .collect()
        });
        let mut finished = Event::RunFinished {
            at: event::now(),
            status,
            duration_ms: millis(started.elapsed()),
            failed_step,
            error,
            deadline_met,
            fingerprint: fingerprint.clone(),
            warnings: self.warnings.clone(),
            facts: self.facts.clone(),
        };
        // The record is written first; if it could not be, the views say
        // so in the run's last line rather than "run succeeded".
        finished = finished.redacted(&self.plan.secrets);
        Arc::make_mut(&mut self.summary).apply(&finished);
        self.send(&finished, |s| !s.is_view());
        for sink in self.sinks.iter_mut().filter(|s| !s.is_view()) {
            if let Err(err) = sink.finish(&self.summary) {
                self.sink_error.get_or_insert(err);
            }
        }
        if let (Some(err), Event::RunFinished { status, error, .. }) =
            (&self.sink_error, &mut finished)
        {
            if *status == RunStatus::Succeeded {
                *status = RunStatus::Failed;
                let why = format!(
                    "every step succeeded, but the run's journal or report could not be written: {err}"
                );
                *error = Some(why.clone());
                let summary = Arc::make_mut(&mut self.summary);
                summary.status = RunStatus::Failed.into();
                summary.error = Some(why);
            }
        }
        if let Event::RunFinished { status: s, .. } = &finished {
            status = *s;
        }
        self.send(&finished, |s| s.is_view());
        for sink in self.sinks.iter_mut().filter(|s| s.is_view()) {
            if let Err(err) = sink.finish(&self.summary) {
                self.sink_error.get_or_insert(err);
            }
        }
        Outcome {
            status,
            sink_error: self.sink_error.take(),
            fingerprint,
            path: std::mem::take(&mut self.path),
            summary: Arc::clone(&self.summary),
        }
    }

    /// Evaluates the playbook's facts over what the steps recorded. One
    /// that cannot be evaluated (a step it reads did not run) is none: a
    /// template states nothing for it.
    fn establish_facts(&mut self) {
        for fact in &self.plan.facts {
            let ctx = self.context(fact.scope, None);
            let value = self
                .plan
                .templates
                .eval(&fact.expression, &ctx)
                .unwrap_or(Json::Null);
            self.facts.insert(fact.name.clone(), value);
        }
    }

    /// The template context of a scope: its variables, `run`, and `steps`.
    fn context(&self, scope: usize, result: Option<&Json>) -> minijinja::Value {
        let mut ctx = self.vars[scope].clone();
        let live = Live {
            elapsed: self.started.elapsed(),
            deadline: self.plan.deadline,
        };
        ctx.insert("run".into(), self.summary.view(Some(live)));
        ctx.insert(
            "steps".into(),
            minijinja::Value::from_dyn_object(self.outputs[scope].clone()),
        );
        if let Some(r) = result {
            ctx.insert("result".into(), template::value(r));
        }
        minijinja::Value::from(ctx)
    }

    fn record(&mut self, step: &PlanStep, status: Status, extra: &Map<String, Json>) {
        let mut rec = extra.clone();
        rec.insert("status".into(), status_key(status).into());
        let rec = template::value(&rec);
        // Contexts are dropped after use, so nothing else holds these and
        // make_mut inserts in place. One still held would copy every
        // record before this one, at every step: a run quadratic in its
        // length. The tests run with this assertion on.
        debug_assert_eq!(
            Arc::strong_count(&self.outputs[step.scope]),
            1,
            "a template context still holds the records of {}",
            step.id
        );
        Arc::make_mut(&mut self.outputs[step.scope]).insert(step.local_id.clone(), rec);
    }

    /// A step and, if it fails, its fallbacks in order.
    fn step(&mut self, step: &PlanStep) -> StepResult {
        let started = Instant::now();
        self.emit(&Event::StepStarted {
            at: event::now(),
            step: step.id.clone(),
            name: step.name.clone(),
        });
        if let Some(result) = self.done_before(step, started) {
            return result;
        }
        let (status, result, detail, outputs) = self.attempt(step);
        let StepResult::Failed(err) = result else {
            self.finish(step, status, started, detail, None, &outputs);
            return result;
        };
        let mut last = err.clone();
        let mut after = step.id.clone();
        for fallback in &step.fallback {
            if self.stopping() {
                let mut outputs = outputs;
                outputs.insert("error".into(), err.clone().into());
                self.finish(step, status, started, Some(err), None, &outputs);
                return StepResult::Interrupted;
            }
            self.emit(&Event::FallbackStarted {
                at: event::now(),
                step: step.id.clone(),
                after: std::mem::replace(&mut after, fallback.id.clone()),
                error: last.clone(),
                fallback: fallback.id.clone(),
            });
            let warned = self.warnings.len();
            match self.step(fallback) {
                StepResult::Done => {
                    let mut outputs = outputs;
                    outputs.insert("recovered_by".into(), fallback.local_id.clone().into());
                    outputs.insert("error".into(), err.clone().into());
                    // A fallback that itself fell short rescued nothing whole.
                    let status = if self.options.dry_run {
                        status
                    } else if self.warnings.len() > warned {
                        Status::Warning
                    } else {
                        Status::Recovered
                    };
                    self.finish(
                        step,
                        status,
                        started,
                        Some(err),
                        Some(fallback.id.clone()),
                        &outputs,
                    );
                    return StepResult::Done;
                }
                StepResult::Failed(e) => last = e,
                StepResult::NotApplicable => {}
                stop @ (StepResult::Declined(_) | StepResult::Interrupted) => {
                    self.finish(step, Status::Failed, started, Some(err), None, &outputs);
                    return stop;
                }
            }
        }
        let mut outputs = outputs;
        outputs.insert("error".into(), err.clone().into());
        let message = if step.fallback.is_empty() {
            err.clone()
        } else {
            format!("{err}; every fallback failed too (last: {last})")
        };
        self.finish(step, status, started, Some(err), None, &outputs);
        // Failed while the operator was asking to stop (a fleet whose hosts
        // stopped, a command the same Ctrl-C ended): the run was
        // interrupted, and `resume` runs the step again.
        if self.stopping() {
            return StepResult::Interrupted;
        }
        StepResult::Failed(message)
    }

    fn finish(
        &mut self,
        step: &PlanStep,
        status: Status,
        started: Instant,
        detail: Option<String>,
        recovered_by: Option<String>,
        outputs: &Map<String, Json>,
    ) {
        let recorded = if status == Status::WouldRun && self.simulated.contains(&step.id) {
            Status::Ok
        } else {
            status
        };
        self.record(step, recorded, outputs);
        // A step rescued by a fallback that fell short: the fallback's
        // warning is the one that says why.
        let foreseen = self.foreseen.take();
        if let (Status::Warning, Body::Action { .. }, Some(why), None) =
            (status, &step.body, &detail, &recovered_by)
        {
            let why = foreseen.unwrap_or_else(|| reason(why));
            self.warnings.push(format!("{}: {why}", step.id));
        }
        if self.options.dry_run {
            self.observe(step, status, detail.as_deref());
        }
        self.emit(&Event::StepFinished {
            at: event::now(),
            step: step.id.clone(),
            name: step.name.clone(),
            status,
            action: match &step.body {
                Body::Action { action, .. } => Some(action.clone()),
                Body::Include { .. } => None,
            },
            duration_ms: millis(started.elapsed()),
            detail,
            recovered_by,
            outputs: outputs.clone(),
            deadline_missed: step.deadline.is_some_and(|d| self.started.elapsed() > d),
        });
    }

    /// `resume`: a step the interrupted run finished is not run again if its
    /// `verify` checks still hold; its status and outputs are those it had,
    /// so the steps after it see what they would have seen.
    fn done_before(&mut self, step: &PlanStep, started: Instant) -> Option<StepResult> {
        let Done {
            status,
            outputs,
            detail: said,
            recovered_by,
        } = self.options.previous.as_ref()?.get(&step.id)?.clone();
        if !status.is_done() {
            return None;
        }
        self.record(step, status, &outputs);
        for check in &step.verify {
            if let CheckResult::NotPassed(_) = self.check(step, Phase::Verify, check) {
                return None;
            }
        }
        let mut detail = if step.verify.is_empty() {
            DONE_BEFORE.to_owned()
        } else {
            format!("{DONE_BEFORE}; its verify checks still hold")
        };
        // A shortfall then is still one now: the run's warnings span resumes.
        // An action's own is counted by `finish`; the ones inside an include
        // or a fallback are carried here, as they were said.
        if let (Status::Warning, Some(said)) = (status, said) {
            let said = reason(&said);
            if !matches!(step.body, Body::Action { .. }) || recovered_by.is_some() {
                let warned = self.warnings.len();
                self.carry_warnings(step);
                if self.warnings.len() == warned {
                    self.warnings.push(format!("{}: {said}", step.id));
                }
            }
            detail = format!("{detail}: {said}");
        }
        // Its own status and outputs, as the interrupted run recorded them:
        // a check after it must see what an uninterrupted run would see.
        self.finish(step, status, started, Some(detail), recovered_by, &outputs);
        Some(StepResult::Done)
    }

    /// The warnings the interrupted run recorded for the actions inside a
    /// step taken as done (its included steps, its fallbacks), as it said them.
    fn carry_warnings(&mut self, step: &PlanStep) {
        let mut inside: Vec<&PlanStep> = step.fallback.iter().collect();
        if let Body::Include { steps, always, .. } = &step.body {
            inside.extend(steps.iter().chain(always));
        }
        for s in inside {
            let said = self
                .options
                .previous
                .as_ref()
                .and_then(|p| p.get(&s.id))
                .and_then(|done| (done.status == Status::Warning).then(|| done.detail.clone()));
            if let (Body::Action { .. }, Some(Some(said))) = (&s.body, said) {
                self.warnings.push(format!("{}: {}", s.id, reason(&said)));
            }
            self.carry_warnings(s);
        }
    }

    /// Dry run: remembers what a step would do, and folds the path into
    /// the fingerprint `--expect-plan` compares: which steps would run, fail
    /// or be skipped, and what each change would do with its arguments
    /// resolved. What the reads saw (row counts, sizes) is not in it: an
    /// upload between the review and the incident changes no decision.
    fn observe(&mut self, step: &PlanStep, status: Status, detail: Option<&str>) {
        use sha2::Digest;
        if let (Status::WouldRun | Status::Warning, Some(d)) = (status, detail) {
            self.descriptions.insert(step.id.clone(), d.to_owned());
        }
        let top = self.plan.steps.iter().chain(&self.plan.always);
        if top.clone().any(|s| std::ptr::eq(s, step)) {
            self.path.push(format!(
                "{}: {}",
                step.id,
                detail.unwrap_or(status.as_str())
            ));
        }
        let what = match (status, &step.body) {
            (Status::WouldRun, Body::Action { .. }) => detail.unwrap_or_default(),
            _ => "",
        };
        // A file the run will make is named when it makes it; no secret
        // value goes into a hash.
        let what = self.plan.secrets.redact_text(what);
        let what = self
            .shadow
            .as_ref()
            .map_or_else(|| what.clone(), |s| s.without_made(&what));
        self.state
            .update(format!("{}\0{}\0{what}\0", step.id, status.as_str()));
    }

    /// The step itself, without fallbacks: (status, result, detail, outputs).
    fn attempt(&mut self, step: &PlanStep) -> Attempt {
        let dry = self.options.dry_run;
        let none = Map::new;
        let failed = |msg: String| {
            let status = if dry {
                Status::WouldFail
            } else {
                Status::Failed
            };
            (
                status,
                StepResult::Failed(msg.clone()),
                Some(msg),
                Map::new(),
            )
        };

        if self.options.fail.contains(&step.id) {
            return failed(format!("failed on purpose (--fail {})", step.id));
        }
        if let Some(when) = &step.when {
            match self
                .plan
                .templates
                .test(when, &self.context(step.scope, None))
            {
                Ok(true) => {}
                Ok(false) => {
                    return (
                        Status::Skipped,
                        StepResult::NotApplicable,
                        Some(format!("when: `{when}` is false")),
                        none(),
                    )
                }
                // Decided at run time; the dry run assumes the step runs.
                Err(_) if dry => {}
                Err(err) => return failed(format!("when: {}", render_error(&err))),
            }
        }

        if !step.skip_if.is_empty() {
            let mut all = true;
            for check in &step.skip_if {
                if !matches!(self.check(step, Phase::SkipIf, check), CheckResult::Passed) {
                    all = false;
                    break;
                }
            }
            if all {
                return (
                    Status::Skipped,
                    StepResult::Done,
                    Some("skip_if: already done".into()),
                    none(),
                );
            }
        }

        for check in &step.require {
            match self.check(step, Phase::Require, check) {
                CheckResult::Passed | CheckResult::PassedBut(_) | CheckResult::Unknown(_) => {}
                CheckResult::NotPassed(detail) => {
                    return failed(format!("require failed: {}: {detail}", check.name));
                }
            }
        }

        match &step.body {
            Body::Include {
                scope,
                steps,
                always,
                ..
            } => {
                let warned = self.warnings.len();
                let attempt = self.include(*scope, steps, always);
                // Nothing in it applied: the include's own shortfall.
                if let (Status::Warning, Some(why)) = (attempt.0, &attempt.2) {
                    if self.warnings.len() == warned {
                        self.warnings.push(format!("{}: {why}", step.id));
                    }
                }
                attempt
            }
            Body::Action {
                action,
                args,
                mutates,
            } => {
                if dry && *mutates {
                    let (detail, mut call, foreseen) = self.description(step, action, args);
                    if foreseen {
                        return failed(detail);
                    }
                    if call.as_mut().is_some_and(|c| self.on_copies(c)) {
                        return self.simulate(step, action, args, detail);
                    }
                    return self.describe(step, detail, call);
                }
                if let Some(question) = &step.confirm {
                    let question = match self
                        .plan
                        .templates
                        .render(question, &self.context(step.scope, None))
                    {
                        Ok(Json::String(s)) => s,
                        Ok(other) => other.to_string(),
                        Err(err) => return failed(format!("confirm: {}", render_error(&err))),
                    };
                    match confirm::ask(&step.id, &question, self.options.yes) {
                        Ok(()) => {}
                        Err(Failure::Declined(msg)) => {
                            return (
                                Status::Failed,
                                StepResult::Declined(msg.clone()),
                                Some(msg),
                                none(),
                            )
                        }
                        Err(other) => return failed(other.to_string()),
                    }
                }
                self.unsure_checks = false;
                self.failing_now = false;
                let attempt = self.attempts(step, action, args);
                if dry && self.uncertain {
                    let now = match &attempt.1 {
                        StepResult::Failed(err) => format!(" (now: {err})"),
                        _ if self.failing_now => {
                            " (a check of it does not hold now, before those steps)".to_owned()
                        }
                        _ if self.unsure_checks => {
                            " (its checks hold now, before those steps)".to_owned()
                        }
                        _ => return attempt,
                    };
                    let detail = format!(
                        "cannot be predicted: it reads what earlier steps will change{now}"
                    );
                    self.unknowable.push(format!("{}: {detail}", step.id));
                    return (Status::WouldRun, StepResult::Done, Some(detail), attempt.3);
                }
                attempt
            }
        }
    }

    /// Runs the action (and its `verify`) up to `retries + 1` times.
    fn attempts(&mut self, step: &PlanStep, action: &str, args: &TValue) -> Attempt {
        let total = step.retries + 1;
        let mut attempt = 1;
        loop {
            let (result, outputs) = self.run_action(step, action, args);
            let result = match result {
                Ok(()) => self.verify(step),
                Err(e) => Err(e),
            };
            match result {
                // An action that did its work but fell short says why.
                Ok(()) => match outputs.get(action::WARNING).and_then(Json::as_str) {
                    Some(why) => {
                        let why = why.to_owned();
                        return (Status::Warning, StepResult::Done, Some(why), outputs);
                    }
                    None => return (Status::Ok, StepResult::Done, None, outputs),
                },
                Err(Failure::Declined(msg)) => {
                    return (
                        Status::Failed,
                        StepResult::Declined(msg.clone()),
                        Some(msg),
                        outputs,
                    )
                }
                Err(err) if attempt < total => {
                    self.emit(&Event::AttemptFailed {
                        at: event::now(),
                        step: step.id.clone(),
                        attempt,
                        of: total,
                        error: err.to_string(),
                        retry_in_ms: millis(step.retry_delay),
                    });
                    std::thread::sleep(step.retry_delay);
                    attempt += 1;
                }
                Err(err) => {
                    let msg = if total > 1 {
                        format!("{err} (after {total} attempts)")
                    } else {
                        err.to_string()
                    };
                    return (
                        Status::Failed,
                        StepResult::Failed(msg.clone()),
                        Some(msg),
                        outputs,
                    );
                }
            }
        }
    }

    fn run_action(
        &mut self,
        step: &PlanStep,
        action: &str,
        args: &TValue,
    ) -> (Result<(), Failure>, Map<String, Json>) {
        let rendering = Instant::now();
        let ctx = self.context(step.scope, None);
        let call = match self.build_here(action, args, &ctx) {
            Ok(c) => c,
            Err(e) => return (Err(Failure::Failed(e)), Map::new()),
        };
        // The step's timeout covers rendering its arguments too: the action
        // gets what is left of it.
        let left = match step.timeout {
            Some(limit) => match limit.checked_sub(rendering.elapsed()) {
                Some(left) if !left.is_zero() => Some(left),
                _ => return (Err(Failure::TimedOut(limit)), Map::new()),
            },
            None => None,
        };
        let ran = self
            .with_action_context(step, &ctx, left, |actx| call.action().run(actx))
            // Said as the step's timeout, not as what was left of it.
            .map_err(|err| match (err, step.timeout) {
                (Failure::TimedOut(_), Some(limit)) => Failure::TimedOut(limit),
                (err, _) => err,
            });
        // The context shares the steps' records: held while they are
        // extended, it would make every step copy all those before it.
        drop(ctx);
        match self.as_planned(ran) {
            Ok(outputs) => {
                // Later checks and steps see this attempt's outputs.
                self.record(step, Status::Ok, &outputs);
                (Ok(()), outputs)
            }
            Err(Failure::Reported(msg, outputs)) => (Err(Failure::Failed(msg)), outputs),
            Err(err) => (Err(err), Map::new()),
        }
    }

    /// Lends an action what it needs from the run for one call, in the step's scope.
    fn with_action_context<T>(
        &self,
        step: &PlanStep,
        ctx: &minijinja::Value,
        timeout: Option<Duration>,
        f: impl FnOnce(&action::Context<'_>) -> T,
    ) -> T {
        let templates = &self.plan.templates;
        let eval = |expr: &str| templates.eval(expr, ctx).map_err(|e| render_error(&e));
        let base = step
            .span
            .path()
            .parent()
            .unwrap_or_else(|| std::path::Path::new(""));
        let render_file = |path: &std::path::Path| {
            templates
                .render_file(&base.join(path), ctx)
                .map_err(|e| format!("{}: {}", path.display(), render_error(&e)))
        };
        let secrets = &self.plan.secrets;
        let redact = |text: &str| secrets.redact_text(text);
        // A change a dry run makes on its copies is made as the run would.
        let simulating = self.shadow.as_ref().filter(|_| self.simulating);
        f(&action::Context {
            step: &step.id,
            dry_run: self.options.dry_run && simulating.is_none(),
            yes: self.options.yes || simulating.is_some(),
            timeout,
            run_dir: simulating.map_or_else(|| self.options.run_dir.clone(), |s| Some(s.run_dir())),
            base,
            remote: &self.options.remote,
            eval: &eval,
            render_file: &render_file,
            redact: &redact,
        })
    }

    /// The call as it runs here: in a dry run, on the copies of what the
    /// plan changes, where there are copies.
    fn build_here(
        &self,
        action: &str,
        args: &TValue,
        ctx: &minijinja::Value,
    ) -> Result<Call, String> {
        let mut call = self.build(action, args, ctx)?;
        if let Some(shadow) = &self.shadow {
            shadow.redirect(&mut call);
        }
        Ok(call)
    }

    /// What an action said, with the copies' paths named as the plan names them.
    fn as_planned(
        &self,
        ran: Result<Map<String, Json>, Failure>,
    ) -> Result<Map<String, Json>, Failure> {
        let Some(shadow) = &self.shadow else {
            return ran;
        };
        match ran {
            Ok(outputs) => {
                let mut value = Json::Object(outputs);
                shadow.unredirect_json(&mut value);
                match value {
                    Json::Object(outputs) => Ok(outputs),
                    _ => Ok(Map::new()),
                }
            }
            Err(Failure::Failed(msg)) => Err(Failure::Failed(shadow.unredirect(&msg))),
            Err(other) => Err(other),
        }
    }

    /// Dry run: whether a change can be made on the copies — every file it
    /// touches has one (the call is pointed at them to find out).
    fn on_copies(&self, call: &mut Call) -> bool {
        self.shadow.as_ref().is_some_and(|shadow| {
            !call.action_mut().files_mut().is_empty() && shadow.redirect(call)
        })
    }

    /// Dry run: makes a change on the copies, with its `verify`, so that
    /// what later steps read is what they will read in the run. It is shown
    /// as what it would do; if it fails, the run would fail there too.
    fn simulate(
        &mut self,
        step: &PlanStep,
        action: &str,
        args: &TValue,
        detail: String,
    ) -> Attempt {
        self.simulating = true;
        let (status, result, why, outputs) = self.attempts(step, action, args);
        self.simulating = false;
        match (status, &result) {
            (_, StepResult::Failed(_)) => (Status::WouldFail, result, why, outputs),
            _ => {
                self.simulated.insert(step.id.clone());
                (Status::WouldRun, result, Some(detail), outputs)
            }
        }
    }

    fn build(&self, action: &str, args: &TValue, ctx: &minijinja::Value) -> Result<Call, String> {
        let with = self
            .plan
            .templates
            .render(args, ctx)
            .map_err(|e| render_error(&e))?;
        Call::new(action, with)
            .map_err(|e| format!("invalid arguments for `{action}`: {}", e.message))
    }

    fn verify(&mut self, step: &PlanStep) -> Result<(), Failure> {
        for check in &step.verify {
            if let CheckResult::NotPassed(detail) = self.check(step, Phase::Verify, check) {
                return Err(Failure::Failed(format!(
                    "verify failed: {}: {detail}",
                    check.name
                )));
            }
        }
        Ok(())
    }

    /// Dry run of a mutating action: what it would do, arguments resolved where they can be.
    fn describe(&mut self, step: &PlanStep, detail: String, call: Option<Call>) -> Attempt {
        // What later checks read may differ from what the dry run sees now.
        self.uncertain |= call.as_ref().is_none_or(|c| c.action().invalidates_reads());
        let Some(call) = call else {
            self.unknowable.push(format!("{}: {detail}", step.id));
            return (Status::WouldRun, StepResult::Done, Some(detail), Map::new());
        };
        if let Some(command) = call.action().command() {
            self.commands_not_run.push((step.id.clone(), command.argv));
        }
        if let Some(warning) = call.action().foreseen_warning() {
            self.foreseen = Some(warning.to_owned());
            return (Status::Warning, StepResult::Done, Some(detail), Map::new());
        }
        (Status::WouldRun, StepResult::Done, Some(detail), Map::new())
    }

    /// What a mutating action would do, the call it would make, where its
    /// arguments are known now, and whether its preview foresaw a failure.
    fn description(
        &self,
        step: &PlanStep,
        action: &str,
        args: &TValue,
    ) -> (String, Option<Call>, bool) {
        let ctx = self.context(step.scope, None);
        let built = self.build(action, args, &ctx);
        let mut foreseen = false;
        let mut detail = match &built {
            Ok(call) => {
                match self.with_action_context(step, &ctx, step.timeout, |actx| {
                    call.action().preview(actx)
                }) {
                    Ok(preview) => format!("would {preview}"),
                    Err(Failure::Foreseen(why)) => {
                        foreseen = true;
                        format!("would fail: {why}")
                    }
                    Err(err) => format!("would {}, but: {err}", call.action().describe()),
                }
            }
            Err(err) => {
                format!("would run `{action}`; its arguments are known only at run time ({err})")
            }
        };
        if let Some(q) = &step.confirm {
            if let Ok(Json::String(q)) = self.plan.templates.render(q, &ctx) {
                detail = format!(
                    "would ask \"{q}\", then {}",
                    detail.trim_start_matches("would ")
                );
            }
        }
        if let Some(shadow) = &self.shadow {
            detail = shadow.marked(&detail);
        }
        (detail, built.ok(), foreseen)
    }

    fn include(&mut self, scope: usize, steps: &[PlanStep], always: &[PlanStep]) -> Attempt {
        let mut result = StepResult::Done;
        let warned = self.warnings.len();
        let mut applied = 0;
        for s in steps {
            if self.stopping() {
                result = StepResult::Interrupted;
                break;
            }
            match self.step(s) {
                StepResult::Done => applied += 1,
                StepResult::NotApplicable => {}
                other => {
                    result = other;
                    break;
                }
            }
        }
        for s in always {
            let r = self.step(s);
            let failed = matches!(
                r,
                StepResult::Failed(_) | StepResult::Declined(_) | StepResult::Interrupted
            );
            if matches!(result, StepResult::Done) && failed {
                result = r;
            }
        }
        let mut outputs = Map::new();
        outputs.insert(
            "steps".into(),
            serde_json::to_value(&*self.outputs[scope]).unwrap_or_default(),
        );
        // A dry run says what the included playbook would do first, or
        // that it only reads, and every read passes.
        let first_change = steps
            .iter()
            .find_map(|s| self.descriptions.get(&s.id))
            .cloned()
            .or_else(|| {
                (self.options.dry_run && applied > 0).then(|| {
                    if applied == steps.len() {
                        "would pass: each of its steps does".to_owned()
                    } else {
                        format!(
                            "would pass: the {applied} of its {} steps that apply do",
                            steps.len()
                        )
                    }
                })
            });
        // An include achieved what its name promises only if something in
        // it applied, and nothing in it fell short.
        let short = match self.warnings.len() - warned {
            _ if applied == 0 && !steps.is_empty() => {
                Some("nothing done: no step applied".to_owned())
            }
            0 => None,
            n => {
                // The steps that warned; what each said is on its own line.
                let who: Vec<&str> = self.warnings[warned..]
                    .iter()
                    .map(|w| w.split_once(": ").map_or(w.as_str(), |(id, _)| id))
                    .collect();
                Some(format!(
                    "{n} warning{} ({})",
                    if n == 1 { "" } else { "s" },
                    who.join(", ")
                ))
            }
        };
        match result {
            StepResult::Done | StepResult::NotApplicable => match short {
                // A dry run still says what it would do first.
                Some(why) => {
                    let said = match first_change {
                        Some(change) if self.options.dry_run => format!("{change}; ⚠ {why}"),
                        _ => why,
                    };
                    (Status::Warning, StepResult::Done, Some(said), outputs)
                }
                None => (
                    if self.options.dry_run {
                        Status::WouldRun
                    } else {
                        Status::Ok
                    },
                    StepResult::Done,
                    first_change,
                    outputs,
                ),
            },
            StepResult::Failed(e) => (
                Status::Failed,
                StepResult::Failed(e.clone()),
                Some(e),
                outputs,
            ),
            StepResult::Declined(e) => (
                Status::Failed,
                StepResult::Declined(e.clone()),
                Some(e),
                outputs,
            ),
            StepResult::Interrupted => (
                Status::Failed,
                StepResult::Interrupted,
                Some(INTERRUPTED.to_owned()),
                outputs,
            ),
        }
    }

    fn check(&mut self, step: &PlanStep, phase: Phase, check: &PlanCheck) -> CheckResult {
        let result = match (phase, self.evaluate(step, check)) {
            // A step is skipped as done only on a check that fully held:
            // one that could not look everywhere lets it run.
            (Phase::SkipIf, CheckResult::PassedBut(why)) => {
                CheckResult::NotPassed(format!("not known to hold: {why}"))
            }
            (_, result) => result,
        };
        let unsure = self.options.dry_run && self.uncertain;
        let (passed, detail) = match &result {
            CheckResult::Passed if unsure => {
                self.unsure_checks = true;
                (
                    true,
                    Some("holds now; the steps before it may change that".to_owned()),
                )
            }
            CheckResult::Passed => (true, None),
            CheckResult::PassedBut(d) => {
                // Not a plain pass: the run's warnings, its report and its
                // mails say what the check could not look at.
                self.warnings
                    .push(format!("{}: {}: {d}", step.id, check.name));
                if unsure {
                    self.unsure_checks = true;
                    (
                        true,
                        Some(format!(
                            "{d}; holds now; the steps before it may change that"
                        )),
                    )
                } else {
                    (true, Some(d.clone()))
                }
            }
            CheckResult::NotPassed(d) => (false, Some(d.clone())),
            CheckResult::Unknown(d) => {
                self.unsure_checks = true;
                self.failing_now = true;
                (false, Some(format!("unknown before the run: {d}")))
            }
        };
        if self.options.dry_run {
            use sha2::Digest;
            self.state.update(format!(
                "{}\0{}\0{}\0{passed}\0",
                step.id,
                phase.key(),
                check.name
            ));
        }
        self.emit(&Event::CheckFinished {
            at: event::now(),
            step: step.id.clone(),
            phase,
            check: check.name.clone(),
            passed,
            detail,
        });
        result
    }

    fn evaluate(&self, step: &PlanStep, check: &PlanCheck) -> CheckResult {
        let ctx = self.context(step.scope, None);
        let unknown_or_not = |msg: String| {
            if self.options.dry_run && self.uncertain {
                CheckResult::Unknown(msg)
            } else {
                CheckResult::NotPassed(msg)
            }
        };
        match &check.kind {
            CheckKind::That(expr) => match self.plan.templates.test(expr, &ctx) {
                Ok(true) => CheckResult::Passed,
                Ok(false) => unknown_or_not(format!("`{expr}` is false")),
                Err(err) => unknown_or_not(render_error(&err)),
            },
            CheckKind::Action {
                action,
                args,
                expect,
            } => {
                let call = match self.build_here(action, args, &ctx) {
                    Ok(c) => c,
                    Err(err) => return unknown_or_not(err),
                };
                let templates = &self.plan.templates;
                let ran = self
                    .with_action_context(step, &ctx, step.timeout, |actx| call.action().run(actx));
                let outputs = match self.as_planned(ran) {
                    Ok(o) => Json::Object(o),
                    Err(err) => return unknown_or_not(err.to_string()),
                };
                let passed = || match outputs.get(action::WARNING).and_then(Json::as_str) {
                    Some(why) => CheckResult::PassedBut(why.to_owned()),
                    None => CheckResult::Passed,
                };
                let Some(expect) = expect else {
                    return passed();
                };
                match templates.test(expect, &self.context(step.scope, Some(&outputs))) {
                    Ok(true) => passed(),
                    Ok(false) => {
                        unknown_or_not(format!("`{expect}` is false (result: {})", brief(&outputs)))
                    }
                    Err(err) => unknown_or_not(render_error(&err)),
                }
            }
        }
    }
}

fn status_key(status: Status) -> &'static str {
    match status {
        Status::Ok => "ok",
        Status::Warning => "warning",
        Status::Skipped => "skipped",
        Status::Failed => "failed",
        Status::Recovered => "recovered",
        Status::WouldRun => "would_run",
        Status::WouldFail => "would_fail",
    }
}

/// What a step said, without the words a resume put before it.
fn reason(said: &str) -> String {
    match said.strip_prefix(DONE_BEFORE) {
        Some(rest) => rest.split_once(": ").map_or(rest, |(_, r)| r).to_owned(),
        None => said.to_owned(),
    }
}

/// A short rendering of a check's result for messages.
fn brief(v: &Json) -> String {
    action::ellipsize(&v.to_string(), 200)
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}
