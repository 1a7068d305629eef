//! `runbook resume RUN`: continues an interrupted or failed run from its
//! journal, in the same run directory. Steps the run finished are not run
//! again while their `verify` checks still hold; everything else runs. A
//! playbook that changed since the run started is refused unless forced.

use std::collections::HashMap;
use std::path::Path;

use crate::cli::RunRef;
use crate::event::{Event, RunStatus};
use crate::exit::Exit;
use crate::{analyzer, executor, journal, reporter};

pub fn resume(
    which: &RunRef,
    force: bool,
    yes: bool,
    json: bool,
    verbose: bool,
    wait: Option<std::time::Duration>,
    remote: crate::cli::RemoteArgs,
) -> Exit {
    let (dir, events) = match super::recorded_run(which) {
        Ok(run) => run,
        Err(exit) => return exit,
    };
    let journal_path = dir.join(journal::FILE_NAME);
    let Some(Event::RunStarted {
        file,
        cli_vars,
        plan: recorded,
        rehearsal,
        ..
    }) = events.first().cloned()
    else {
        eprintln!(
            "error: {} does not start with a run: nothing to resume",
            journal_path.display()
        );
        return Exit::Invalid;
    };
    if rehearsal {
        eprintln!(
            "error: {} was a rehearsal; rehearse again instead of resuming it",
            dir.display()
        );
        return Exit::Invalid;
    }
    if succeeded(&events) {
        return nothing_to_resume(&dir, &events, json);
    }
    // Secret values were never written down: they must come from the
    // environment again (RUNBOOK_SECRET_<NAME>), not from the journal's `***`.
    let cli_vars: Vec<(String, String)> =
        cli_vars.into_iter().filter(|(_, v)| v != "***").collect();
    let options = analyzer::Options {
        vars: cli_vars.clone(),
        require_values: true,
    };
    let plan = match analyzer::analyze(Path::new(&file), &options) {
        Ok(p) => p,
        Err(diagnostics) => {
            eprintln!("{diagnostics}");
            return Exit::Invalid;
        }
    };
    if plan.fingerprint != recorded && !force {
        eprintln!(
            "error: {file} (or a playbook or template it uses, or a variable) changed since the run started\n  \
             help: review the change; `runbook resume {} --force` resumes with the playbook as it is now",
            which.run
        );
        return Exit::Invalid;
    }
    let answered = |id: &str| {
        events.iter().any(|e| {
            matches!(e, Event::StepFinished { step, status, .. } if step == id && status.is_done())
        })
    };
    if let Err(exit) = super::run::unaskable(&plan, yes, answered) {
        return exit;
    }
    let mut locks = match crate::lock::Locks::acquire(&plan.changes(), wait) {
        Ok(locks) => locks,
        Err(err) => return super::run::refused(&err),
    };
    locks.set_run_dir(&dir);
    // The journal's own writer (the run itself, still finishing its
    // `always` steps, whose playbook may take no install lock) is waited
    // for as the install's holder is.
    let journal = match append_when_free(&journal_path, wait) {
        Ok(j) => j,
        Err(err) if err.kind() == std::io::ErrorKind::WouldBlock => {
            eprintln!(
                "error: the run in {} is still going on: another process is writing its journal\n  help: let it finish (or give --wait), then resume it if it did not succeed",
                dir.display()
            );
            return Exit::Locked;
        }
        Err(err) => {
            eprintln!("error: cannot append to {}: {err}", journal_path.display());
            return Exit::Failed;
        }
    };
    // Read again under the locks: another resume, or the run itself, may
    // have finished it while this one was waiting.
    let events = match journal::read(&journal_path) {
        Ok(events) if succeeded(&events) => return nothing_to_resume(&dir, &events, json),
        Ok(events) => events,
        Err(err) => {
            eprintln!("error: {err:#}");
            return Exit::Failed;
        }
    };
    // The last word on each step; a step is done if it finished well.
    let mut previous = HashMap::new();
    for e in &events {
        if let Event::StepFinished {
            step,
            status,
            outputs,
            detail,
            recovered_by,
            ..
        } = e
        {
            let done = crate::executor::Done {
                status: *status,
                outputs: outputs.clone(),
                detail: detail.clone(),
                recovered_by: recovered_by.clone(),
            };
            previous.insert(step.clone(), done);
        }
    }
    // The always steps speak of the outcome, which is not known yet: they run again.
    for step in &plan.always {
        let nested = format!("{}.", step.id);
        previous.retain(|id: &String, _| *id != step.id && !id.starts_with(&nested));
    }
    let terminal = reporter::setup_colours();
    if !json {
        say!(
            "resuming {}: {} steps finished before",
            dir.display(),
            previous.len()
        );
    }
    let options = executor::Options {
        yes,
        run_dir: Some(dir.clone()),
        cli_vars,
        previous: Some(previous),
        interrupt: Some(crate::interrupt::flag()),
        earlier: events,
        remote,
        ..executor::Options::default()
    };
    super::run::execute(
        &plan,
        &options,
        Some(journal),
        Some(locks),
        None,
        reporter::ViewOptions {
            json,
            terminal,
            verbose,
        },
    )
}

fn succeeded(events: &[Event]) -> bool {
    matches!(
        events.last(),
        Some(Event::RunFinished {
            status: RunStatus::Succeeded,
            ..
        })
    )
}

/// A run that succeeded has nothing to resume. With `--json`, its recorded
/// end is printed, so that a program (a fleet controller whose copy of the
/// journal lost that end) learns the outcome from the run's own record.
fn nothing_to_resume(dir: &Path, events: &[Event], json: bool) -> Exit {
    let end = events
        .iter()
        .rev()
        .find(|e| matches!(e, Event::RunFinished { .. }));
    match (json, end.map(serde_json::to_string)) {
        (true, Some(Ok(line))) => say!("{line}"),
        _ => say!("the run in {} succeeded: nothing to resume", dir.display()),
    }
    Exit::Success
}

/// The journal opened for appending once no other process writes it,
/// waiting up to `wait` for one that does.
fn append_when_free(
    path: &Path,
    wait: Option<std::time::Duration>,
) -> std::io::Result<journal::Journal> {
    let deadline = std::time::Instant::now() + wait.unwrap_or_default();
    loop {
        match journal::Journal::append(path) {
            Err(err)
                if err.kind() == std::io::ErrorKind::WouldBlock
                    && std::time::Instant::now() < deadline =>
            {
                std::thread::sleep(std::time::Duration::from_millis(100));
            }
            other => return other,
        }
    }
}
