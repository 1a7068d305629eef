//! The built-in actions on real parts: SQLite files and child processes.

use crate::support::Test;

const SCHEMA: &str = "CREATE TABLE images(id INTEGER PRIMARY KEY AUTOINCREMENT, file_name TEXT);
INSERT INTO images(file_name) VALUES ('a.png'), ('b.png');";

#[test]
fn sqlite_exec_runs_all_statements_in_one_transaction() {
    let t = Test::new().db("app.db", SCHEMA).file(
        "pb.yaml",
        r#"
steps:
  - id: half
    action: sqlite.exec
    with:
      db: app.db
      statements:
        - sql: DELETE FROM images
        - sql: INSERT INTO no_such_table VALUES (1)
"#,
    );
    t.run(&["run", "pb.yaml"])
        .code(1)
        .stdout_has("no such table: no_such_table");
    assert_eq!(
        t.query("app.db", "SELECT count(*) FROM images"),
        [["2"]],
        "the DELETE was not rolled back"
    );
}

#[test]
fn values_reach_sql_as_bound_parameters_only() {
    let hostile = "x'); DROP TABLE images; --";
    let t = Test::new().db("app.db", SCHEMA).file(
        "pb.yaml",
        r#"
vars:
  name: ""
steps:
  - id: insert
    action: sqlite.exec
    with:
      db: app.db
      sql: "INSERT INTO images(file_name) VALUES (:name)"
      params: {name: "{{ name }}"}
  - id: read
    action: sqlite.query
    with:
      db: app.db
      sql: "SELECT file_name FROM images WHERE file_name = ?1"
      params: ["{{ name }}"]
    verify:
      - that: "steps.read.row_count == 1"
"#,
    );
    t.run(&["run", "pb.yaml", "--var", &format!("name={hostile}")])
        .code(0);
    assert_eq!(
        t.query("app.db", "SELECT file_name FROM images ORDER BY id"),
        [["a.png"], ["b.png"], [hostile]]
    );
}

#[test]
fn sqlite_query_refuses_statements_that_write() {
    let t = Test::new().db("app.db", SCHEMA).file(
        "pb.yaml",
        "steps:\n  - id: sneaky\n    action: sqlite.query\n    with: {db: app.db, sql: DELETE FROM images}\n",
    );
    let out = t.run(&["run", "pb.yaml"]);
    out.code(1);
    // Opened read-only, the delete cannot happen whatever the message says.
    assert_eq!(t.query("app.db", "SELECT count(*) FROM images"), [["2"]]);
}

#[test]
fn sqlite_actions_never_create_a_missing_database() {
    let t = Test::new().file(
        "pb.yaml",
        "steps:\n  - id: typo\n    action: sqlite.exec\n    with: {db: mian.db, sql: CREATE TABLE t(x)}\n",
    );
    t.run(&["run", "pb.yaml"])
        .code(1)
        .stdout_has("database mian.db does not exist");
    assert!(!t.path().join("mian.db").exists());
}

#[test]
fn query_rows_come_back_by_column_name_with_blobs_as_hex() {
    let t = Test::new()
        .db("app.db", "CREATE TABLE m(name TEXT, checksum BLOB, size INTEGER); INSERT INTO m VALUES ('x', X'00ff10', 42);")
        .file(
            "pb.yaml",
            r#"
steps:
  - id: q
    action: sqlite.query
    with: {db: app.db, sql: "SELECT name, checksum, size FROM m"}
    verify:
      - that: "steps.q.rows[0].checksum == '00ff10' and steps.q.rows[0].size == 42 and steps.q.rows[0].name == 'x'"
"#,
        );
    t.run(&["run", "pb.yaml"]).code(0);
}

