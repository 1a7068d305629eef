//! A run whose record cannot be written (the disk fills up under it) does
//! not end with "run succeeded": its last line says what failed, the exit
//! code is 1, and no temporary file is left in the run directory.

use std::process::Stdio;

use crate::BIN;

#[test]
fn a_run_whose_journal_or_report_cannot_be_written_says_so_last_and_exits_1() {
    let t = tempfile::tempdir().unwrap();
    // Enough steps for the journal and the report to outgrow 8 KiB.
    let mut pb = String::from("name: many\nsteps:\n");
    for i in 0..60 {
        pb.push_str(&format!(
            "  - id: step-{i}\n    action: shell\n    with: {{command: [touch, done-{i}]}}\n"
        ));
    }
    std::fs::write(t.path().join("many.yaml"), pb).unwrap();
    // `ulimit -f 16`: no file may grow past 8 KiB, as on a disk that fills up.
    let out = std::process::Command::new("sh")
        .arg("-c")
        .arg("ulimit -f 16 && exec \"$0\" run many.yaml")
        .arg(BIN)
        .current_dir(t.path())
        .env("NO_COLOR", "1")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stdout}\n{stderr}");
    assert!(!stdout.contains("run succeeded"), "{stdout}");
    // The verdict may be folded over lines; it is read as one.
    let verdict = stdout.replace("\n  ", " ");
    assert!(
        verdict.contains("run failed: every step succeeded, but the run's journal or report could not be written: File too large"),
        "{stdout}"
    );
    assert!(
        stderr.trim_end().lines().rev().nth(1).is_some_and(
            |l| l.starts_with("error: the journal or report could not be written completely")
        ),
        "{stderr}"
    );
    let run = std::fs::read_dir(t.path().join(".runbook/runs"))
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    let left: Vec<String> = std::fs::read_dir(&run)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".tmp"))
        .collect();
    assert!(left.is_empty(), "temporary files left: {left:?}");
    // The steps themselves all ran.
    assert!(t.path().join("done-59").exists());
}
