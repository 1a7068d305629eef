//! `runbook report` and `runbook resume`: the run directory is enough to
//! tell what happened and to finish what was started.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use crate::gofastcdn::Install;
use crate::support::{emergency_args, Test};

fn args(extra: &[&str]) -> Vec<String> {
    let mut base = vec!["--yes", "--var", "notify_to=lead@example.com"];
    base.extend_from_slice(extra);
    emergency_args("media broken", &base)
}

#[test]
fn report_rebuilds_the_report_from_the_journal_alone() {
    let t = Test::new();
    let app = Install::new(&t.path().join("app"), 10, 10);
    app.legacy_backup("20240501-120000");
    app.migrate().unwrap();
    let a = args(&[]);
    let out = t.run(&a.iter().map(String::as_str).collect::<Vec<_>>());
    out.code(0);
    let dir = out.run_dir();
    let written = std::fs::read_to_string(dir.join("report.md")).unwrap();
    std::fs::remove_file(dir.join("report.md")).unwrap();
    let name = dir.file_name().unwrap().to_string_lossy().into_owned();
    let md = t.run(&["report", &name]);
    md.code(0);
    assert_eq!(
        md.stdout, written,
        "the report from the journal differs from the one the run wrote"
    );
    // A read: nothing is written back.
    assert!(!dir.join("report.md").exists(), "report wrote report.md");
    let js = t.run(&["report", "latest", "--json"]);
    js.code(0);
    assert_eq!(
        js.stdout,
        t.run(&["report", "latest", "--format", "json"]).stdout,
        "--json and --format json differ"
    );
    let v: serde_json::Value = serde_json::from_str(&js.stdout).unwrap();
    assert_eq!(v["status"], "succeeded");
    assert_eq!(v["deadline_met"], true);
    let rollback = v["steps"]
        .as_array()
        .and_then(|steps| steps.iter().find(|s| s["id"] == "option-1.rollback"))
        .expect("the summary has option-1.rollback");
    assert_eq!(rollback["outputs"]["changes_by_statement"][4], 0);
    assert_eq!(rollback["action"], "sqlite.exec");
    t.run(&["report", "nope"])
        .code(2)
        .stderr_has("error: no run `nope`");
}

/// kill -9 in the middle of option 2, then resume: a verified state.
#[test]
fn a_run_killed_in_the_middle_of_option_2_resumes_to_a_verified_state() {
    let t = Test::new();
    let app = Install::new(&t.path().join("app"), 4000, 2000);
    app.legacy_backup("20240501-120000");
    app.migrate().unwrap();
    app.upload("after.png", "image");
    app.conn().execute_batch("DROP TABLE images").unwrap();

    let mut child = t
        .command(&args(&[]))
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    // Wait until option 2 has started restoring, then kill.
    let runs = t.path().join(".runbook/runs");
    let started = Instant::now();
    let journal: PathBuf = loop {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "option 2 never started"
        );
        let found = std::fs::read_dir(&runs)
            .ok()
            .and_then(|mut d| d.next())
            .map(|e| e.unwrap().path().join("journal.jsonl"));
        if let Some(j) = found.filter(|j| {
            std::fs::read_to_string(j).is_ok_and(|s| {
                s.contains(r#""step_started","at":"#) && s.contains(r#""step":"option-2.restore""#)
            })
        }) {
            child.kill().unwrap();
            break j;
        }
        std::thread::sleep(Duration::from_millis(1));
    };
    child.wait().unwrap();
    let text = std::fs::read_to_string(&journal).unwrap();
    assert!(
        !text.contains("run_finished"),
        "the run finished before it was killed"
    );

    let out = t.run(&["resume", "latest", "--yes"]);
    out.code(0).stdout_has("resuming");
    let events: Vec<serde_json::Value> = std::fs::read_to_string(&journal)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let last = events.last().unwrap();
    assert_eq!(last["event"], "run_finished");
    assert_eq!(last["status"], "succeeded");
    // Steps done before the kill were not done again.
    let skipped_as_done = events
        .iter()
        .filter(|e| {
            e["event"] == "step_finished"
                && e["detail"]
                    .as_str()
                    .is_some_and(|d| d.starts_with("done before the interruption"))
        })
        .count();
    assert!(
        skipped_as_done >= 3,
        "{skipped_as_done} steps were taken as done"
    );
    assert!(!app.has_table("media"));
    assert_eq!(
        app.count("images"),
        4001,
        "the backup's 4000 plus the upload carried back"
    );
}