#[test]
fn shell_passes_each_argument_as_one_argv_element_without_a_shell() {
    let hostile = "$(touch pwned) `touch pwned2`; touch pwned3 && echo \"quoted\"";
    let t = Test::new().file(
        "pb.yaml",
        r#"
vars:
  reason: ""
steps:
  - id: echo
    action: shell
    with: {command: [printf, "%s", "{{ reason }}"]}
  - id: check
    action: assert
    with: {that: "steps.echo.stdout == reason"}
"#,
    );
    t.run(&["run", "pb.yaml", "--var", &format!("reason={hostile}")])
        .code(0);
    for f in ["pwned", "pwned2", "pwned3"] {
        assert!(
            !t.path().join(f).exists(),
            "{f} was created: the value reached a shell"
        );
    }
}

#[test]
fn a_command_line_variable_is_split_into_words_by_the_words_filter() {
    let t = Test::new().file(
        "pb.yaml",
        r#"
vars:
  stop_command: "touch 'stopped app'"
steps:
  - id: stop
    action: shell
    with: {command: ["{{ stop_command | words }}"]}
"#,
    );
    t.run(&["run", "pb.yaml"]).code(0);
    assert!(t.path().join("stopped app").exists());
}

#[test]
fn shell_env_cwd_and_ok_codes() {
    let t = Test::new().file("sub/.keep", "").file(
        "pb.yaml",
        r#"
steps:
  - id: s
    action: shell
    with:
      command: [sh, -c, 'echo "$GREETING" > here; exit 3']
      env: {GREETING: hi}
      cwd: sub
      ok_codes: [0, 3]
  - id: code
    action: assert
    with: {that: "steps.s.code == 3"}
"#,
    );
    t.run(&["run", "pb.yaml"]).code(0);
    assert_eq!(
        std::fs::read_to_string(t.path().join("sub/here")).unwrap(),
        "hi\n"
    );
}

/// A name is looked up in the `PATH` the program runs with (the step's
/// own, when it sets one), passing over an entry whose file cannot be
/// executed, as execvp does.
#[test]
fn a_program_is_found_in_the_path_the_step_gives_it() {
    use std::os::unix::fs::PermissionsExt;
    let t = Test::new()
        .file("tools/a/tool", "#!/bin/sh\necho not executable\n")
        .file("tools/b/tool", "#!/bin/sh\necho \"from b in $(pwd)\"\n")
        .file("work/.keep", "");
    let b = t.path().join("tools/b/tool");
    std::fs::set_permissions(&b, std::fs::Permissions::from_mode(0o755)).unwrap();
    let path = format!(
        "{}:{}:/usr/bin:/bin",
        t.path().join("tools/a").display(),
        t.path().join("tools/b").display()
    );
    let work = t.path().join("work");
    let t = t.file(
        "pb.yaml",
        &format!(
            "steps:\n  - id: s\n    action: shell\n    with: {{command: [tool], cwd: work, env: {{PATH: '{path}'}}}}\n  - id: check\n    action: assert\n    with: {{that: \"steps.s.stdout == 'from b in {}\\n'\"}}\n",
            work.display()
        ),
    );
    t.run(&["run", "pb.yaml"]).code(0);
}

#[test]
fn a_program_that_does_not_exist_is_a_clear_failure() {
    let t = Test::new().file(
        "pb.yaml",
        "steps:\n  - id: s\n    action: shell\n    with: {command: [no-such-program-xyz]}\n",
    );
    t.run(&["run", "pb.yaml"])
        .code(1)
        .stdout_has("cannot start `no-such-program-xyz`");
}

#[test]
fn assert_with_a_message() {
    let t = Test::new().file(
        "pb.yaml",
        "vars:\n  n: 3\nsteps:\n  - id: a\n    action: assert\n    with: {that: \"n > 5\", message: n is too small}\n",
    );
    t.run(&["run", "pb.yaml"])
        .code(1)
        .stdout_has("n is too small");
}

#[test]
fn every_action_is_documented() {
    let docs = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/actions.md"))
        .expect("docs/actions.md");
    for name in runbook::action::NAMES {
        assert!(
            docs.contains(&format!("## `{name}`")),
            "docs/actions.md has no section for `{name}`"
        );
    }
}

