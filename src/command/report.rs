//! `runbook report RUN`: the incident report, rebuilt from the journal
//! alone, as Markdown (also written back to the run's report.md) or JSON.

use std::path::Path;

use crate::cli::ReportFormat;
use crate::exit::Exit;
use crate::{journal, report, run_dir};

pub fn report(run: &str, format: ReportFormat, runs: &Path) -> Exit {
    let dir = match run_dir::locate(run, runs) {
        Ok(d) => d,
        Err(msg) => {
            eprintln!("error: {msg}");
            return Exit::Invalid;
        }
    };
    let events = match journal::read(&dir.join(journal::FILE_NAME)) {
        Ok(e) => e,
        Err(err) => {
            eprintln!("error: {err:#}");
            return Exit::Failed;
        }
    };
    match format {
        ReportFormat::Markdown => {
            let md = report::render(&events);
            if let Err(err) = report::write_atomically(&dir.join(report::FILE_NAME), md.as_bytes())
            {
                eprintln!(
                    "error: cannot write {}: {err}",
                    dir.join(report::FILE_NAME).display()
                );
                return Exit::Failed;
            }
            print!("{md}");
        }
        ReportFormat::Json => println!("{}", report::summary(&events)),
    }
    Exit::Success
}
