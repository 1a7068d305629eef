//! `runbook demo`: a newcomer's one command. It builds a sample install,
//! rolls it back, and leaves nothing behind unless asked to, or unless the
//! run did not succeed and its report and resume are what is left to read.

use crate::support::Test;

#[test]
fn the_demo_builds_an_install_and_rolls_it_back() {
    let t = Test::new();
    let out = t.run(&["demo", "demo"]);
    out.code(0)
        .stdout_has("run succeeded")
        .stdout_has("report: ")
        .stdout_has("outbox: ");
    let outbox_line = out
        .stdout
        .lines()
        .find(|l| l.starts_with("outbox: "))
        .unwrap();
    let outbox = t.path().join(outbox_line.trim_start_matches("outbox: "));
    assert_eq!(std::fs::read_dir(&outbox).unwrap().count(), 3);
    let media = t.query(
        "demo/app/db_data/main.db",
        "SELECT count(*) FROM sqlite_master WHERE name = 'media'",
    );
    assert_eq!(media, [["0"]]);
}

/// Without a DIR, the demo works in a temporary directory and removes it
/// when it ends, saying so; `--keep` keeps it.
#[test]
fn the_demo_leaves_no_directory_behind_unless_kept() {
    let t = Test::new().file("tmp/.keep", "");
    let tmp = t.path().join("tmp");
    let t = t.env("TMPDIR", tmp.to_str().unwrap());
    let demos = || -> Vec<std::path::PathBuf> {
        std::fs::read_dir(&tmp)
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| {
                p.file_name()
                    .unwrap()
                    .to_string_lossy()
                    .starts_with("runbook-demo-")
            })
            .collect()
    };
    let out = t.run(&["demo"]);
    out.code(0)
        .stdout_has("run succeeded")
        .stdout_has("demo: removed ");
    assert_eq!(demos(), Vec::<std::path::PathBuf>::new());
    let out = t.run(&["demo", "--keep"]);
    out.code(0).stdout_has("run succeeded");
    assert!(!out.stdout.contains("demo: removed"), "{}", out.stdout);
    let kept = demos();
    assert_eq!(kept.len(), 1, "{kept:?}");
    assert!(kept[0].join("app/db_data/main.db").is_file());
}

/// The demo's playbooks name their schema for editors; it is where they say.
#[test]
fn the_demo_playbooks_schema_is_where_they_point() {
    let t = Test::new();
    t.run(&["demo", "--build-only", "d"]).code(0);
    let playbook =
        std::fs::read_to_string(t.path().join("d/playbooks/emergency_rollback.yaml")).unwrap();
    let first = playbook.lines().next().unwrap();
    let relative = first.split("$schema=").nth(1).expect("a schema line");
    let schema = t.path().join("d/playbooks").join(relative);
    let text =
        std::fs::read_to_string(&schema).unwrap_or_else(|e| panic!("{}: {e}", schema.display()));
    let value: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert!(value["properties"]["steps"].is_object(), "{value}");
}

/// Interrupted, the demo keeps its directory: the `resume` line it printed
/// names a run that is still there.
#[test]
fn an_interrupted_demo_keeps_its_directory_and_its_run_to_resume() {
    let t = Test::new().file("tmp/.keep", "");
    let tmp = t.path().join("tmp");
    let t = t
        .env("TMPDIR", tmp.to_str().unwrap())
        .env("RUNBOOK_FAULT_AT", "5")
        .env("RUNBOOK_FAULT_SIGNAL", "INT");
    let out = t.run(&["demo"]);
    out.code(130).stdout_has("demo: kept ");
    assert!(!out.stdout.contains("demo: removed"), "{}", out.stdout);
    let resume = out
        .stdout
        .lines()
        .find_map(|l| l.strip_prefix("resume: runbook resume "))
        .unwrap_or_else(|| panic!("no resume line:\n{}", out.stdout));
    assert!(
        std::path::Path::new(resume).join("journal.jsonl").is_file(),
        "{resume} is gone"
    );
}
