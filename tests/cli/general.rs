//! runbook is a general engine: the application it rolls back lives in its
//! playbooks. Nothing in the engine names go-fast-cdn's tables, markers or
//! policy, and a second application — a Django-style notes app, in
//! examples/notes-app — is rolled back end to end with no Rust of its own.

use std::path::Path;

use crate::support::{outbox, Output, Test};

/// Words that belong to go-fast-cdn's plan, not to the engine.
const APPLICATION_WORDS: &[&str] = &[
    "images",
    "media",
    "migration_records",
    "media_unification",
    "go-fast-cdn",
    "gofastcdn",
    "severity",
    "stop_command",
    "start_command",
    "db_backup",
    "uploads",
    "docs",
];

/// The sample install and the demo build go-fast-cdn on purpose.
const ALLOWED: &[&str] = &["sample_install.rs", "command/demo.rs"];

#[test]
fn the_engine_names_none_of_go_fast_cdns_tables_markers_or_policy() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut found = Vec::new();
    let mut files = 0;
    let mut todo = vec![src.clone()];
    while let Some(dir) = todo.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                todo.push(path);
                continue;
            }
            let rel = path
                .strip_prefix(&src)
                .unwrap()
                .to_string_lossy()
                .into_owned();
            if ALLOWED.contains(&rel.as_str()) || path.extension().is_none_or(|x| x != "rs") {
                continue;
            }
            files += 1;
            let text = std::fs::read_to_string(&path).unwrap().to_lowercase();
            for (n, line) in text.lines().enumerate() {
                for word in APPLICATION_WORDS {
                    if mentions(line, word) {
                        found.push(format!("src/{rel}:{}: `{word}`: {}", n + 1, line.trim()));
                    }
                }
            }
        }
    }
    assert!(files > 30, "only {files} source files were read");
    assert!(
        found.is_empty(),
        "the engine names the application:\n{}",
        found.join("\n")
    );
}

/// `word` as a word of `line`; `docs/` (the documentation's folder) is not
/// the application's `docs` table.
fn mentions(line: &str, word: &str) -> bool {
    line.match_indices(word).any(|(at, _)| {
        let before = line[..at].chars().next_back();
        let after = line[at + word.len()..].chars().next();
        let boundary = |c: Option<char>| c.is_none_or(|c| !(c.is_alphanumeric() || c == '_'));
        boundary(before)
            && boundary(after)
            && !(word == "docs" && matches!(after, Some('/') | Some('.')))
    })
}

#[test]
fn the_word_check_finds_what_it_is_for() {
    assert!(mentions("const T: &str = \"media\";", "media"));
    assert!(mentions("for t in [images, docs]", "docs"));
    assert!(!mentions("see docs/actions.md", "docs"));
    assert!(!mentions("multimedia_thing", "media"));
}

const ROLLBACK: &str = include_str!("../../examples/notes-app/rollback.yaml");
const REVERSE: &str = include_str!("../../examples/notes-app/reverse.yaml");
const RESTORE: &str = include_str!("../../examples/notes-app/restore.yaml");
const OUTCOME: &str = include_str!("../../examples/notes-app/templates/outcome.txt");
const REPORT: &str = include_str!("../../examples/notes-app/templates/report.md");
const BEFORE: &str = include_str!("../../examples/notes-app/before.sql");
const MIGRATE: &str = include_str!("../../examples/notes-app/migrate.sql");

/// The notes app's database as the team would find it: 20 notes (5 of
/// them archived) backed up before migration 0003, which moved archived
/// notes into their own table; then one more archived and one new note.
fn notes_app() -> Test {
    let t = Test::new()
        .file("rollback.yaml", ROLLBACK)
        .file("reverse.yaml", REVERSE)
        .file("restore.yaml", RESTORE)
        .file("templates/outcome.txt", OUTCOME)
        .file("templates/report.md", REPORT);
    let db = t.path().join("notes.sqlite3");
    rusqlite::Connection::open(&db)
        .unwrap()
        .execute_batch(BEFORE)
        .unwrap();
    t.run(&[
        "backup",
        "create",
        "--db",
        "notes.sqlite3",
        "--dir",
        "backups",
    ])
    .code(0);
    rusqlite::Connection::open(&db)
        .unwrap()
        .execute_batch(MIGRATE)
        .unwrap();
    t
}

fn query(t: &Test, sql: &str) -> i64 {
    rusqlite::Connection::open(t.path().join("notes.sqlite3"))
        .unwrap()
        .query_row(sql, [], |r| r.get(0))
        .unwrap()
}

