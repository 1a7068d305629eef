//! `--dry-run`: read-only checks run for real, nothing changes anywhere.

use crate::support::{emergency_args, Test};

const THREE_IMAGES: &str =
    "CREATE TABLE images(id INTEGER PRIMARY KEY, f TEXT); INSERT INTO images(f) VALUES ('a'), ('b'), ('c');";

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
        .db("app.db", THREE_IMAGES)
        .file("pb.yaml", PLAYBOOK);
    let before = t.snapshot();
    let out = t.run(&["run", "pb.yaml", "--dry-run"]);
    out.code(0);
    assert_eq!(t.snapshot(), before, "the dry run changed or created files");
}

#[test]
fn a_dry_run_shows_live_checks_and_resolved_arguments() {
    let t = Test::new()
        .db("app.db", THREE_IMAGES)
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

/// Installs built like the app's, in the states an incident finds them in.
#[derive(Clone, Copy, Debug)]
enum Kind {
    LegacyBackupOnly,
    NoBackup,
    ImagesLostWithBackup,
    ImagesLostNoBackup,
    EveryBackupCorrupt,
    /// WAL mode, uploads still in the `-wal` file, the app's connection open.
    WalWithUploads,
}

/// Builds `kind` under `dir/app`.
fn build(dir: &std::path::Path, kind: Kind) {
    let app = crate::gofastcdn::Install::new(&dir.join("app"), 30, 15);
    if !matches!(kind, Kind::NoBackup | Kind::ImagesLostNoBackup) {
        let backup = app.legacy_backup("20240501-120000");
        if matches!(kind, Kind::EveryBackupCorrupt) {
            let mut bytes = std::fs::read(&backup).unwrap();
            bytes[4096..8192].fill(0xff);
            std::fs::write(&backup, bytes).unwrap();
        }
    }
    app.migrate().unwrap();
    app.upload("after.png", "image");
    app.upload("clip.mp4", "video");
    match kind {
        Kind::ImagesLostWithBackup | Kind::ImagesLostNoBackup => {
            app.conn().execute_batch("DROP TABLE images").unwrap();
        }
        Kind::WalWithUploads => {
            // The app switched to WAL and died with an upload only in the
            // -wal file: a process that exits without closing leaves it.
            let status = std::process::Command::new("python3")
                .arg("-c")
                .arg(
                    "import os, sqlite3, sys\n\
                     c = sqlite3.connect(sys.argv[1])\n\
                     c.execute('PRAGMA journal_mode = WAL')\n\
                     c.execute('PRAGMA wal_autocheckpoint = 0')\n\
                     c.execute(\"INSERT INTO media (file_name, checksum, type) VALUES ('late.png', x'01', 'image')\")\n\
                     c.commit()\n\
                     os._exit(0)",
                )
                .arg(app.db())
                .status()
                .unwrap();
            assert!(status.success());
            assert!(dir.join("app/db_data/main.db-wal").exists());
            assert!(dir.join("app/db_data/main.db-shm").exists());
        }
        _ => {}
    }
}

/// Every file under `dir` with its bytes and modification time.
fn files(dir: &std::path::Path) -> Vec<(std::path::PathBuf, Vec<u8>, std::time::SystemTime)> {
    let mut out = Vec::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                todo.push(p);
            } else {
                let modified = std::fs::metadata(&p).unwrap().modified().unwrap();
                out.push((p.clone(), std::fs::read(&p).unwrap(), modified));
            }
        }
    }
    out.sort();
    out
}

/// Which option the run took, from its journal.
fn taken(out: &crate::support::Output) -> String {
    let option_1 = out.finished("option-1");
    // A warning is option 1's own (a check that could not look everywhere)
    // or a fallback's that took over and fell short.
    match (
        option_1["status"].as_str(),
        option_1["recovered_by"].as_str(),
    ) {
        (Some("recovered" | "warning"), Some(by)) => by.to_owned(),
        (Some("ok" | "warning"), None) => "option-1".to_owned(),
        // Failed, every fallback too: no option rolled back.
        _ => "none".to_owned(),
    }
}

