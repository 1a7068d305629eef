//! `runbook report RUN`: the incident report, rebuilt from the journal
//! alone, as Markdown (also written back to the run's report.md) or JSON.

use crate::cli::{ReportFormat, RunRef};
use crate::exit::Exit;
use crate::report;

pub fn report(which: &RunRef, format: ReportFormat) -> Exit {
    let (dir, events) = match super::recorded_run(which) {
        Ok(run) => run,
        Err(exit) => return exit,
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
