//! The views of a run on stdout: lines for people (colour and a spinner
//! only on a terminal), or one JSON event per line for programs (`--json`).

use std::io::{self, IsTerminal, Write};
use std::time::Duration;

use console::style;
use indicatif::{MultiProgress, ProgressBar, ProgressStyle};

use crate::event::{Event, Phase, Sink, Status};
use crate::summary::{State, Summary};
use std::sync::Arc;

/// Whether stdout is a terminal that wants colour.
pub fn setup_colours() -> bool {
    let term = io::stdout().is_terminal();
    let colour = term && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty());
    console::set_colors_enabled(colour);
    console::set_colors_enabled_stderr(colour && io::stderr().is_terminal());
    term
}

/// How the run is shown: `--json` or lines for people, on a terminal or
/// not, and with `-v` every included step and every condition.
#[derive(Clone, Copy, Debug, Default)]
pub struct ViewOptions {
    pub json: bool,
    pub terminal: bool,
    pub verbose: bool,
}

/// The widest a step's line may be without `-v`: what is cut is in the
/// report and the journal.
pub(crate) const WIDTH: usize = 100;

pub struct Human {
    /// On a terminal, what holds the bar (and a fleet's lines, one a host).
    multi: Option<MultiProgress>,
    spinner: Option<ProgressBar>,
    /// `-v`: included steps, fallbacks' own lines and conditions in full.
    verbose: bool,
    depth: usize,
    /// When the playbook's deadline falls.
    deadline: Option<std::time::Instant>,
    /// Dry run: each top-level step's predicted outcome, for the closing lines.
    predicted: Vec<String>,
    /// Whether the run is a dry run (from its first event).
    dry_run: bool,
}

impl Human {
    pub fn new(terminal: bool, verbose: bool) -> Human {
        // On a terminal, one bar: a spinner while a step runs, a gauge while
        // an action reports how far it has got.
        // Hidden until the first step, so nothing is drawn before there is something to show.
        let multi = terminal
            .then(|| MultiProgress::with_draw_target(indicatif::ProgressDrawTarget::hidden()));
        let spinner = multi.as_ref().map(|multi| {
            let bar = multi.add(ProgressBar::new_spinner());
            bar.set_style(spinner_style());
            let gauge = bar.clone();
            crate::progress::listen(Box::new(move |u: crate::progress::Update| match u.total {
                Some(total) => {
                    if gauge.length() != Some(total) {
                        gauge.set_style(
                            ProgressStyle::with_template(
                                "{spinner} {prefix} {wide_bar} {bytes}/{total_bytes} {eta}",
                            )
                            .unwrap_or_else(|_| ProgressStyle::default_bar()),
                        );
                        gauge.set_length(total);
                        gauge.set_prefix(u.what);
                    }
                    gauge.set_position(u.done);
                }
                None => gauge.set_prefix(format!("{} ({}M steps)", u.what, u.done)),
            }));
            let held = bar.clone();
            crate::progress::on_suspend(Box::new(move |f: &mut dyn FnMut()| held.suspend(f)));
            bar
        });
        Human {
            multi,
            spinner,
            verbose,
            depth: 0,
            deadline: None,
            predicted: Vec::new(),
            dry_run: false,
        }
    }

    fn line(&self, text: &str) -> io::Result<()> {
        let print = || {
            let mut out = io::stdout().lock();
            writeln!(out, "{text}")
        };
        match &self.spinner {
            Some(bar) => bar.suspend(print),
            None => print(),
        }
    }

    fn indent(&self) -> String {
        "  ".repeat(self.depth)
    }

    /// Whether what happens at the current depth is shown: the top-level
    /// steps and their own checks, retries and fallbacks; everything inside
    /// an included playbook only with `-v` or in a dry run.
    fn shown(&self, depth: usize) -> bool {
        // A dry run is a review: every step it would take is the point.
        self.verbose || self.dry_run || depth <= 1
    }

    /// `text` in lines of at most `WIDTH` columns, broken between words
    /// (without `-v`): a verdict is not cut, only folded.
    fn wrapped(&self, text: &str) -> Vec<String> {
        if self.verbose || console::measure_text_width(text) <= WIDTH {
            return vec![text.to_owned()];
        }
        let mut lines = vec![String::new()];
        for word in text.split(' ') {
            let last = lines.len() - 1;
            let width = console::measure_text_width(&lines[last]);
            if width > 0 && width + 1 + console::measure_text_width(word) > WIDTH - 2 {
                lines.push(word.to_owned());
            } else {
                if width > 0 {
                    lines[last].push(' ');
                }
                lines[last].push_str(word);
            }
        }
        lines
    }