#[test]
fn resume_refuses_a_changed_playbook_unless_forced() {
    let t = Test::new().file(
        "pb.yaml",
        "steps:\n  - id: one\n    action: shell\n    with: {command: [touch, one]}\n  - id: two\n    action: shell\n    with: {command: [sh, -c, 'test -e go']}\n",
    );
    t.run(&["run", "pb.yaml"]).code(1);
    std::fs::write(t.path().join("go"), "").unwrap();
    std::fs::remove_file(t.path().join("one")).unwrap();
    // Unchanged playbook: `one` finished before (no verify), so only `two` runs.
    let out = t.run(&["resume", "latest"]);
    out.code(0);
    assert!(!t.path().join("one").exists(), "a finished step ran again");

    let t = Test::new().file(
        "pb.yaml",
        "steps:\n  - id: two\n    action: shell\n    with: {command: [sh, -c, 'test -e go']}\n",
    );
    t.run(&["run", "pb.yaml"]).code(1);
    std::fs::write(
        t.path().join("pb.yaml"),
        "steps:\n  - id: two\n    action: shell\n    with: {command: [\"true\"]}\n",
    )
    .unwrap();
    t.run(&["resume", "latest"])
        .code(2)
        .stderr_has("changed since the run started");
    t.run(&["resume", "latest", "--force"]).code(0);
}

#[test]
fn a_finished_step_whose_verify_no_longer_holds_runs_again() {
    let t = Test::new().file(
        "pb.yaml",
        r#"
steps:
  - id: make
    action: shell
    with: {command: [touch, made]}
    verify:
      - name: made exists
        action: shell
        with: {command: [test, -e, made], read_only: true}
  - id: gate
    action: shell
    with: {command: [test, -e, go]}
"#,
    );
    let failed = t.run(&["run", "pb.yaml"]);
    failed.code(1);
    // It ends with the exact line to type next; typed, it resumes the run.
    let last = failed.stdout.lines().last().unwrap();
    let command = last
        .strip_prefix("resume: runbook ")
        .unwrap_or_else(|| panic!("no resume line: {}", failed.stdout));
    std::fs::remove_file(t.path().join("made")).unwrap();
    std::fs::write(t.path().join("go"), "").unwrap();
    let args: Vec<&str> = command.split(' ').collect();
    assert_eq!(args[0], "resume");
    t.run(&args).code(0);
    assert!(
        t.path().join("made").exists(),
        "the step whose verify failed was not run again"
    );
}

