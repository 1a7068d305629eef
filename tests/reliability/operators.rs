//! Two on-call engineers at once: two emergency rollbacks (or two resumes)
//! started together on one install. One runs; the other is refused before
//! it does anything, with exit 4 and the holder named, or waits for it with
//! `--wait`. The uploads are intact every time.

use std::path::Path;
use std::process::{Child, Stdio};
use std::time::Duration;

use crate::gofastcdn::Install;
use crate::{assert_integrity, copy_tree, dump, emergency, runbook, scale, Rng};

fn template(dir: &Path) {
    let app = Install::new(&dir.join("app"), 600, 300);
    app.legacy_backup("20240501-120000");
    app.migrate().unwrap();
    for i in 0..5 {
        app.upload(&format!("after-{i}.png"), "image");
        app.upload(&format!("after-{i}.pdf"), "document");
    }
    app.upload("clip.mp4", "video");
}

fn start(dir: &Path, args: &[String]) -> Child {
    runbook(dir, &args.iter().map(String::as_str).collect::<Vec<_>>())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

/// Exit code and stderr of a finished child.
fn finish(child: Child) -> (i32, String) {
    let out = child.wait_with_output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// The rows an uninterrupted rollback leaves.
fn rolled_back(template: &Path, work: &Path) -> std::collections::BTreeMap<String, Vec<String>> {
    let whole = work.join("whole");
    copy_tree(template, &whole);
    let (code, err) = finish(start(&whole, &emergency(&[])));
    assert_eq!(code, 0, "the rollback fails even alone: {err}");
    dump(&whole.join("app/db_data/main.db"))
}

#[track_caller]
fn assert_refused_and_named(stderr: &str, holders: [u32; 2]) {
    assert!(
        stderr.contains("error: another operator holds"),
        "refused without saying why: {stderr}"
    );
    assert!(
        holders
            .iter()
            .any(|pid| stderr.contains(&format!("pid {pid},"))),
        "the holder is not named: {stderr}"
    );
    assert!(
        stderr.contains("--wait"),
        "no word on how to wait: {stderr}"
    );
}

#[test]
fn two_emergency_rollbacks_at_once_one_runs_the_other_is_refused_and_told_who() {
    let t = tempfile::tempdir().unwrap();
    let tpl = t.path().join("template");
    template(&tpl);
    let expected = rolled_back(&tpl, t.path());
    let mut rng = Rng::new(0x0b5e55ed);
    let n = 50 * scale();
    let mut refused = 0;
    for trial in 0..n {
        let dir = t.path().join(format!("t{trial}"));
        copy_tree(&tpl, &dir);
        let offset = Duration::from_millis((rng.fraction() * 120.0) as u64);
        // Stopping the app takes a moment, as systemctl's does: the two
        // runs overlap whatever the offset.
        let args = emergency(&["--var", "stop_command=sleep 0.3"]);
        let a = start(&dir, &args);
        std::thread::sleep(offset);
        let b = start(&dir, &args);
        let pids = [a.id(), b.id()];
        let results = [finish(a), finish(b)];
        let mut codes: Vec<i32> = results.iter().map(|(c, _)| *c).collect();
        codes.sort_unstable();
        assert_eq!(
            codes,
            [0, 4],
            "trial {trial} ({offset:?} apart): not one run and one refusal: {results:?}"
        );
        for (code, stderr) in &results {
            if *code == 4 {
                refused += 1;
                assert_refused_and_named(stderr, pids);
            }
        }
        let db = dir.join("app/db_data/main.db");
        assert_integrity(&db);
        assert!(
            dump(&db) == expected,
            "trial {trial} ({offset:?} apart): the database is not the rolled-back one with every upload"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }
    eprintln!("two rollbacks at once: {n} trials, {refused} runs refused with exit 4");
}

#[test]
fn with_wait_the_second_rollback_waits_for_the_first_and_both_succeed() {
    let t = tempfile::tempdir().unwrap();
    let tpl = t.path().join("template");
    template(&tpl);
    let expected = rolled_back(&tpl, t.path());
    for trial in 0..5 * scale() {
        let dir = t.path().join(format!("t{trial}"));
        copy_tree(&tpl, &dir);
        // The first holds the install for a second (its stop command).
        let a = start(&dir, &emergency(&["--var", "stop_command=sleep 1"]));
        std::thread::sleep(Duration::from_millis(300));
        let b = start(&dir, &emergency(&["--wait", "60s"]));
        let (a, b) = (finish(a), finish(b));
        assert_eq!(a.0, 0, "trial {trial}: the first run: {}", a.1);
        assert_eq!(b.0, 0, "trial {trial}: the run that waited: {}", b.1);
        assert!(dump(&dir.join("app/db_data/main.db")) == expected);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}

#[test]
fn two_resumes_at_once_one_finishes_the_run_the_other_is_refused() {
    let t = tempfile::tempdir().unwrap();
    let tpl = t.path().join("template");
    template(&tpl);
    let expected = rolled_back(&tpl, t.path());
    let mut rng = Rng::new(0x2e5);
    let n = 20 * scale();
    let mut refused = 0;
    for trial in 0..n {
        let dir = t.path().join(format!("t{trial}"));
        copy_tree(&tpl, &dir);
        // Killed just after it stopped the app: the rollback is all to do.
        let args = emergency(&[]);
        let killed = runbook(&dir, &args.iter().map(String::as_str).collect::<Vec<_>>())
            .env("RUNBOOK_FAULT_AT", "12")
            .status()
            .unwrap();
        assert!(!killed.success(), "trial {trial}: the run was not killed");
        let resume: Vec<String> = ["resume", "latest", "--yes"]
            .iter()
            .map(|s| (*s).to_owned())
            .collect();
        let a = start(&dir, &resume);
        std::thread::sleep(Duration::from_millis((rng.fraction() * 60.0) as u64));
        let b = start(&dir, &resume);
        let pids = [a.id(), b.id()];
        let results = [finish(a), finish(b)];
        let mut ok = 0;
        for (code, stderr) in &results {
            match code {
                0 => ok += 1,
                4 => refused += 1,
                _ => {}
            }
            match code {
                0 => {}
                4 => assert!(
                    stderr.contains("another operator holds")
                        && pids.iter().any(|p| stderr.contains(&format!("pid {p},")))
                        || stderr.contains("is still going on"),
                    "trial {trial}: refused without naming the holder: {stderr}"
                ),
                other => panic!("trial {trial}: a resume exited {other}: {stderr}"),
            }
        }
        assert!(ok >= 1, "trial {trial}: no resume finished the run");
        assert!(
            dump(&dir.join("app/db_data/main.db")) == expected,
            "trial {trial}: the uploads are not all there"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }
    eprintln!("two resumes at once: {n} trials, {refused} resumes refused with exit 4");
}
