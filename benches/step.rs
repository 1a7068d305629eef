//! What a shell step cannot cost less than. Timed alternately, in one run:
//!
//!     cargo build --release --locked && cargo bench --bench step
//!
//! - the baseline of docs/PERFORMANCE.md: a shell loop starting `/bin/true`
//!   1,000 times;
//! - the least any step runner does for a step that runs a program and
//!   keeps what it printed: start it (posix_spawn, as runbook does), read
//!   its two pipes to their end, wait for it; 1,000 times, in one process;
//! - the same, and at each step's end one line appended to a journal and
//!   forced to disk (`fdatasync`), before the next step may start: what a
//!   resume needs never to run a finished step again;
//! - runbook running a playbook of 1,000 such steps.
//!
//! The third against the first is the floor of the shell-step ratio for a
//! runner that keeps that promise; the last against the third is what
//! runbook itself adds.

mod common;

use std::io::{Read, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const STEPS: usize = 1000;
const RUNS: usize = 9;

/// Starts `/bin/true` with its output captured, as a step does, and waits
/// for it; the bytes it printed are read to the end of both pipes.
fn one_program() {
    let mut child = Command::new("/bin/true")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("/bin/true starts");
    let mut out = Vec::new();
    if let Some(mut o) = child.stdout.take() {
        o.read_to_end(&mut out).expect("reading its stdout");
    }
    if let Some(mut e) = child.stderr.take() {
        e.read_to_end(&mut out).expect("reading its stderr");
    }
    assert!(child.wait().expect("waiting for it").success());
}

fn programs(journal: Option<&Path>) -> Duration {
    let mut file = journal.map(|p| {
        std::fs::OpenOptions::new()
            .create(true)
            .truncate(true)
            .write(true)
            .open(p)
            .expect("a journal file")
    });
    let start = Instant::now();
    for i in 0..STEPS {
        one_program();
        if let Some(f) = file.as_mut() {
            writeln!(
                f,
                "{{\"event\":\"step_finished\",\"step\":\"s{i}\",\"status\":\"ok\"}}"
            )
            .expect("appending to the journal");
            f.sync_data().expect("forcing the journal to disk");
        }
    }
    start.elapsed()
}

fn process(args: &[&str], dir: &Path) -> Duration {
    let start = Instant::now();
    let status = Command::new(args[0])
        .args(&args[1..])
        .current_dir(dir)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .expect("the command starts");
    let took = start.elapsed();
    assert!(status.success(), "{args:?} failed");
    took
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() {
    let binary = common::release_binary();
    let binary = binary.to_str().expect("a UTF-8 path");
    // On the disk the runs go to, as in benches/executor.py.
    let scratch = std::env::var("BENCH_DIR").unwrap_or_else(|_| "/var/tmp".to_owned());
    let work = tempfile::Builder::new()
        .prefix("runbook-step-")
        .tempdir_in(scratch)
        .expect("a scratch directory");
    let dir = work.path();
    let playbook: String = std::iter::once("steps:\n".to_owned())
        .chain((0..STEPS).map(|i| {
            format!("  - id: s{i}\n    action: shell\n    with: {{command: [\"true\"]}}\n")
        }))
        .collect();
    std::fs::write(dir.join("steps.yaml"), playbook).expect("writing the playbook");
    let journal = dir.join("journal.jsonl");
    let loop_ = [
        "sh",
        "-c",
        "i=0; while [ $i -lt 1000 ]; do /bin/true; i=$((i+1)); done",
    ];
    let run = [binary, "run", "steps.yaml", "--runs", "runs"];

    // Warm: the page cache, the binary, the directory.
    process(&loop_, dir);
    process(&run, dir);
    programs(Some(&journal));

    let names = [
        "sh loop starting /bin/true",
        "spawn + both pipes + wait",
        "the same + journal line + fdatasync",
        "runbook, 1,000 shell steps",
    ];
    let mut times: Vec<Vec<f64>> = vec![Vec::new(); names.len()];
    for _ in 0..RUNS {
        let took = [
            process(&loop_, dir),
            programs(None),
            programs(Some(&journal)),
            process(&run, dir),
        ];
        for (t, d) in times.iter_mut().zip(took) {
            t.push(d.as_secs_f64());
        }
    }
    // Ratios run by run, against the loop of the same round.
    let ratio = |k: usize, of: usize| -> f64 {
        median(
            times[k]
                .iter()
                .zip(&times[of])
                .map(|(a, b)| a / b)
                .collect(),
        )
    };
    println!("{STEPS} steps, {RUNS} alternating rounds, medians:");
    for (k, name) in names.iter().enumerate() {
        println!(
            "  {name:<38} {:>8.1} ms  {:.2}× the loop",
            median(times[k].clone()) * 1000.0,
            ratio(k, 0)
        );
    }
    println!(
        "  runbook against the floor with the journal: {:.2}×",
        ratio(3, 2)
    );
}
