//! `--dry-run`: read-only checks run for real, nothing changes anywhere.

use crate::support::Test;

const PLAYBOOK: &str = r#"
vars:
  db: app.db
steps:
  - id: count
    action: sqlite.query
    with: {db: "{{ db }}", sql: "SELECT count(*) AS n FROM images"}
  - id: wipe
    require:
      - name: there are images to wipe
        that: "steps.count.rows[0].n > 0"
    action: sqlite.exec
    with:
      db: "{{ db }}"
      sql: "DELETE FROM images WHERE id > ?"
      params: ["{{ steps.count.rows[0].n - 1 }}"]
  - id: note
    action: shell
    with: {command: [touch, note.txt]}
always:
  - id: tell
    action: shell
    with: {command: [touch, told.txt]}
"#;

#[test]
fn a_dry_run_leaves_every_file_byte_identical_and_creates_none() {
    let t = Test::new()
        .db("app.db", "CREATE TABLE images(id INTEGER PRIMARY KEY, f TEXT); INSERT INTO images(f) VALUES ('a'), ('b'), ('c');")
        .file("pb.yaml", PLAYBOOK);
    let before = t.snapshot();
    let out = t.run(&["run", "pb.yaml", "--dry-run"]);
    out.code(0);
    assert_eq!(t.snapshot(), before, "the dry run changed or created files");
}

#[test]
fn a_dry_run_shows_live_checks_and_resolved_arguments() {
    let t = Test::new()
        .db("app.db", "CREATE TABLE images(id INTEGER PRIMARY KEY, f TEXT); INSERT INTO images(f) VALUES ('a'), ('b'), ('c');")
        .file("pb.yaml", PLAYBOOK);
    let out = t.run(&["run", "pb.yaml", "--dry-run"]);
    out.code(0)
        .stdout_has("require there are images to wipe: passed")
        .stdout_has(
            "would execute on app.db in one transaction: DELETE FROM images WHERE id > ? with [2]",
        )
        .stdout_has("would run `touch note.txt` (its effect cannot be predicted)")
        .stdout_has("nothing was changed");
}

#[test]
fn a_dry_run_predicts_a_failing_require_and_the_fallback_that_takes_over() {
    let t = Test::new()
        .db("app.db", "CREATE TABLE images(id INTEGER PRIMARY KEY);")
        .file(
            "pb.yaml",
            r#"
steps:
  - id: option-1
    require:
      - name: images present
        action: sqlite.query
        with: {db: app.db, sql: "SELECT count(*) AS n FROM images"}
        expect: "result.rows[0].n > 0"
    action: shell
    with: {command: [touch, one]}
    fallback:
      - id: option-2
        action: shell
        with: {command: [touch, two]}
"#,
        );
    let out = t.run(&["run", "pb.yaml", "--dry-run"]);
    out.code(0)
        .stdout_has("option-1 would fail: require failed: images present")
        .stdout_has("falling back to option-2")
        .stdout_has("would run `touch two`")
        .stdout_has("option-2 would take over");
    assert!(!t.path().join("one").exists() && !t.path().join("two").exists());
}

#[test]
fn a_dry_run_on_a_wal_database_creates_no_wal_or_shm_file() {
    let t = Test::new()
        .db("app.db", "PRAGMA journal_mode = WAL; CREATE TABLE t(x); INSERT INTO t VALUES (1);")
        .file(
            "pb.yaml",
            "steps:\n  - id: q\n    action: sqlite.query\n    with: {db: app.db, sql: \"SELECT x FROM t\"}\n    verify: [\"steps.q.rows[0].x == 1\"]\n",
        );
    let before = t.snapshot();
    assert!(
        !t.path().join("app.db-wal").exists(),
        "the fixture left a -wal file"
    );
    t.run(&["run", "pb.yaml", "--dry-run"])
        .code(0)
        .stdout_has("✓ q");
    assert_eq!(t.snapshot(), before);
}

#[test]
fn a_dry_run_opens_databases_read_only() {
    // A query that would write if the connection allowed it still cannot in a dry run.
    let t = Test::new()
        .db("app.db", "CREATE TABLE t(x); INSERT INTO t VALUES (1);")
        .file(
            "pb.yaml",
            "steps:\n  - id: q\n    action: sqlite.query\n    with: {db: app.db, sql: \"SELECT x FROM t\"}\n",
        );
    let before = t.snapshot();
    t.run(&["run", "pb.yaml", "--dry-run"])
        .code(0)
        .stdout_has("✓ q");
    assert_eq!(t.snapshot(), before);
}
