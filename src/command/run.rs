//! `runbook run`: analyze a playbook, make the run directory, execute, and
//! map the outcome to an exit code.

use crate::cli::RunArgs;
use crate::event::{RunStatus, Sink};
use crate::exit::Exit;
use crate::{analyzer, executor, journal, report, reporter, run_dir};

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

    let mut journal = match &run_dir {
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
    let mut report = run_dir
        .as_ref()
        .map(|d| report::Report::new(d.join(report::FILE_NAME)));
    let mut human = reporter::Human::new(terminal);
    let mut json = reporter::JsonLines;
    let mut sinks: Vec<&mut dyn Sink> = Vec::new();
    if let Some(j) = journal.as_mut() {
        sinks.push(j);
    }
    if let Some(r) = report.as_mut() {
        sinks.push(r);
    }
    if args.json {
        sinks.push(&mut json);
    } else {
        sinks.push(&mut human);
    }

    let exec_options = executor::Options {
        dry_run: args.dry_run,
        yes: args.yes,
        run_dir: run_dir.clone(),
    };
    let outcome = executor::execute(&plan, &exec_options, &mut sinks);
    if let Some(dir) = &run_dir {
        if !args.json {
            println!("report: {}", dir.join(report::FILE_NAME).display());
        }
    }
    if let Some(err) = outcome.sink_error {
        eprintln!("error: the journal or report could not be written completely: {err}");
        if outcome.status == RunStatus::Succeeded {
            return Exit::Failed;
        }
    }
    match outcome.status {
        RunStatus::Succeeded => Exit::Success,
        RunStatus::Failed => Exit::Failed,
        RunStatus::Aborted => Exit::Aborted,
    }
}