/// The dry run on one copy and the real run on another: the same verdict,
/// the same option predicted as taken, and the dry run changed no byte and
/// no modification time of any file, WAL `-shm` included.
#[test]
fn the_dry_runs_verdict_is_the_real_runs_on_installs_built_like_the_apps() {
    for kind in [
        Kind::LegacyBackupOnly,
        Kind::NoBackup,
        Kind::ImagesLostWithBackup,
        Kind::ImagesLostNoBackup,
        Kind::EveryBackupCorrupt,
        Kind::WalWithUploads,
    ] {
        let (dry, real) = (Test::new(), Test::new());
        build(dry.path(), kind);
        build(real.path(), kind);
        let before = files(dry.path());
        let args = emergency_args("review", &["--dry-run"]);
        let predicted = dry.run(&args.iter().map(String::as_str).collect::<Vec<_>>());
        assert!(
            files(dry.path()) == before,
            "{kind:?}: the dry run changed a file"
        );
        let args = emergency_args("review", &["--yes"]);
        let ran = real.run(&args.iter().map(String::as_str).collect::<Vec<_>>());
        assert_eq!(
            predicted.code, ran.code,
            "{kind:?}: the dry run said {} and the run {}\n--- dry run:\n{}\n--- run:\n{}",
            predicted.code, ran.code, predicted.stdout, ran.stdout
        );
        // The warnings it predicts are the ones the run then gives.
        let warnings = |out: &str| -> Vec<String> {
            // The closing list, after the verdict; a step's own line inside
            // an include is indented the same.
            out.lines()
                .skip_while(|l| !(l.contains(" warning") && l.ends_with(':')))
                .skip(1)
                .map_while(|l| l.strip_prefix("  ⚠ "))
                // The step; what it says is cut to the terminal's width in a run.
                .map(|l| l.split(": ").next().unwrap_or(l).to_owned())
                .collect()
        };
        assert_eq!(
            warnings(&predicted.stdout),
            warnings(&ran.stdout),
            "{kind:?}: other warnings predicted\n--- dry run:\n{}\n--- run:\n{}",
            predicted.stdout,
            ran.stdout
        );
        let option_line = predicted
            .stdout
            .lines()
            .find(|l| l.starts_with("  option-1: "))
            .unwrap_or_else(|| {
                panic!(
                    "{kind:?}: no prediction for option-1:\n{}",
                    predicted.stdout
                )
            });
        let takes_over = option_line
            .rsplit_once("; ")
            .and_then(|(_, tail)| tail.strip_suffix(" would take over"));
        let predicted_option = match takes_over {
            Some(option) => option,
            // It would fail, and no fallback would take over.
            None if predicted.code != 0 => "none",
            None => "option-1",
        };
        assert_eq!(predicted_option, taken(&ran), "{kind:?}: {option_line}");
    }
}

/// A change the dry run can make on its copy is made there, so the checks
/// after it read what the run will read: a wrong `verify` is found before
/// the run, not by it. The live file is not touched.
#[test]
fn a_dry_run_makes_its_changes_on_a_copy_and_checks_what_follows() {
    let pb = r#"
steps:
  - id: wipe
    action: sqlite.exec
    with: {db: app.db, sql: "DELETE FROM images WHERE id > 1"}
  - id: left
    action: sqlite.query
    with: {db: app.db, sql: "SELECT count(*) AS n FROM images"}
    verify:
      - name: two images left
        that: "steps.left.rows[0].n == 2"
"#;
    let t = Test::new().db("app.db", THREE_IMAGES).file("pb.yaml", pb);
    let before = t.snapshot();
    // One image is left after the wipe, not two: the dry run says so.
    let dry = t.run(&["run", "pb.yaml", "--dry-run"]);
    dry.code(1)
        .stdout_has("would execute on app.db in one transaction: DELETE FROM images WHERE id > 1")
        .stdout_has("verify two images left: not passed: `steps.left.rows[0].n == 2` is false")
        .stdout_has("dry run: the run would fail at step left");
    assert_eq!(t.snapshot(), before, "the dry run changed or created files");
    let real = t.run(&["run", "pb.yaml"]);
    real.code(1);
    assert_eq!(real.finished("left")["status"], "failed");
}

/// Where the dry run cannot know — a change to a file it could not copy
/// beforehand (its name comes from a command's output), and a check that
/// reads that file after it — it names the step in its last line and does
/// not exit 0, though the run itself would succeed.
#[test]
fn where_the_dry_run_cannot_know_it_says_which_step_and_does_not_exit_0() {
    let pb = r#"
steps:
  - id: where
    action: shell
    with: {command: [echo, app.db], read_only: true}
  - id: wipe
    action: sqlite.exec
    with: {db: "{{ steps.where.stdout | trim }}", sql: "DELETE FROM images WHERE id > 1"}
  - id: left
    action: sqlite.query
    with: {db: app.db, sql: "SELECT count(*) AS n FROM images"}
    verify:
      - name: one image left
        that: "steps.left.rows[0].n == 1"
"#;
    let t = Test::new().db("app.db", THREE_IMAGES).file("pb.yaml", pb);
    let before = t.snapshot();
    let dry = t.run(&["run", "pb.yaml", "--dry-run"]);
    dry.code(5);
    // The verdict, folded to fit the terminal, read as one line.
    let verdict = dry
        .stdout
        .split_once("dry run: cannot tell")
        .map(|(_, rest)| {
            rest.split("plan fingerprint")
                .next()
                .unwrap()
                .split_whitespace()
                .collect::<Vec<_>>()
                .join(" ")
        })
        .unwrap_or_else(|| panic!("no verdict:\n{}", dry.stdout));
    assert_eq!(
        verdict,
        "whether the run would succeed: left: cannot be predicted: it reads what earlier steps will change (a check of it does not hold now, before those steps)"
    );
    assert_eq!(t.snapshot(), before, "the dry run changed or created files");
    t.run(&["run", "pb.yaml"]).code(0);
}