/// `runbook run pb.yaml`, with SIGINT sent to it 300 ms in, as Ctrl-C would.
fn run_and_press_ctrl_c(t: &Test) -> std::process::Output {
    let child = t
        .command(&["run", "pb.yaml"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(300));
    let pid = libc::pid_t::try_from(child.id()).unwrap();
    // SAFETY: sends SIGINT to the child we spawned, as Ctrl-C would.
    unsafe {
        libc::kill(pid, libc::SIGINT);
    }
    child.wait_with_output().unwrap()
}

#[test]
fn ctrl_c_stops_between_steps_runs_the_always_steps_and_exits_130() {
    let t = Test::new().file(
        "pb.yaml",
        "steps:\n  - id: slow\n    action: shell\n    with: {command: [sh, -c, 'sleep 1; touch slow-done']}\n  - id: next\n    action: shell\n    with: {command: [touch, next]}\nalways:\n  - id: tell\n    action: shell\n    with: {command: [sh, -c, 'echo $1 > outcome', _, \"{{ run.status }}\"]}\n",
    );
    let out = run_and_press_ctrl_c(&t);
    assert_eq!(out.status.code(), Some(130));
    assert!(
        t.path().join("slow-done").exists(),
        "the step under way was cut short"
    );
    assert!(!t.path().join("next").exists(), "a step ran after Ctrl-C");
    assert_eq!(
        std::fs::read_to_string(t.path().join("outcome")).unwrap(),
        "interrupted\n"
    );
    assert!(String::from_utf8_lossy(&out.stderr)
        .contains("interrupted: stopping after the step under way"));
}

/// Ctrl-C inside an included playbook stops the run as interrupted too:
/// neither the include's fallback nor the rest runs, and an included
/// `always` playbook still runs all its steps.
#[test]
fn ctrl_c_inside_an_include_stops_the_run_as_interrupted_and_the_always_include_runs_whole() {
    let t = Test::new()
        .file(
            "inner.yaml",
            "steps:\n  - id: slow\n    action: shell\n    with: {command: [sh, -c, 'sleep 1; touch slow-done']}\n  - id: next\n    action: shell\n    with: {command: [touch, next]}\n",
        )
        .file(
            "tell.yaml",
            "steps:\n  - id: one\n    action: shell\n    with: {command: [sh, -c, 'echo one $1 >> outcome', _, \"{{ run.status }}\"]}\n  - id: two\n    action: shell\n    with: {command: [sh, -c, 'echo two $1 >> outcome', _, \"{{ run.status }}\"]}\n",
        )
        .file(
            "pb.yaml",
            "steps:\n  - id: work\n    playbook: inner.yaml\n    fallback:\n      - id: plan-b\n        action: shell\n        with: {command: [touch, plan-b]}\nalways:\n  - id: tell\n    playbook: tell.yaml\n",
        );
    let out = run_and_press_ctrl_c(&t);
    assert_eq!(
        out.status.code(),
        Some(130),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(t.path().join("slow-done").exists());
    assert!(!t.path().join("next").exists(), "a step ran after Ctrl-C");
    assert!(
        !t.path().join("plan-b").exists(),
        "a fallback ran after Ctrl-C"
    );
    assert_eq!(
        std::fs::read_to_string(t.path().join("outcome")).unwrap(),
        "one interrupted\ntwo interrupted\n"
    );
}

/// A run killed in its first step finished no step; resuming it is still a
/// resume, so the report goes on under the same title.
#[test]
fn a_run_killed_in_its_first_step_resumes_as_a_resume() {
    let t = Test::new().file(
        "pb.yaml",
        "steps:\n  - id: slow\n    action: shell\n    with: {command: [sh, -c, 'test -e go || sleep 5']}\n",
    );
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_runbook"))
        .args(["run", "pb.yaml"])
        .current_dir(t.path())
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let runs = t.path().join(".runbook/runs");
    let journal = || -> Option<PathBuf> {
        let dir = std::fs::read_dir(&runs).ok()?.next()?.ok()?.path();
        Some(dir.join("journal.jsonl")).filter(|j| j.exists())
    };
    let started = Instant::now();
    while journal().is_none() && started.elapsed() < Duration::from_secs(5) {
        std::thread::sleep(Duration::from_millis(20));
    }
    std::thread::sleep(Duration::from_millis(200));
    child.kill().unwrap();
    child.wait().unwrap();
    std::fs::write(t.path().join("go"), "").unwrap();
    t.run(&["resume", "latest"]).code(0);
    let journal = journal().expect("the run's journal");
    let starts: Vec<bool> = std::fs::read_to_string(&journal)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .filter(|e| e["event"] == "run_started")
        .map(|e| e["resumed"].as_bool().unwrap())
        .collect();
    assert_eq!(starts, [false, true]);
    let report = std::fs::read_to_string(journal.with_file_name("report.md")).unwrap();
    assert_eq!(report.matches("# Run of").count(), 1, "{report}");
}

#[test]
fn the_always_steps_run_again_on_resume() {
    let t = Test::new().file(
        "pb.yaml",
        "steps:\n  - id: gate\n    action: shell\n    with: {command: [test, -e, go]}\nalways:\n  - id: tell\n    action: shell\n    with: {command: [sh, -c, 'echo $1 >> outcomes', _, \"{{ run.status }}\"]}\n",
    );
    t.run(&["run", "pb.yaml"]).code(1);
    std::fs::write(t.path().join("go"), "").unwrap();
    t.run(&["resume", "latest"]).code(0);
    assert_eq!(
        std::fs::read_to_string(t.path().join("outcomes")).unwrap(),
        "failed\nsucceeded\n"
    );
}

/// The incident's clock does not restart on resume: the same deadline, the
/// time since the first start, in the terminal, the journal and the mail.
#[test]
fn a_resumed_run_keeps_the_incidents_clock() {
    let t = Test::new();
    let app = Install::new(&t.path().join("app"), 10, 10);
    app.legacy_backup("20240501-120000");
    app.migrate().unwrap();
    let a = args(&[]);
    // Killed just after it started stopping the app.
    let killed = std::process::Command::new(env!("CARGO_BIN_EXE_runbook"))
        .args(&a)
        .current_dir(t.path())
        .env("RUNBOOK_FAULT_AT", "12")
        .stdout(std::process::Stdio::null())
        .status()
        .unwrap();
    assert!(!killed.success());
    std::thread::sleep(Duration::from_millis(2100));
    let out = t.run(&["resume", "latest", "--yes"]);
    out.code(0);
    let events = out.journal();
    let starts: Vec<&serde_json::Value> = events
        .iter()
        .filter(|e| e["event"] == "run_started")
        .collect();
    assert_eq!(starts.len(), 2);
    assert_eq!(
        starts[1]["deadline_at"], starts[0]["deadline_at"],
        "the resume set a new deadline"
    );
    let finished = events.last().unwrap();
    assert!(
        finished["duration_ms"].as_u64().unwrap() >= 2000,
        "the run's time restarted: {finished}"
    );
    // The alert written to the outbox before the kill is still a warning,
    // once, in its own words; the outcome mail's is the resumed run's own.
    // (A run that may not look at every process also warns that it could
    // not: those are not this test's.)
    let warnings: Vec<&str> = finished["warnings"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|w| w.as_str())
        .filter(|w| !w.contains("may not be looked at"))
        .collect();
    assert_eq!(
        warnings,
        [
            "alert.initiated: not sent: written to the outbox only (transport: file)",
            "report.outcome: not sent: written to the outbox only (transport: file)"
        ],
        "{finished}"
    );
    let deadline = starts[0]["deadline_at"].as_str().unwrap();
    out.stdout_has(&format!("deadline: 15m, by {deadline}"));
    assert!(
        !out.stdout.contains("run succeeded in 0."),
        "{}",
        out.stdout
    );
    // The outcome mail counts from the first start too.
    let outbox = out.run_dir().join("outbox");
    let mail = std::fs::read_dir(&outbox)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.to_string_lossy().contains("completed"))
        .expect("the outcome mail");
    let raw = std::fs::read(mail).unwrap();
    let parsed = mailparse::parse_mail(&raw).unwrap();
    let body = parsed
        .subparts
        .first()
        .map_or_else(|| parsed.get_body().unwrap(), |p| p.get_body().unwrap());
    let elapsed: u64 = body
        .split("elapsed ")
        .nth(1)
        .and_then(|rest| rest.split('s').next())
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or_else(|| panic!("no elapsed time in the mail:\n{body}"));
    assert!(elapsed >= 2, "the mail says elapsed {elapsed}s:\n{body}");
}

/// A step rescued by a fallback inside an include is recorded, after a
/// resume, as rescued by the same fallback (its full id), as the
/// interrupted run recorded it.
#[test]
fn a_rescued_step_keeps_its_rescuer_across_a_resume() {
    let t = Test::new()
        .file(
            "inner.yaml",
            "steps:\n  - id: a\n    action: shell\n    with: {command: [\"false\"]}\n    fallback:\n      - id: alt\n        action: shell\n        with: {command: [\"true\"]}\n  - id: gate\n    action: shell\n    with: {command: [test, -e, open]}\n",
        )
        .file("pb.yaml", "steps:\n  - id: inc\n    playbook: inner.yaml\n");
    t.run(&["run", "pb.yaml"]).code(1);
    // The resumed run enters the include again and takes `a` as done.
    let rescuer = |out: &crate::support::Output| out.finished("inc.a")["recovered_by"].clone();
    let first = t.run(&["report", "latest", "--json"]);
    let before: serde_json::Value = serde_json::from_str(&first.stdout).unwrap();
    std::fs::write(t.path().join("open"), "").unwrap();
    let resumed = t.run(&["resume", "latest"]);
    resumed.code(0);
    assert_eq!(rescuer(&resumed), "inc.alt");
    let after: serde_json::Value =
        serde_json::from_str(&t.run(&["report", "latest", "--json"]).stdout).unwrap();
    assert_eq!(after["recoveries"], before["recoveries"], "{after}");
}