    /// `text` cut to fit `WIDTH` columns after `used` (without `-v`).
    fn fit(&self, text: &str, used: usize) -> String {
        // A dry run's resolved arguments are what the reviewer reads.
        if self.verbose || self.dry_run {
            return text.to_owned();
        }
        let room = WIDTH.saturating_sub(used).max(20);
        console::truncate_str(text, room, "…").into_owned()
    }
}

impl Sink for Human {
    fn is_view(&self) -> bool {
        true
    }

    fn event(&mut self, event: &Event, run: &Arc<Summary>) -> io::Result<()> {
        let r = self.show(event, run);
        ignore_broken_pipe(r)
    }

    fn finish(&mut self, _: &Arc<Summary>) -> io::Result<()> {
        if let Some(bar) = self.spinner.take() {
            bar.finish_and_clear();
        }
        Ok(())
    }
}

impl Human {
    fn show(&mut self, event: &Event, run: &Summary) -> io::Result<()> {
        match event {
            Event::RunStarted {
                playbook,
                file,
                dry_run,
                rehearsal,
                fail,
                run_dir,
                deadline,
                deadline_at,
                ..
            } => {
                self.line(&format!("{} {playbook} ({file})", style("▶").bold()))?;
                if let (Some(d), Some(at)) = (deadline, deadline_at) {
                    // From when it falls, not from now: a resumed run's
                    // deadline is the one the incident started with.
                    self.deadline = crate::event::instant_of(at);
                    self.line(&format!("  deadline: {d}, by {at}"))?;
                }
                if *rehearsal {
                    self.line("  rehearsal: everything runs for real, on copies")?;
                }
                if !fail.is_empty() {
                    self.line(&format!("  failing on purpose: {}", fail.join(", ")))?;
                }
                self.dry_run = *dry_run;
                if *dry_run {
                    self.line("  dry run: read-only checks run for real; nothing is changed")?;
                }
                if let Some(dir) = run_dir {
                    self.line(&format!("  run directory: {dir}"))?;
                }
            }
            Event::AlwaysStarted { .. } => {}
            Event::StepStarted { step, name, .. } => {
                self.depth += 1;
                if let Some(multi) = self.multi.as_ref().filter(|m| m.is_hidden()) {
                    multi.set_draw_target(indicatif::ProgressDrawTarget::stderr());
                }
                if let Some(bar) = &self.spinner {
                    bar.set_style(spinner_style());
                    bar.set_prefix("");
                    bar.unset_length();
                    bar.enable_steady_tick(Duration::from_millis(100));
                    bar.set_message(format!("{step}: {name}"));
                }
            }
            Event::CheckFinished {
                phase,
                check,
                passed,
                detail,
                ..
            } => {
                // A check that passed only as far as it could look says
                // where it could not, in a run too.
                let caveat = *passed && detail.is_some() && !self.dry_run;
                if self.shown(self.depth)
                    && (self.dry_run || caveat || (!passed && *phase != Phase::SkipIf))
                {
                    let mark = match (*passed, caveat) {
                        (true, false) => style("passed").green(),
                        (true, true) => style("passed").yellow(),
                        (false, _) => style("not passed").yellow(),
                    };
                    let detail = detail
                        .as_deref()
                        .map(|d| format!(": {d}"))
                        .unwrap_or_default();
                    self.line(&format!(
                        "{}  {} {check}: {mark}{detail}",
                        self.indent(),
                        phase.key()
                    ))?;
                }
            }
            Event::AttemptFailed {
                attempt,
                of,
                error,
                retry_in_ms,
                ..
            } if self.shown(self.depth) => {
                self.line(&format!(
                    "{}  attempt {attempt}/{of} failed: {error}; retrying in {}",
                    self.indent(),
                    humantime::format_duration(Duration::from_millis(*retry_in_ms))
                ))?;
            }
            Event::AttemptFailed { .. } => {}
            Event::FallbackStarted {
                step,
                after,
                error,
                fallback,
                ..
            } => {
                if !self.shown(self.depth) {
                    return Ok(());
                }
                // A fallback that failed has had its own line (with -v); the
                // step's comes after its fallbacks.
                if after == step || after.is_empty() || !self.verbose {
                    let failed = if after.is_empty() { step } else { after };
                    let verb = if self.dry_run { "would fail" } else { "failed" };
                    let head = format!("{}  ✗ {failed} {verb}: ", self.indent());
                    let error = self.fit(error, console::measure_text_width(&head));
                    self.line(&format!(
                        "{}  {} {failed} {verb}: {error}",
                        self.indent(),
                        style("✗").red()
                    ))?;
                }
                self.line(&format!(
                    "{}  {} falling back to {fallback}",
                    self.indent(),
                    style("↳").yellow()
                ))?;
            }
            Event::StepFinished {
                step,
                name,
                status,
                duration_ms,
                detail,
                recovered_by,
                deadline_missed,
                ..
            } => {
                self.depth = self.depth.saturating_sub(1);
                let mark = mark(*status);
                if !self.shown(self.depth + 1) {
                    return Ok(());
                }
                let what = match (status, recovered_by, detail) {
                    // A condition in full is for -v; the reason it was skipped is enough.
                    (Status::Skipped, _, Some(d)) if !self.verbose && d.starts_with("when: ") => {
                        "does not apply (-v: why)".to_owned()
                    }
                    (Status::Recovered, Some(by), _) => format!("recovered by {by}"),
                    (Status::Warning, Some(by), Some(err)) => {
                        format!("{by} let the run go on: {err}")
                    }
                    (_, Some(by), Some(d)) => format!("{d}; {by} would take over"),
                    (Status::Ok, _, None) => String::new(),
                    (_, _, Some(d)) => d.clone(),
                    (s, _, None) => s.as_str().to_owned(),
                };
                let sep = if what.is_empty() { "" } else { ": " };
                let mut time = style(format!("({:.1}s)", *duration_ms as f64 / 1000.0))
                    .dim()
                    .to_string();
                if *deadline_missed {
                    time.push_str(&style(" its deadline passed").red().to_string());
                }
                // The id is what --fail and reports use; the name only when it says more.
                let title = if name == step {
                    style(step.clone()).bold().to_string()
                } else {
                    format!("{} {name}", style(step).bold())
                };
                // Top-level lines show the time left before the deadline.
                let left = match (self.depth, self.deadline, self.dry_run) {
                    (0, Some(end), false) => {
                        let now = std::time::Instant::now();
                        let text = if now <= end {
                            // Rounded up to the minute: at the start of a
                            // 15-minute deadline, 15m are left; under a
                            // minute, the seconds as they are.
                            let left = end - now;
                            let minute = std::time::Duration::from_secs(60);
                            let shown = if left >= minute {
                                left + std::time::Duration::from_secs(59)
                            } else {
                                left
                            };
                            format!(" [{} left]", minutes(shown))
                        } else {
                            format!(" [deadline passed {} ago]", minutes(now - end))
                        };
                        style(text).yellow().to_string()
                    }
                    _ => String::new(),
                };
                let used = console::measure_text_width(&format!(
                    "{}{mark} {title}{sep} {time}{left}",
                    self.indent()
                ));
                let what = self.fit(&what, used);
                self.line(&format!(
                    "{}{mark} {title}{sep}{what} {time}{left}",
                    self.indent()
                ))?;
                if self.depth == 0 && self.dry_run {
                    let outcome = if what.is_empty() {
                        status.as_str().to_owned()
                    } else {
                        what
                    };
                    self.predicted
                        .push(crate::action::ellipsize(&format!("{step}: {outcome}"), 160));
                }
            }
            Event::RunFinished { .. } => self.closing(run)?,
        }
        Ok(())
    }