fn run(t: &Test, extra: &[&str]) -> Output {
    let mut args = vec![
        "run",
        "rollback.yaml",
        "--var",
        "reason=archive view broken",
        "--var",
        "notify_to=ops@example.com",
        "--var",
        "restart_command=true",
        "--yes",
    ];
    args.extend_from_slice(extra);
    t.run(&args)
}

fn mail(out: &Output) -> String {
    let mails = outbox(out);
    assert_eq!(mails.len(), 1, "one outcome mail");
    assert!(
        mails[0].0.starts_with("notes: migration rollback "),
        "{}",
        mails[0].0
    );
    mails[0].1.clone()
}

#[test]
fn a_second_application_is_reviewed_and_rolled_back_in_place_with_no_engine_change() {
    let t = notes_app();
    for pb in ["rollback.yaml", "reverse.yaml", "restore.yaml"] {
        t.run(&["check", pb]).code(0);
    }
    // The review predicts the reversal, in the app's own terms.
    let before = t.snapshot();
    let dry = run(&t, &["--dry-run", "--var", "priority=p2"]);
    dry.code(0).stdout_has("deadline: 2h, by ").stdout_has(
        "rollback: would execute on notes.sqlite3 in one transaction: INSERT INTO notes_note",
    );
    assert_eq!(t.snapshot(), before, "the dry run changed a file");

    let out = run(&t, &["--var", "priority=p2"]);
    out.code(0);
    assert_eq!(out.journal()[0]["deadline"], "2h");
    // Every note is back in notes_note: 15 + 5 archived + the two written since.
    assert_eq!(query(&t, "SELECT count(*) FROM notes_note"), 22);
    assert_eq!(
        query(&t, "SELECT count(*) FROM notes_note WHERE archived"),
        6
    );
    assert_eq!(
        query(
            &t,
            "SELECT count(*) FROM sqlite_master WHERE name = 'notes_archive'"
        ),
        0
    );
    assert_eq!(
        query(
            &t,
            "SELECT count(*) FROM django_migrations WHERE name = '0003_note_archive'"
        ),
        0
    );
    // The fingerprint spoke the app's language: its tables, Django's markers.
    let before = out.finished("before");
    assert_eq!(
        before["outputs"]["counts"],
        serde_json::json!({"notes_archive": 6, "notes_note": 16})
    );
    assert!(before["outputs"]["markers"]
        .as_array()
        .unwrap()
        .contains(&serde_json::json!("notes.0003_note_archive")));
    let body = mail(&out);
    for says in [
        "The rollback of notes.0003_note_archive is done.",
        "Priority: p2, to be done within 2h (met)",
        "How: reversed in place",
        "Archived notes moved back: 6",
        "Kept before it: backups/runbook-",
        "App: restarted",
    ] {
        assert!(
            body.contains(says),
            "the mail does not say `{says}`:\n{body}"
        );
    }
    assert!(!body.contains("Restored from"), "{body}");
    // The report is the playbook's own template.
    let report = out.report();
    assert!(
        report.starts_with("# notes-rollback: succeeded"),
        "{report}"
    );
    assert!(report.contains("(before-rollback)"), "{report}");
}

/// The archive table was dropped by hand, the marker left: reversing is
/// impossible, so the fallback restores the newest backup from before the
/// migration — chosen by Django's marker, not by any table runbook knows.
#[test]
fn a_second_application_falls_back_to_its_backup_chosen_by_its_own_marker() {
    let t = notes_app();
    rusqlite::Connection::open(t.path().join("notes.sqlite3"))
        .unwrap()
        .execute_batch("DROP TABLE notes_archive")
        .unwrap();
    let out = run(&t, &[]);
    out.code(0);
    assert_eq!(out.finished("rollback")["recovered_by"], "restore");
    // The backup from before the migration: 20 notes, no archive, no marker.
    assert_eq!(query(&t, "SELECT count(*) FROM notes_note"), 20);
    assert_eq!(
        query(
            &t,
            "SELECT count(*) FROM django_migrations WHERE name = '0003_note_archive'"
        ),
        0
    );
    // The backup made at the start has the marker: it was passed over.
    let rejected = &out.finished("restore.select")["outputs"]["rejected"];
    assert!(
        rejected.to_string().contains("before-rollback"),
        "{rejected}"
    );
    let body = mail(&out);
    for says in [
        "How: restored the backup from before it",
        "Restored from: backups/runbook-",
        "Kept before it: backups/runbook-",
    ] {
        assert!(
            body.contains(says),
            "the mail does not say `{says}`:\n{body}"
        );
    }
    assert!(!body.contains("Archived notes moved back"), "{body}");
}