/// Two reviewers save the dry run of one plan at once: one review is
/// recorded, whole, and the other is told the first one is kept.
#[test]
fn two_reviews_saved_at_once_keep_one_whole() {
    let t = Test::new()
        .db("app.db", "CREATE TABLE t(x); INSERT INTO t VALUES (1);")
        .file(
            "pb.yaml",
            "steps:\n  - id: read\n    action: sqlite.query\n    with: {db: app.db, sql: SELECT count(*) AS n FROM t}\n",
        );
    for _ in 0..5 {
        let _ = std::fs::remove_dir_all(t.path().join(".runbook/reviews"));
        let outs: Vec<_> = std::thread::scope(|s| {
            let a = s.spawn(|| t.run(&["run", "pb.yaml", "--dry-run", "--save-review"]));
            let b = s.spawn(|| t.run(&["run", "pb.yaml", "--dry-run", "--save-review"]));
            vec![a.join().unwrap(), b.join().unwrap()]
        });
        let recorded = outs
            .iter()
            .filter(|o| o.stdout.contains("review recorded: "))
            .count();
        assert_eq!(recorded, 1, "{}\n{}", outs[0].stdout, outs[1].stdout);
        let reviews: Vec<_> = std::fs::read_dir(t.path().join(".runbook/reviews"))
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        assert_eq!(reviews.len(), 1, "{reviews:?}");
        let text = std::fs::read_to_string(&reviews[0]).unwrap();
        serde_json::from_str::<serde_json::Value>(&text).expect("a whole review");
    }
}

/// The files `runbook ARGS` forced to disk (fsync, fdatasync), as strace
/// names them, and the run's output.
fn synced_by(t: &Test, args: &[String]) -> (Vec<String>, String) {
    let runbook = t.command(args);
    let trace = t.path().join("fsync.trace");
    let mut strace = std::process::Command::new("strace");
    strace
        .args(["-f", "-y", "-qq", "-e", "trace=fsync,fdatasync", "-o"])
        .arg(&trace)
        .arg(runbook.get_program())
        .args(runbook.get_args())
        .current_dir(runbook.get_current_dir().unwrap())
        .env_remove("RUNBOOK_RUNS")
        .stdin(std::process::Stdio::null());
    for (k, v) in runbook.get_envs() {
        match v {
            Some(v) => strace.env(k, v),
            None => strace.env_remove(k),
        };
    }
    let out = strace.output().expect("strace");
    let text = std::fs::read_to_string(&trace).unwrap();
    std::fs::remove_file(&trace).unwrap();
    let paths = text
        .lines()
        .filter_map(|l| Some(l.split_once('<')?.1.split_once('>')?.0.to_owned()))
        .collect();
    (paths, String::from_utf8_lossy(&out.stdout).into_owned())
}

/// A dry run makes the plan's changes on copies it then removes: forcing
/// them to disk would protect nothing, so it never does, whether it rolls
/// back on a copy (option 1) or restores one (option 2). The run that
/// follows still forces the database and its journal to disk.
#[test]
fn the_dry_run_forces_nothing_of_its_copies_to_disk_and_the_run_still_does() {
    if std::process::Command::new("strace")
        .arg("-V")
        .output()
        .is_err()
    {
        crate::support::skipped("strace is not installed");
        return;
    }
    for kind in [Kind::LegacyBackupOnly, Kind::ImagesLostWithBackup] {
        let t = Test::new();
        build(t.path(), kind);
        let (synced, stdout) = synced_by(&t, &emergency_args("review", &["--dry-run"]));
        assert!(stdout.contains("dry run"), "{kind:?}: {stdout}");
        let copies: Vec<&String> = synced
            .iter()
            .filter(|p| p.contains("runbook-dry-run-"))
            .collect();
        assert!(
            copies.is_empty(),
            "{kind:?}: the dry run forced its copies to disk: {copies:?}"
        );
    }
    let t = Test::new();
    build(t.path(), Kind::LegacyBackupOnly);
    let (synced, stdout) = synced_by(&t, &emergency_args("review", &["--yes"]));
    assert!(stdout.contains("run succeeded"), "{stdout}");
    for wanted in ["db_data/main.db", "journal.jsonl"] {
        assert!(
            synced.iter().any(|p| p.contains(wanted)),
            "the run did not force {wanted} to disk: {synced:?}"
        );
    }
}