    /// The run's last lines, from its summary: the verdict, each warning,
    /// the deadline and, for a dry run, the path and fingerprint.
    fn closing(&mut self, s: &Summary) -> io::Result<()> {
        if let Some(bar) = self.spinner.take() {
            bar.finish_and_clear();
        }
        if self.dry_run && !self.predicted.is_empty() {
            self.line("predicted path:")?;
            for entry in &self.predicted {
                self.line(&format!("  {entry}"))?;
            }
        }
        let secs = s.duration_ms.unwrap_or_default() as f64 / 1000.0;
        let text = match s.status {
            State::Succeeded if self.dry_run && s.warnings.is_empty() => style(format!(
                "dry run finished in {secs:.1}s; nothing was changed"
            ))
            .green(),
            State::Succeeded if self.dry_run => style(format!(
                "dry run finished in {secs:.1}s; nothing was changed; the run would succeed with {}:",
                count(s.warnings.len(), "warning")
            ))
            .yellow(),
            State::Succeeded if s.warnings.is_empty() => {
                style(format!("run succeeded in {secs:.1}s")).green()
            }
            State::Succeeded => style(format!(
                "run succeeded with {} in {secs:.1}s:",
                count(s.warnings.len(), "warning")
            ))
            .yellow(),
            State::Unpredictable => {
                let at = s.failed_step.as_deref().unwrap_or("a step");
                let why = s.error.as_deref().unwrap_or("");
                style(format!(
                    "dry run: cannot tell whether the run would succeed: {at}: {why}"
                ))
                .red()
            }
            State::Failed | State::Aborted | State::Interrupted | State::Running => {
                let at = s
                    .failed_step
                    .as_deref()
                    .map(|s| format!(" at step {s}"))
                    .unwrap_or_default();
                let why = s
                    .error
                    .as_deref()
                    .map(|e| format!(": {e}"))
                    .unwrap_or_default();
                let lead = if self.dry_run {
                    "dry run: the run would fail"
                } else {
                    match s.status {
                        State::Failed => "run failed",
                        State::Interrupted => "run was interrupted",
                        _ => "run was aborted",
                    }
                };
                style(format!("{lead}{at}{why}")).red()
            }
        };
        for (i, part) in self.wrapped(&text.to_string()).iter().enumerate() {
            let indent = if i == 0 { "" } else { "  " };
            self.line(&format!("{indent}{part}"))?;
        }
        if s.status == State::Succeeded {
            for w in &s.warnings {
                let w = self.fit(w, 4);
                self.line(&format!("  {} {w}", style("⚠").yellow()))?;
            }
        }
        match (s.deadline_met, self.dry_run || s.status != State::Succeeded) {
            (Some(true), false) => self.line("deadline met")?,
            (Some(false), _) if !self.dry_run => {
                self.line(&style("deadline MISSED").red().to_string())?
            }
            _ => {}
        }
        if let Some(fp) = &s.fingerprint {
            self.line(&format!(
                "plan fingerprint: {fp} (--expect-plan {fp} refuses to run if a step, the path or an argument changes)"
            ))?;
        }
        Ok(())
    }
}