/// `sqlite.compare` counts what the two EXCEPTs count, shows the rows found
/// on one side only in their query's order, binds parameters on either
/// side, and refuses a query that writes or sides of different widths.
#[test]
fn sqlite_compare_counts_both_ways_and_shows_the_rows_on_one_side_only() {
    let t = Test::new()
        .db(
            "app.db",
            "CREATE TABLE images(file_name TEXT, checksum BLOB, kind TEXT);
             INSERT INTO images VALUES ('a.png', X'01', 'image'), ('b.png', X'02', 'image'),
               ('c.png', X'03', 'image'), ('c.png', X'03', 'image'), ('x.pdf', X'09', 'doc');",
        )
        .db(
            "old.db",
            "CREATE TABLE images(file_name TEXT, checksum BLOB);
             INSERT INTO images VALUES ('z.png', X'26'), ('b.png', X'ff'), ('a.png', X'01'), ('c.png', X'03');",
        )
        .file(
            "pb.yaml",
            r#"
steps:
  - id: cmp
    action: sqlite.compare
    with:
      db: app.db
      attach: {old: old.db}
      left: SELECT file_name, checksum FROM old.images
      right: {sql: "SELECT file_name, checksum FROM images WHERE kind = ?", params: [image]}
  - id: quiet
    action: sqlite.compare
    with:
      db: app.db
      attach: {old: old.db}
      left: SELECT file_name, checksum FROM old.images
      right: SELECT file_name, checksum FROM images
      samples: {left: 1, right: 0}
"#,
        )
        .file(
            "writes.yaml",
            "steps:\n  - id: w\n    action: sqlite.compare\n    with: {db: app.db, left: DELETE FROM images, right: SELECT 1}\n",
        )
        .file(
            "typo.yaml",
            "steps:\n  - id: w\n    action: sqlite.compare\n    with:\n      db: app.db\n      left: {sql: SELECT 1, parms: [1]}\n      right: SELECT 1\n      samples: {left: 1, rigth: 0}\n",
        )
        .file(
            "widths.yaml",
            "steps:\n  - id: w\n    action: sqlite.compare\n    with: {db: app.db, left: SELECT file_name FROM images, right: \"SELECT file_name, checksum FROM images\"}\n",
        );
    let before = t.snapshot();
    let out = t.run(&["run", "pb.yaml"]);
    out.code(0);
    let cmp = &out.finished("cmp")["outputs"];
    assert_eq!(cmp["left_rows"], 4, "{cmp}");
    assert_eq!(cmp["right_rows"], 3, "duplicates count once: {cmp}");
    assert_eq!(cmp["only_left"], 2, "{cmp}");
    assert_eq!(cmp["only_right"], 1, "{cmp}");
    assert_eq!(cmp["same"], false);
    assert_eq!(
        cmp["only_left_sample"],
        serde_json::json!([{"file_name": "z.png", "checksum": "26"}, {"file_name": "b.png", "checksum": "ff"}]),
        "in the left query's order"
    );
    assert_eq!(
        cmp["only_right_sample"],
        serde_json::json!([{"file_name": "b.png", "checksum": "02"}])
    );
    let quiet = &out.finished("quiet")["outputs"];
    assert_eq!(
        (&quiet["only_left"], &quiet["only_right"]),
        (&2.into(), &2.into())
    );
    assert_eq!(quiet["only_left_sample"].as_array().unwrap().len(), 1);
    assert_eq!(quiet["only_right_sample"], serde_json::json!([]));

    // Each form of an argument says what is wrong with it, at check time.
    t.run(&["check", "typo.yaml"])
        .code(2)
        .stderr_has("typo.yaml:6:7: invalid arguments for `sqlite.compare`: unknown field `parms`, expected `sql` or `params`");
    t.run(&["run", "writes.yaml"])
        .code(1)
        .stdout_has("sqlite.compare runs only statements that read");
    t.run(&["run", "widths.yaml"])
        .code(1)
        .stdout_has("left has 1 columns and right 2");
    let after = t.snapshot();
    for name in ["app.db", "old.db"] {
        let key = std::path::PathBuf::from(name);
        assert_eq!(before.get(&key), after.get(&key), "{name} changed");
    }
}

