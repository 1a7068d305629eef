//! runbook: a declarative runbook executor. A playbook (YAML) is parsed
//! ([`playbook`]), analyzed into a checked [`plan::Plan`] ([`analyzer`]),
//! executed ([`executor`]) and observed through events ([`event`]) by the
//! journal, the report and the terminal view.

use std::ffi::OsString;
use std::path::Path;
use std::process::ExitCode;

use clap::Parser;

pub mod action;
pub mod analyzer;
pub mod backup;
pub mod cli;
pub mod database;
pub mod diagnostic;
pub mod event;
pub mod executor;
pub mod exit;
pub mod journal;
pub mod node;
pub mod plan;
pub mod playbook;
pub mod report;
pub mod reporter;
pub mod run_dir;
pub mod template;

use cli::{Cli, Command, RunArgs};
use event::{RunStatus, Sink};
use exit::Exit;

/// Runs the command line and returns the process's exit code.
pub fn run<I, T>(args: I) -> ExitCode
where
    I: IntoIterator<Item = T>,
    T: Into<OsString> + Clone,
{
    let cli = match Cli::try_parse_from(args) {
        Ok(cli) => cli,
        Err(err) => {
            let _ = err.print();
            return if err.use_stderr() {
                Exit::Invalid
            } else {
                Exit::Success
            }
            .into();
        }
    };
    let exit = match cli.command {
        Command::Run(args) => run_playbook(&args),
        Command::Check { playbooks } => check(&playbooks),
        Command::List { dir } => list(&dir),
    };
    exit.into()
}

fn run_playbook(args: &RunArgs) -> Exit {
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

fn check(playbooks: &[std::path::PathBuf]) -> Exit {
    let mut failed = false;
    let options = analyzer::Options::default();
    for path in playbooks {
        match analyzer::analyze(path, &options) {
            Ok(plan) => println!("ok: {} ({} steps)", path.display(), plan.all_steps().len()),
            Err(diagnostics) => {
                eprintln!("{diagnostics}");
                failed = true;
            }
        }
    }
    if failed {
        Exit::Invalid
    } else {
        Exit::Success
    }
}

fn list(dir: &Path) -> Exit {
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(err) => {
            eprintln!("error: cannot list {}: {err}\n  help: name a directory of playbooks: runbook list DIR", dir.display());
            return Exit::Invalid;
        }
    };
    let mut files: Vec<_> = entries
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "yaml" || x == "yml"))
        .collect();
    files.sort();
    let rows: Vec<(String, String)> = files
        .iter()
        .map(|path| {
            let name = path.display().to_string();
            let about = match playbook::load(path) {
                Ok((pb, problems)) if problems.is_empty() => pb
                    .description
                    .as_deref()
                    .and_then(|d| d.lines().next())
                    .unwrap_or("")
                    .to_owned(),
                Ok((_, d)) | Err(d) => format!(
                    "(invalid: {} problem(s); run `runbook check {name}`)",
                    d.0.len()
                ),
            };
            (name, about)
        })
        .collect();
    let width = rows.iter().map(|(n, _)| n.len()).max().unwrap_or(0);
    for (name, about) in rows {
        println!("{name:width$}  {about}");
    }
    Exit::Success
}