/// `14m`, `1h 5m`, `40s`: time at a glance.
fn minutes(d: std::time::Duration) -> String {
    let secs = d.as_secs();
    if secs < 60 {
        format!("{secs}s")
    } else {
        humantime::format_duration(std::time::Duration::from_secs(secs / 60 * 60)).to_string()
    }
}

/// A step status's glyph, in its colour.
pub(crate) fn mark(status: Status) -> console::StyledObject<&'static str> {
    match status {
        Status::Ok => style("✓").green(),
        Status::Warning => style("⚠").yellow(),
        Status::Skipped => style("-").dim(),
        Status::Failed | Status::WouldFail => style("✗").red(),
        Status::Recovered => style("↺").yellow(),
        Status::WouldRun => style("·").cyan(),
    }
}

impl Human {
    /// Shows a fleet's hosts: a line each, kept current, on a terminal;
    /// whole lines prefixed by their host otherwise.
    pub fn listen_fleet(&self) {
        match (&self.multi, &self.spinner) {
            (Some(multi), Some(spinner)) => {
                crate::fleet_view::listen_board(multi.clone(), spinner.clone());
            }
            _ => crate::fleet_view::listen_lines(),
        }
    }
}

/// `--json`: one event per line on stdout, for programs.
pub struct JsonLines;

impl Sink for JsonLines {
    fn is_view(&self) -> bool {
        true
    }

    fn event(&mut self, event: &Event, _: &Arc<Summary>) -> io::Result<()> {
        let line = serde_json::to_string(event).map_err(io::Error::other)?;
        let mut out = io::stdout().lock();
        ignore_broken_pipe(writeln!(out, "{line}").and_then(|()| out.flush()))
    }
}

/// A reader that went away (`runbook run … | head`) is not a failure of the run.
fn ignore_broken_pipe(r: io::Result<()>) -> io::Result<()> {
    match r {
        Err(e) if e.kind() == io::ErrorKind::BrokenPipe => Ok(()),
        other => other,
    }
}

fn spinner_style() -> ProgressStyle {
    ProgressStyle::with_template("{spinner} {msg} {prefix} {elapsed}")
        .unwrap_or_else(|_| ProgressStyle::default_spinner())
}

/// `1 warning`, `2 warnings`.
fn count(n: usize, what: &str) -> String {
    if n == 1 {
        format!("1 {what}")
    } else {
        format!("{n} {what}s")
    }
}
