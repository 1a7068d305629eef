//! `runbook run`: analyze a playbook, make the run directory, execute, and
//! map the outcome to an exit code.

use crate::cli::RunArgs;
use crate::event::{RunStatus, Sink};
use crate::exit::Exit;
use crate::review::{self, Review};
use crate::{analyzer, executor, journal, lock, report, reporter, run_dir};

pub fn run_playbook(args: &RunArgs) -> Exit {
    let options = analyzer::Options {
        vars: args.vars.clone(),
        require_values: true,
    };
    let plan = match analyzer::analyze(&args.playbook, &options) {
        Ok(plan) => plan,
        Err(diagnostics) => {
            eprintln!("{diagnostics}");
            return Exit::Invalid;
        }
    };
    for warning in &plan.warnings {
        eprintln!("{warning}");
    }
    if let Err(exit) = check_fail_targets(&plan, &args.fail) {
        return exit;
    }
    if !args.dry_run {
        if let Err(exit) = unaskable(&plan, args.yes, |_| false) {
            return exit;
        }
    }
    let mut locks = if args.dry_run || args.rehearse {
        tell_holders(&plan);
        None
    } else {
        match lock::Locks::acquire(&plan.changes(), args.wait) {
            Ok(locks) => Some(locks),
            Err(err) => return refused(&err),
        }
    };
    if let Some(expected) = &args.expect_plan {
        if let Err(exit) = check_fingerprint(&plan, args, expected) {
            return exit;
        }
    }
    let terminal = reporter::setup_colours();
    let run_dir = if args.dry_run {
        None
    } else {
        let stem = args
            .playbook
            .file_stem()
            .map_or_else(|| plan.name.clone(), |s| s.to_string_lossy().into_owned());
        match run_dir::create(&args.runs, &stem) {
            Ok(dir) => Some(dir),
            Err(err) => {
                eprintln!(
                    "error: cannot create a run directory under {}: {err}\n  help: choose another place with --runs DIR",
                    args.runs.display()
                );
                return Exit::Failed;
            }
        }
    };

    let plan = match (&run_dir, args.rehearse) {
        (Some(dir), true) => match rehearse(plan, args, dir) {
            Ok(plan) => plan,
            Err(exit) => return exit,
        },
        _ => plan,
    };

    if let (Some(locks), Some(dir)) = (locks.as_mut(), &run_dir) {
        locks.set_run_dir(dir);
    }
    let journal = match &run_dir {
        Some(dir) => match journal::Journal::create(&dir.join(journal::FILE_NAME)) {
            Ok(j) => Some(j),
            Err(err) => {
                eprintln!(
                    "error: cannot create the journal in {}: {err}",
                    dir.display()
                );
                return Exit::Failed;
            }
        },
        None => None,
    };
    let options = executor::Options {
        dry_run: args.dry_run,
        yes: args.yes,
        run_dir: run_dir.clone(),
        fail: args.fail.clone(),
        rehearsal: args.rehearse,
        cli_vars: args.vars.clone(),
        previous: None,
        interrupt: Some(crate::interrupt::flag()),
        earlier: Vec::new(),
        remote: args.remote.clone(),
    };
    // `--save-review`: the dry run keeps what it saw, for `--expect-plan`
    // to compare. Without it a dry run writes nothing at all.
    let review = args.save_review.then(|| review::dir(&args.runs));
    execute(
        &plan,
        &options,
        journal,
        locks,
        review,
        reporter::ViewOptions {
            json: args.json,
            terminal,
            verbose: args.verbose,
        },
    )
}

/// A run that will ask the operator something, with no terminal to ask on
/// and no `--yes`, is refused before its first step: failing at the first
/// question would leave the "rollback initiated" mail sent and the app
/// stopped for nothing. `done` tells the steps a resumed run will not ask again.
pub(crate) fn unaskable(
    plan: &crate::plan::Plan,
    yes: bool,
    done: impl Fn(&str) -> bool,
) -> Result<(), Exit> {
    use std::io::IsTerminal;
    if yes || std::io::stdin().is_terminal() || crate::control::relaying() {
        return Ok(());
    }
    let asking: Vec<&str> = plan
        .questions()
        .into_iter()
        .map(|s| s.id.as_str())
        .filter(|id| !done(id))
        .collect();
    if asking.is_empty() {
        return Ok(());
    }
    eprintln!(
        "error: {} asks the operator to confirm (steps {}), but there is no terminal to ask on and no --yes\n  \
         help: nothing was done; run it on a terminal, or pass --yes to confirm them in advance",
        plan.file.display(),
        asking.join(", ")
    );
    Err(Exit::Invalid)
}

