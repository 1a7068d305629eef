//! `runbook check`: analyze playbooks and report every problem; run nothing.

use crate::analyzer;
use crate::exit::Exit;

pub fn check(playbooks: &[std::path::PathBuf]) -> Exit {
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
