//! Kill, then resume: the emergency rollback is stopped right after each of
//! its journal events in turn — by SIGKILL, and by SIGINT as Ctrl-C would —
//! then `runbook resume latest --yes` finishes it. Every time, the end state
//! is the one an uninterrupted run reaches: the uploads carried back, the
//! video in the salvage file, media and the marker gone, integrity ok, and
//! no backup more than it makes. Then kills inside option 1's commit.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::gofastcdn::Install;
use crate::{assert_integrity, copy_tree, dump, emergency, runbook, scale, Rng};

/// A migrated install with `uploads` images and half as many docs uploaded
/// since the migration, and a video, which only the salvage file can keep.
fn install(dir: &Path, images: usize, docs: usize, uploads: usize) {
    let app = Install::new(&dir.join("app"), images, docs);
    app.legacy_backup("20240501-120000");
    app.migrate().unwrap();
    for i in 0..uploads {
        app.upload(&format!("after-{i}.png"), "image");
        if i % 2 == 0 {
            app.upload(&format!("after-{i}.pdf"), "document");
        }
    }
    app.upload("clip.mp4", "video");
}

/// What a run leaves that matters: every row of the database, the salvage
/// file, and the backups made.
#[derive(PartialEq)]
struct EndState {
    rows: BTreeMap<String, Vec<String>>,
    salvage: String,
    backups: usize,
}

/// Row counts rather than rows: a failure should say what differs, briefly.
impl std::fmt::Debug for EndState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let counts: BTreeMap<&String, usize> =
            self.rows.iter().map(|(t, rows)| (t, rows.len())).collect();
        write!(
            f,
            "rows {counts:?}, salvage {:?}, {} backups and manifests",
            self.salvage, self.backups
        )
    }
}

#[track_caller]
fn end_state(dir: &Path) -> EndState {
    let db = dir.join("app/db_data/main.db");
    assert_integrity(&db);
    EndState {
        rows: dump(&db),
        salvage: std::fs::read_to_string(run_dir(dir).join("media-salvage.jsonl"))
            .unwrap_or_else(|e| format!("no salvage file: {e}")),
        // Backups and manifests; not a killed run's lock or temporary file.
        backups: std::fs::read_dir(dir.join("app/backups"))
            .unwrap()
            .filter(|e| {
                !e.as_ref()
                    .unwrap()
                    .file_name()
                    .to_string_lossy()
                    .starts_with('.')
            })
            .count(),
    }
}

