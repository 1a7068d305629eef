//! The subcommands, one file each; `lib.rs` dispatches to them.

pub mod backup;
pub mod check;
pub mod completions;
pub mod demo;
pub mod graph;
pub mod host;
pub mod list;
pub mod man;
pub mod report;
pub mod resume;
pub mod run;

use std::path::PathBuf;

use crate::cli::RunRef;
use crate::event::Event;
use crate::exit::Exit;
use crate::{journal, run_dir};

/// The directory of the run `which` names and the events of its journal;
/// what went wrong is printed.
fn recorded_run(which: &RunRef) -> Result<(PathBuf, Vec<Event>), Exit> {
    let dir = run_dir::locate(&which.run, &which.runs).map_err(|msg| {
        eprintln!("error: {msg}");
        Exit::Invalid
    })?;
    let events = journal::read(&dir.join(journal::FILE_NAME)).map_err(|err| {
        eprintln!("error: {err:#}");
        Exit::Failed
    })?;
    Ok((dir, events))
}