/// A dry run or a rehearsal takes no lock, but says when a run holds one:
/// what it sees may change under it.
fn tell_holders(plan: &crate::plan::Plan) {
    for target in plan.changes() {
        if let Some(holder) = lock::holder_of(&target) {
            eprintln!(
                "note: a run holds {} now ({}): what this run sees may change under it",
                target.display(),
                holder.brief()
            );
        }
    }
}

/// Another operator holds the install: exit 4, or 1 if the lock file
/// itself could not be made.
pub(crate) fn refused(err: &lock::Error) -> Exit {
    eprintln!("error: {err}");
    match err {
        lock::Error::Held { .. } => Exit::Locked,
        lock::Error::Io { .. } => Exit::Failed,
    }
}

/// Runs a plan with its journal, report and view attached; the report
/// starts from the events of the run being resumed, if any.
pub(crate) fn execute(
    plan: &crate::plan::Plan,
    options: &executor::Options,
    mut journal: Option<journal::Journal>,
    mut locks: Option<lock::Locks>,
    review: Option<std::path::PathBuf>,
    view: reporter::ViewOptions,
) -> Exit {
    let json = view.json;
    let run_dir = options.run_dir.clone();
    // The report template as it was checked, not as the file is now.
    let layout = || match plan.report.as_deref() {
        Some(path) => match plan.templates.file_source(path) {
            Some(text) => report::Layout::of(&path.display().to_string(), &text),
            None => report::Layout::load(Some(path)),
        },
        None => report::Layout::load(None),
    };
    let mut report = match &run_dir {
        Some(d) => match layout() {
            Ok(layout) => Some(report::Report::new(d.join(report::FILE_NAME), layout)),
            Err(err) => {
                eprintln!("error: the report template: {}", err.message);
                return Exit::Invalid;
            }
        },
        None => None,
    };
    // With --json nothing draws the bar, so nothing should feed it.
    let mut human = reporter::Human::new(view.terminal && !json, view.verbose);
    if json {
        crate::fleet_view::listen_json();
    } else {
        human.listen_fleet();
    }
    let mut json_view = reporter::JsonLines;
    let mut sinks: Vec<&mut dyn Sink> = Vec::new();
    if let Some(j) = journal.as_mut() {
        sinks.push(j);
    }
    if let Some(r) = report.as_mut() {
        sinks.push(r);
    }
    if let Some(l) = locks.as_mut() {
        sinks.push(l);
    }
    if json {
        sinks.push(&mut json_view);
    } else {
        sinks.push(&mut human);
    }
    let outcome = executor::execute(plan, options, &mut sinks);
    if let (Some(dir), Some(seen)) = (review, Review::of(&outcome.summary)) {
        match seen.save(&dir) {
            Ok((path, true)) if !json => say!("review recorded: {}", path.display()),
            Ok((path, false)) if !json => say!(
                "review: {} (the first review of this plan is kept: --expect-plan compares with it)",
                path.display()
            ),
            Ok(_) => {}
            Err(err) => eprintln!(
                "note: the review could not be recorded in {}: {err}; --expect-plan will compare the fingerprint only",
                dir.display()
            ),
        }
    }
    if let Some(err) = outcome.sink_error {
        // The last line: what failed, and how to get the report back.
        let dir = run_dir
            .as_ref()
            .map_or_else(String::new, |d| d.display().to_string());
        eprintln!(
            "error: the journal or report could not be written completely: {err}\n  \
             help: free space; `runbook report {dir} > {dir}/report.md` renders the report again from the journal"
        );
        if outcome.status == RunStatus::Succeeded {
            return Exit::Failed;
        }
    } else if let Some(dir) = &run_dir {
        if !json {
            say!("report: {}", dir.join(report::FILE_NAME).display());
        }
    }
    // Mail written there is mail someone may have to send by hand.
    if let (Some(dir), false) = (&run_dir, json) {
        let outbox = dir.join("outbox");
        if std::fs::read_dir(&outbox).is_ok_and(|mut d| d.next().is_some()) {
            say!("outbox: {}", outbox.display());
        }
    }
    // The exact line to type next, for a run that did not finish well.
    let unfinished = matches!(
        outcome.status,
        RunStatus::Failed | RunStatus::Aborted | RunStatus::Interrupted
    );
    if let (Some(dir), true, false, false) = (&run_dir, unfinished, json, options.rehearsal) {
        say!("resume: runbook resume {}", dir.display());
    }
    match outcome.status {
        RunStatus::Succeeded => Exit::Success,
        RunStatus::Failed => Exit::Failed,
        RunStatus::Aborted => Exit::Aborted,
        RunStatus::Interrupted => Exit::Interrupted,
        RunStatus::Unpredictable => Exit::Unpredictable,
    }
}

