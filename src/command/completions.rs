//! `runbook completions SHELL`: the script a shell sources to complete
//! runbook's command lines. It asks runbook itself at each TAB, so that
//! values only the disk knows are offered too: the runs under `--runs`
//! (and `latest`) for `report` and `resume`.

use std::path::PathBuf;

use clap_complete::env::EnvCompleter;
use clap_complete::CompletionCandidate;

use crate::exit::Exit;

/// The environment variable through which a shell asks for completions:
/// runbook's own, so that a `COMPLETE` another tool left in an operator's
/// environment does not turn every command into a completion request.
const VAR: &str = "RUNBOOK_COMPLETE";

/// Answers a shell asking for completions (`RUNBOOK_COMPLETE=bash runbook --
/// runbook report `), before anything else; `None` for every other start.
pub fn answer(args: &[std::ffi::OsString]) -> Option<Exit> {
    std::env::var_os(VAR)?;
    let here = std::env::current_dir().ok();
    match clap_complete::CompleteEnv::with_factory(
        <crate::cli::Cli as clap::CommandFactory>::command,
    )
    .var(VAR)
    .try_complete(args, here.as_deref())
    {
        Ok(true) => Some(Exit::Success),
        Ok(false) => None,
        Err(err) => {
            let _ = err.print();
            Some(Exit::Invalid)
        }
    }
}

pub fn completions(shell: clap_complete::Shell) -> Exit {
    let completer: &dyn EnvCompleter = match shell {
        clap_complete::Shell::Bash => &clap_complete::env::Bash,
        clap_complete::Shell::Zsh => &clap_complete::env::Zsh,
        clap_complete::Shell::Fish => &clap_complete::env::Fish,
        clap_complete::Shell::Elvish => &clap_complete::env::Elvish,
        clap_complete::Shell::PowerShell => &clap_complete::env::Powershell,
        _ => {
            eprintln!("error: no completions for {shell}");
            return Exit::Invalid;
        }
    };
    let mut script = Vec::new();
    // `runbook` as found on PATH when the shell asks, wherever it is installed.
    if let Err(err) =
        completer.write_registration(VAR, "runbook", "runbook", "runbook", &mut script)
    {
        eprintln!("error: cannot write the completion script: {err}");
        return Exit::Failed;
    }
    say!(raw: script);
    Exit::Success
}

/// The runs a command may name: `latest`, then each run directory under
/// `$RUNBOOK_RUNS` (or `.runbook/runs`), newest first.
pub fn run_names() -> Vec<CompletionCandidate> {
    let runs = std::env::var_os("RUNBOOK_RUNS")
        .map_or_else(|| PathBuf::from(".runbook/runs"), PathBuf::from);
    let mut names: Vec<String> = crate::run_dir::list(&runs)
        .unwrap_or_default()
        .iter()
        .filter_map(|dir| Some(dir.file_name()?.to_string_lossy().into_owned()))
        .collect();
    names.reverse();
    std::iter::once(CompletionCandidate::new("latest").help(Some("the newest run".into())))
        .chain(names.into_iter().map(CompletionCandidate::new))
        .collect()
}