/// A program found on `PATH` is remembered for the next step, as a shell
/// remembers it; one that is gone by then is searched for again, so the
/// next directory's program runs, not a failure to start.
#[test]
fn a_program_gone_since_it_was_found_is_searched_for_again() {
    use std::os::unix::fs::PermissionsExt;
    let t = Test::new()
        .file("first/tool", "#!/bin/sh\necho first >> ran.txt\n")
        .file("second/tool", "#!/bin/sh\necho second >> ran.txt\n");
    for dir in ["first", "second"] {
        let tool = t.path().join(dir).join("tool");
        std::fs::set_permissions(&tool, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    let path = format!(
        "{}:{}:/usr/bin:/bin",
        t.path().join("first").display(),
        t.path().join("second").display()
    );
    let step = |id: &str, command: &str| {
        format!("  - id: {id}\n    action: shell\n    with: {{command: [{command}], env: {{PATH: \"{path}\"}}}}\n")
    };
    let playbook = format!(
        "steps:\n{}{}{}",
        step("one", "tool"),
        step("remove", "rm, first/tool"),
        step("two", "tool")
    );
    let t = t.file("pb.yaml", &playbook);
    t.run(&["run", "pb.yaml"]).code(0);
    assert_eq!(
        std::fs::read_to_string(t.path().join("ran.txt")).unwrap(),
        "first\nsecond\n"
    );
}

/// Both sides of a comparison are read in one read transaction: a writer
/// that commits the same row to both tables, again and again while the
/// comparison runs, never makes them differ. In WAL mode the writer is not
/// held back by the reader, so a comparison that read each side at its own
/// moment would see the right side ahead of the left.
#[test]
fn sqlite_compare_sees_one_state_while_a_writer_commits_to_both_sides() {
    let t = Test::new().db(
        "app.db",
        "PRAGMA journal_mode = WAL;
         CREATE TABLE l(n INTEGER, pad TEXT); CREATE TABLE r(n INTEGER, pad TEXT);
         WITH RECURSIVE s(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM s WHERE i < 300000)
         INSERT INTO l SELECT i, hex(randomblob(16)) FROM s;
         INSERT INTO r SELECT * FROM l;",
    );
    let t = t.file(
        "pb.yaml",
        "steps:\n  - id: cmp\n    action: sqlite.compare\n    with:\n      db: app.db\n      left: SELECT n, pad FROM l\n      right: SELECT n, pad FROM r\n",
    );
    let stop = std::sync::atomic::AtomicBool::new(false);
    let commits = std::thread::scope(|s| {
        let writer = s.spawn(|| {
            let conn = rusqlite::Connection::open(t.path().join("app.db")).unwrap();
            conn.busy_timeout(std::time::Duration::from_secs(5)).unwrap();
            let mut commits = 0u32;
            let mut n = 1_000_000;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                n += 1;
                conn.execute_batch(&format!(
                    "BEGIN IMMEDIATE; INSERT INTO l VALUES ({n}, 'w'); INSERT INTO r VALUES ({n}, 'w'); COMMIT;"
                ))
                .unwrap();
                commits += 1;
            }
            commits
        });
        let out = t.run(&["run", "pb.yaml"]);
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        let commits = writer.join().unwrap();
        out.code(0);
        let cmp = &out.finished("cmp")["outputs"];
        assert_eq!(cmp["same"], true, "{cmp}");
        assert_eq!(cmp["left_rows"], cmp["right_rows"], "{cmp}");
        commits
    });
    assert!(commits > 10, "the writer committed only {commits} times");
}