/// `--fail STEP` must name a step of the plan, or the rehearsal proves nothing.
fn check_fail_targets(plan: &crate::plan::Plan, fail: &[String]) -> Result<(), Exit> {
    let ids: Vec<&str> = plan.all_steps().iter().map(|s| s.id.as_str()).collect();
    let mut ok = true;
    for id in fail {
        if !ids.contains(&id.as_str()) {
            let hint = crate::diagnostic::did_you_mean(id, ids.iter().copied()).map_or_else(
                || format!("the steps are: {}", ids.join(", ")),
                |b| format!("did you mean `{b}`?"),
            );
            eprintln!("error: --fail {id}: the playbook has no step `{id}`\n  help: {hint}");
            ok = false;
        }
    }
    if ok {
        Ok(())
    } else {
        Err(Exit::Invalid)
    }
}

/// Copies what the playbook would change into the run directory and
/// analyzes it again pointed at the copies.
fn rehearse(
    plan: crate::plan::Plan,
    args: &RunArgs,
    dir: &std::path::Path,
) -> Result<crate::plan::Plan, Exit> {
    let vars = plan
        .scopes
        .first()
        .map(|s| s.vars.clone())
        .unwrap_or_default();
    let prepared =
        crate::rehearsal::prepare(&vars, &plan.rehearsal, &args.vars, &dir.join("rehearsal"))
            .map_err(|err| {
                eprintln!("error: cannot prepare the rehearsal: {err:#}");
                Exit::Failed
            })?;
    if !args.json {
        say!("rehearsal: the live databases are not touched");
        for note in &prepared.notes {
            say!("  {note}");
        }
    }
    let mut vars = prepared.overrides;
    vars.extend(args.vars.iter().cloned());
    let options = analyzer::Options {
        vars,
        require_values: true,
    };
    analyzer::analyze(&args.playbook, &options).map_err(|diagnostics| {
        eprintln!("{diagnostics}");
        Exit::Invalid
    })
}

/// `--expect-plan`: a silent dry run now must take the path the reviewed
/// one took, with the same arguments. What its checks read differently (an
/// upload since) is said, and does not stop the run; a changed path or
/// argument refuses it, and says what changed.
fn check_fingerprint(plan: &crate::plan::Plan, args: &RunArgs, expected: &str) -> Result<(), Exit> {
    let options = executor::Options {
        dry_run: true,
        ..executor::Options::default()
    };
    let outcome = executor::execute(plan, &options, &mut []);
    let fingerprint = outcome.fingerprint.clone().unwrap_or_default();
    let expected = expected.trim();
    let reviews = review::dir(&args.runs);
    let compared = Review::load(&reviews, expected).zip(Review::of(&outcome.summary));
    let readings = compared
        .as_ref()
        .map(|(was, now)| was.readings(now))
        .unwrap_or_default();
    let lines = |lines: &[String]| -> String {
        lines
            .iter()
            .map(|l| format!("\n    {l}"))
            .collect::<String>()
    };
    if fingerprint == expected {
        if let (Some((was, _)), false) = (&compared, readings.is_empty()) {
            eprintln!(
                "note: the path and every argument are as reviewed at {}; what the steps read has changed since:{}",
                was.at,
                lines(&readings)
            );
        }
        return Ok(());
    }
    let changed = match &compared {
        Some((was, now)) => {
            let mut decisions = was.decisions(now);
            if decisions.is_empty() {
                decisions.push(
                    "the playbook, a template it uses or a variable changed since the review"
                        .into(),
                );
            }
            let mut text = format!(
                "\n  changed since the review at {}:{}",
                was.at,
                lines(&decisions)
            );
            if !readings.is_empty() {
                text.push_str(&format!(
                    "\n  what the steps read has changed too:{}",
                    lines(&readings)
                ));
            }
            text
        }
        // Reviewed elsewhere: only the fingerprint can be compared, so say
        // what the run would do now, for the reviewer to hold against it.
        None => {
            let path: Vec<String> = outcome
                .path
                .iter()
                .map(|p| crate::action::ellipsize(p, 160))
                .collect();
            format!(
                "\n  now it would:{}\n  (no record of that review in {}: a review made with --dry-run --save-review lists the differences)",
                lines(&path),
                reviews.display()
            )
        }
    };
    eprintln!(
        "error: what the run would do changed since the review (a step, the path or an argument): expected fingerprint {expected}, now {fingerprint}{changed}\n  \
         help: review it again: runbook run {} --dry-run (with the same --var flags)",
        args.playbook.display()
    );
    Err(Exit::Invalid)
}
