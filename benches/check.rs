//! What `runbook check` and `runbook run --dry-run` of the emergency plan
//! are made of: the process's own start, reading the YAML of its six
//! playbooks, the rest of the analysis, and the dry run's rehearsal on
//! copies. Each is timed here, alternately, in one run:
//!
//!     cargo build --release --locked && cargo bench --bench check
//!
//! `runbook --version` is the start of the same binary (clap, the
//! allocator, the dynamic loader): the floor of any command.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use runbook::analyzer::{self, Options};
use runbook::diagnostic::SourceFile;

const RUNS: usize = 200;

fn median(mut times: Vec<Duration>) -> Duration {
    times.sort();
    times[times.len() / 2]
}

fn ms(d: Duration) -> String {
    format!("{:.2} ms", d.as_secs_f64() * 1000.0)
}

fn main() {
    let binary = common::release_binary();
    // The demo install, on which the dry run rehearses the plan.
    let demo = tempfile::tempdir().expect("a scratch directory");
    let status = Command::new(&binary)
        .args(["demo", "--build-only"])
        .arg(demo.path())
        .stdout(std::process::Stdio::null())
        .status()
        .expect("runbook starts");
    assert!(status.success(), "runbook demo --build-only failed");

    // In process too, the plan is read as the processes read it.
    std::env::set_current_dir(demo.path()).expect("the demo install");
    let emergency = Path::new("playbooks/emergency_rollback.yaml");
    let plan: Vec<PathBuf> = [
        "emergency_rollback",
        "notify",
        "rollback-option-1",
        "rollback-option-2",
        "rollback-option-3",
        "verify",
    ]
    .iter()
    .map(|name| PathBuf::from(format!("playbooks/{name}.yaml")))
    .collect();
    let files: Vec<Arc<SourceFile>> = plan
        .iter()
        .map(|path| {
            Arc::new(SourceFile {
                path: path.clone(),
                text: std::fs::read_to_string(path).expect("a playbook of the plan"),
                quotable: true,
            })
        })
        .collect();
    let options = Options {
        vars: Vec::new(),
        require_values: false,
    };

    let spawn = |args: &[&str]| {
        let start = Instant::now();
        let status = Command::new(&binary)
            .args(args)
            .current_dir(demo.path())
            .stdout(std::process::Stdio::null())
            .status()
            .expect("runbook starts");
        assert!(status.success(), "runbook {args:?} failed");
        start.elapsed()
    };
    let check_args = ["check", "playbooks/emergency_rollback.yaml"];
    let dry_run_args = [
        "run",
        "playbooks/emergency_rollback.yaml",
        "--var",
        "root=app",
        "--var",
        "reason=bench",
        "--var",
        "probe=off",
        "--dry-run",
    ];

    let (mut start, mut check, mut dry_run, mut parse, mut analysis) =
        (vec![], vec![], vec![], vec![], vec![]);
    for _ in 0..RUNS {
        start.push(spawn(&["--version"]));
        check.push(spawn(&check_args));
        dry_run.push(spawn(&dry_run_args));
        let t = Instant::now();
        for file in &files {
            runbook::node::parse(file).expect("the plan's YAML parses");
        }
        parse.push(t.elapsed());
        let t = Instant::now();
        analyzer::analyze(emergency, &options).expect("the plan checks");
        analysis.push(t.elapsed());
    }
    let (start, check, dry_run, parse, analysis) = (
        median(start),
        median(check),
        median(dry_run),
        median(parse),
        median(analysis),
    );
    println!("medians of {RUNS} alternating runs, on the demo install");
    println!(
        "`runbook run --dry-run` emergency_rollback         {}",
        ms(dry_run)
    );
    println!(
        "  beyond check: the rehearsal on copies          {}",
        ms(dry_run.saturating_sub(check))
    );
    println!(
        "`runbook check` emergency_rollback (a process)   {}",
        ms(check)
    );
    println!(
        "`runbook --version` (a process: its start alone) {}",
        ms(start)
    );
    println!(
        "analysis in process (what check adds)            {}",
        ms(analysis)
    );
    println!(
        "  of which: YAML of the six playbooks            {}",
        ms(parse)
    );
    println!(
        "start + YAML alone, the floor with this parser   {} ({:.2}× of check)",
        ms(start + parse),
        (start + parse).as_secs_f64() / check.as_secs_f64()
    );
}