fn run_dir(dir: &Path) -> PathBuf {
    let mut runs: Vec<PathBuf> = std::fs::read_dir(dir.join(".runbook/runs"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    runs.sort();
    runs.pop().expect("a run directory")
}

fn journal(dir: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(run_dir(dir).join("journal.jsonl"))
        .unwrap()
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

/// The uninterrupted run: its end state and its journal.
fn reference(template: &Path, whole: &Path) -> (EndState, Vec<serde_json::Value>) {
    copy_tree(template, whole);
    let args = emergency(&[]);
    let status = runbook(whole, &args.iter().map(String::as_str).collect::<Vec<_>>())
        .status()
        .unwrap();
    assert!(
        status.success(),
        "the emergency rollback fails even unkilled"
    );
    let state = end_state(whole);
    assert!(
        state.salvage.contains("clip.mp4"),
        "the uninterrupted run kept no video: {}",
        state.salvage
    );
    assert!(!state.rows.contains_key("media"));
    (state, journal(whole))
}

/// Runs the emergency rollback on a copy with a fault injected, then
/// resumes it; returns the run's exit code and the end state.
fn kill_then_resume(template: &Path, dir: &Path, fault: &[(&str, String); 2]) -> (i32, EndState) {
    copy_tree(template, dir);
    let args = emergency(&[]);
    let mut run = runbook(dir, &args.iter().map(String::as_str).collect::<Vec<_>>());
    for (k, v) in fault {
        run.env(k, v);
    }
    let killed = run.status().unwrap();
    let code = killed.code().unwrap_or(-1);
    let resumed = runbook(dir, &["resume", "latest", "--yes"])
        .stderr(std::process::Stdio::piped())
        .output()
        .unwrap();
    assert_eq!(
        resumed.status.code(),
        Some(0),
        "the resume after {fault:?} (run exit {code}) failed: {}",
        String::from_utf8_lossy(&resumed.stderr)
    );
    (code, end_state(dir))
}

/// Stops the run on a copy of `template` after each of its events in turn,
/// by each signal, and resumes it; every end state must be `expected`.
fn every_event(t: &Path, template: &Path, name: &str) {
    let (expected, events) = reference(template, &t.join(name));
    let mut trials = 0;
    for signal in ["KILL", "INT"] {
        for at in 1..=events.len() {
            let dir = t.join(format!("{name}-{signal}-{at}"));
            let fault = [
                ("RUNBOOK_FAULT_AT", at.to_string()),
                ("RUNBOOK_FAULT_SIGNAL", signal.to_owned()),
            ];
            let (code, state) = kill_then_resume(template, &dir, &fault);
            if signal == "KILL" && at < events.len() {
                assert_eq!(code, -1, "SIGKILL after event {at} did not kill the run");
            }
            assert!(
                state == expected,
                "{name}: stopped by SIG{signal} after event {at} ({}), then resumed: the end state differs\n  expected {expected:?}\n  found {state:?}",
                events[at - 1]
            );
            std::fs::remove_dir_all(&dir).unwrap();
            trials += 1;
        }
    }
    eprintln!(
        "{name}: kill then resume, {trials} trials: every one of {} events, by SIGKILL and by SIGINT",
        events.len()
    );
}

#[test]
fn killed_at_every_journal_event_then_resumed_ends_as_an_uninterrupted_run() {
    let t = tempfile::tempdir().unwrap();
    let template = t.path().join("template");
    install(&template, 300, 150, 6);
    every_event(t.path(), &template, "option 1");
}

/// The same through option 2: option 1 cannot run (the images table is
/// gone), so the backup is restored and the uploads carried back from the
/// pre-restore backup; a kill between the two must not lose them.
#[test]
fn killed_at_every_journal_event_of_option_2_then_resumed_ends_as_an_uninterrupted_run() {
    let t = tempfile::tempdir().unwrap();
    let template = t.path().join("template");
    install(&template, 300, 150, 6);
    Install {
        root: template.join("app"),
    }
    .conn()
    .execute_batch("DROP TABLE images")
    .unwrap();
    every_event(t.path(), &template, "option 2");
}

/// The moments between the last event before option 1's transaction and
/// the event that records it finished: a kill there leaves a commit the
/// journal does not know about (or a rollback the database undoes).
#[test]
fn killed_inside_option_1s_commit_then_resumed_ends_as_an_uninterrupted_run() {
    let t = tempfile::tempdir().unwrap();
    let template = t.path().join("template");
    install(&template, 8_000, 4_000, 250);
    let (expected, events) = reference(&template, &t.path().join("whole"));
    // The last event before the transaction: its last `require` check.
    let before = events
        .iter()
        .rposition(|e| {
            e["event"] == "check_finished"
                && e["step"] == "option-1.rollback"
                && e["phase"] == "require"
        })
        .expect("option-1.rollback's require checks");
    let window = millis(&events[before + 1]["at"]) - millis(&events[before]["at"]);
    // Fault points count events from 1.
    let at = before + 1;
    let mut rng = Rng::new(0xc0ffee);
    let (mut committed_unrecorded, mut undone) = (0, 0);
    let n = 20 * scale();
    for trial in 0..n {
        let dir = t.path().join(format!("t{trial}"));
        copy_tree(&template, &dir);
        // Over the second half of the window and a little past it, where
        // the commit and the verify check after it are.
        let delay = (window as f64 * (0.5 + rng.fraction() * 0.7)) as u64;
        let args = emergency(&[]);
        runbook(&dir, &args.iter().map(String::as_str).collect::<Vec<_>>())
            .env("RUNBOOK_FAULT_AT", at.to_string())
            .env("RUNBOOK_FAULT_DELAY_MS", delay.to_string())
            .status()
            .unwrap();
        // Where the kill fell, read before the resume changes anything.
        let recorded = journal(&dir)
            .iter()
            .any(|e| e["event"] == "step_finished" && e["step"] == "option-1.rollback");
        let media = Install {
            root: dir.join("app"),
        }
        .has_table("media");
        match (recorded, media) {
            (false, false) => committed_unrecorded += 1,
            (false, true) => undone += 1,
            _ => {}
        }
        let resumed = runbook(&dir, &["resume", "latest", "--yes"])
            .status()
            .unwrap();
        assert!(
            resumed.success(),
            "trial {trial}: the resume after a kill {delay} ms into the commit failed"
        );
        let state = end_state(&dir);
        assert!(
            state == expected,
            "trial {trial}: killed {delay} ms into option 1's commit, then resumed: the end state differs\n  expected {expected:?}\n  found {state:?}"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }
    eprintln!(
        "option 1's commit window ({window} ms): {n} kills, {committed_unrecorded} after the commit and before the journal knew, {undone} before the commit"
    );
}

/// Milliseconds of the day of a journal timestamp (`…T14:03:22.123Z`).
fn millis(at: &serde_json::Value) -> i64 {
    let s = at.as_str().unwrap();
    let clock = s.split('T').nth(1).unwrap().trim_end_matches('Z');
    let mut parts = clock.split(':');
    let h: i64 = parts.next().unwrap().parse().unwrap();
    let m: i64 = parts.next().unwrap().parse().unwrap();
    let sec: f64 = parts.next().unwrap().parse().unwrap();
    (h * 3600 + m * 60) * 1000 + (sec * 1000.0) as i64
}
