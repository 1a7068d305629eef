//! The disk fills up, the process may not write, the database is held,
//! a writer never stops: each is a clear error, and nothing is changed.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Stdio;

use crate::gofastcdn::Install;
use crate::{assert_integrity, dump, runbook, BIN, RESTORE_LEGACY};

fn install(dir: &Path) -> Install {
    let app = Install::new(&dir.join("app"), 2000, 1000);
    app.legacy_backup("20240501-120000");
    app.migrate().unwrap();
    app
}

/// Runs `runbook ARGS` under RLIMIT_FSIZE (`ulimit -f`): no file it writes
/// may grow past half the database, as on a disk that fills up midway.
fn with_half_the_disk(dir: &Path, app: &Install, args: &str) -> std::process::Output {
    let blocks = std::fs::metadata(app.db()).unwrap().len() / 512 / 2;
    with_blocks(dir, blocks, args)
}

/// Runs `runbook ARGS` with no file it writes allowed past `blocks` of
/// 512 bytes.
fn with_blocks(dir: &Path, blocks: u64, args: &str) -> std::process::Output {
    std::process::Command::new("sh")
        .arg("-c")
        .arg(format!("ulimit -f {blocks} && exec \"$0\" {args}"))
        .arg(BIN)
        .current_dir(dir)
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

fn only_legacy_backup(dir: &Path) -> Vec<String> {
    files_in(&dir.join("app/backups"))
}

#[test]
fn a_full_disk_during_backup_create_is_a_clear_error_and_leaves_no_partial_backup() {
    let t = tempfile::tempdir().unwrap();
    let app = install(t.path());
    let before = dump(&app.db());
    let out = with_half_the_disk(t.path(), &app, "backup create --db app/db_data/main.db");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.starts_with("error: copying into app/backups: File too large (os error 27) (the disk is full or a file-size limit applies"), "{stderr}");
    assert_eq!(
        only_legacy_backup(t.path()),
        ["db_backup_20240501-120000.db"],
        "a partial backup was left behind"
    );
    assert_eq!(dump(&app.db()), before);
}

#[test]
fn a_full_disk_during_restore_leaves_the_live_database_as_it_was() {
    let t = tempfile::tempdir().unwrap();
    let app = install(t.path());
    let before = dump(&app.db());
    // Enough for nothing the restore writes. On one filesystem the state
    // before is kept by exchange, not copied: the copy of the backup is
    // the one large write, and it fails.
    let out = with_half_the_disk(
        t.path(),
        &app,
        "backup restore --db app/db_data/main.db --backup app/backups/db_backup_20240501-120000.db --force",
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.starts_with("error: the copy of the backup failed, so nothing was restored: copying into app/backups: File too large (os error 27)"),
        "{stderr}"
    );
    assert_eq!(dump(&app.db()), before);
    assert_integrity(&app.db());
    assert_eq!(
        only_legacy_backup(t.path()),
        ["db_backup_20240501-120000.db"],
        "a partial copy was left behind"
    );
}

/// A database of two 512-byte pages whose backup's manifest is larger than
/// the backup: one finished migration whose name is 250 control characters,
/// each written as six in the manifest's JSON (`\u0001`). A limit of three
/// blocks lets the backup (two, and a write at its end) be written and
/// stops the manifest. The commands read markers from that table
/// (`--markers migration_records.name`), so the name is in the manifest.
/// Returns the database's path in `dir`.
fn smaller_than_its_manifest(dir: &Path, name: &str) -> String {
    let db = format!("{name}/main.db");
    std::fs::create_dir_all(dir.join(name)).unwrap();
    let conn = rusqlite::Connection::open(dir.join(&db)).unwrap();
    conn.execute_batch(
        "PRAGMA page_size = 512; CREATE TABLE migration_records (name TEXT, completed INTEGER);",
    )
    .unwrap();
    conn.execute(
        "INSERT INTO migration_records VALUES (?1, 1)",
        [format!("{name}{}", "\u{1}".repeat(250))],
    )
    .unwrap();
    drop(conn);
    assert_eq!(std::fs::metadata(dir.join(&db)).unwrap().len(), 1024);
    db
}

fn files_in(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

/// The backup was named before its manifest was written: a full disk at
/// the manifest left a backup without one, under a message saying nothing
/// was left half-written.
#[test]
fn a_full_disk_at_the_manifest_leaves_no_backup_without_one() {
    let t = tempfile::tempdir().unwrap();
    let db = smaller_than_its_manifest(t.path(), "db_data");
    std::fs::create_dir(t.path().join("backups")).unwrap();
    let out = with_blocks(
        t.path(),
        3,
        &format!("backup create --db {db} --dir backups --markers migration_records.name"),
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains(".json: File too large"), "{stderr}");
    assert!(stderr.contains("nothing was left half-written"), "{stderr}");
    assert_eq!(
        files_in(&t.path().join("backups")),
        Vec::<String>::new(),
        "something was left in the backup directory"
    );
}

/// A restore whose pre-restore backup is made but cannot be completed (its
/// manifest does not fit) restores nothing, and leaves no pre-restore
/// backup behind: nothing that looks like a backup without being one.
#[test]
fn a_full_disk_after_the_pre_restore_backup_leaves_no_orphan_behind() {
    let t = tempfile::tempdir().unwrap();
    let db = smaller_than_its_manifest(t.path(), "db_data");
    std::fs::create_dir(t.path().join("backups")).unwrap();
    let other = tempfile::tempdir().unwrap();
    let source = smaller_than_its_manifest(other.path(), "elsewhere");
    std::fs::copy(
        other.path().join(source),
        t.path().join("backups/db_backup_20240101-000000.db"),
    )
    .unwrap();
    let before = std::fs::read(t.path().join(&db)).unwrap();
    let out = with_blocks(
        t.path(),
        3,
        &format!(
            "backup restore --db {db} --dir backups --backup backups/db_backup_20240101-000000.db --force --markers migration_records.name"
        ),
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("the pre-restore backup failed, so nothing was restored"),
        "{stderr}"
    );
    assert!(stderr.contains(".json: File too large"), "{stderr}");
    assert_eq!(
        files_in(&t.path().join("backups")),
        ["db_backup_20240101-000000.db"],
        "a pre-restore backup was left behind"
    );
    assert_eq!(std::fs::read(t.path().join(&db)).unwrap(), before);
    assert_eq!(
        files_in(t.path().join(&db).parent().unwrap()),
        ["main.db"],
        "a temporary file was left beside the database"
    );
    assert_integrity(&t.path().join(&db));
}

/// Runs runbook as an unprivileged user when the tests run as root, so that
/// file permissions apply; `None` when that cannot be done here.
fn as_nobody(dir: &Path, args: &[&str]) -> Option<std::process::Output> {
    // SAFETY: getuid has no preconditions.
    let root = unsafe { libc::getuid() } == 0;
    let mut cmd = if root {
        if std::process::Command::new("setpriv")
            .arg("--version")
            .output()
            .is_err()
        {
            return None;
        }
        let mut c = std::process::Command::new("setpriv");
        c.args(["--reuid=65534", "--regid=65534", "--clear-groups", BIN]);
        c
    } else {
        std::process::Command::new(BIN)
    };
    Some(
        cmd.args(args)
            .current_dir(dir)
            .stdin(Stdio::null())
            .output()
            .unwrap(),
    )
}

fn open_up(path: &Path, mode: u32) {
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

#[test]
fn a_read_only_backup_directory_is_a_clear_error() {
    let t = tempfile::tempdir().unwrap();
    let app = install(t.path());
    open_up(t.path(), 0o755);
    for p in ["app", "app/db_data"] {
        open_up(&t.path().join(p), 0o755);
    }
    open_up(&app.db(), 0o644);
    open_up(&t.path().join("app/backups"), 0o555);
    let Some(out) = as_nobody(
        t.path(),
        &["backup", "create", "--db", "app/db_data/main.db"],
    ) else {
        return cannot_drop_privileges();
    };
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    // It cannot even take the directory's lock: refused before anything is done.
    assert!(
        stderr.starts_with("error: cannot lock app/backups (")
            && stderr.contains("/app/backups/.runbook-lock): Permission denied"),
        "{stderr}"
    );
    open_up(&t.path().join("app/backups"), 0o755);
}

#[test]
fn a_database_owned_by_another_user_is_a_clear_error_and_unchanged() {
    let t = tempfile::tempdir().unwrap();
    let app = install(t.path());
    let before = dump(&app.db());
    open_up(t.path(), 0o755);
    for p in ["app", "app/db_data", "app/backups"] {
        open_up(&t.path().join(p), 0o777);
    }
    open_up(&app.db(), 0o600);
    let pb = format!("{}/rollback-option-1.yaml", crate::PLAYBOOKS);
    let Some(out) = as_nobody(
        t.path(),
        &[
            "run",
            &pb,
            "--var",
            "root=app",
            "--runs",
            "app/backups/runs",
        ],
    ) else {
        return cannot_drop_privileges();
    };
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    assert!(
        stdout.contains("app/db_data/main.db: Permission denied"),
        "{stdout}"
    );
    assert_eq!(dump(&app.db()), before);
}

#[test]
fn a_database_held_by_a_writer_past_the_timeout_is_refused_and_unchanged() {
    let t = tempfile::tempdir().unwrap();
    let app = install(t.path());
    let before = dump(&app.db());
    let holder = app.conn();
    holder
        .execute_batch("BEGIN IMMEDIATE; UPDATE configs SET value = 'busy';")
        .unwrap();
    let out = runbook(t.path(), &RESTORE_LEGACY)
        .stderr(Stdio::piped())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("is in use: open by process"), "{stderr}");
    holder.execute_batch("ROLLBACK").unwrap();
    drop(holder);
    assert_eq!(dump(&app.db()), before);
}

/// WAL mode, and a writer that commits row after row while the backup runs:
/// the backup holds the rows of one moment, a prefix with no gap.
#[test]
fn a_backup_during_a_stream_of_wal_writes_is_a_consistent_snapshot() {
    let t = tempfile::tempdir().unwrap();
    let app = install(t.path());
    let conn = app.conn();
    conn.query_row("PRAGMA journal_mode = WAL", [], |r| r.get::<_, String>(0))
        .unwrap();
    conn.execute_batch("CREATE TABLE ticks (n INTEGER PRIMARY KEY, pad BLOB);")
        .unwrap();
    drop(conn);
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let writer = {
        let stop = std::sync::Arc::clone(&stop);
        let db = app.db();
        std::thread::spawn(move || {
            let conn = rusqlite::Connection::open(db).unwrap();
            conn.busy_timeout(std::time::Duration::from_secs(10))
                .unwrap();
            let mut n = 0i64;
            while !stop.load(std::sync::atomic::Ordering::SeqCst) {
                n += 1;
                conn.execute(
                    "INSERT INTO ticks (n, pad) VALUES (?1, zeroblob(2000))",
                    [n],
                )
                .unwrap();
            }
            n
        })
    };
    std::thread::sleep(std::time::Duration::from_millis(100));
    let mut backups = Vec::new();
    for _ in 0..5 {
        let out = runbook(
            t.path(),
            &["backup", "create", "--db", "app/db_data/main.db", "--json"],
        )
        .stdout(Stdio::piped())
        .output()
        .unwrap();
        assert!(out.status.success());
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        backups.push(t.path().join(v["path"].as_str().unwrap()));
    }
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    let written = writer.join().unwrap();
    let mut last = 0;
    for b in &backups {
        assert_integrity(b);
        let conn = rusqlite::Connection::open(b).unwrap();
        let (count, max): (i64, i64) = conn
            .query_row("SELECT count(*), coalesce(max(n), 0) FROM ticks", [], |r| {
                Ok((r.get(0)?, r.get(1)?))
            })
            .unwrap();
        assert_eq!(
            count,
            max,
            "{}: rows 1..{max} with gaps: not one moment",
            b.display()
        );
        assert!(count >= last, "a later backup holds fewer rows");
        last = count;
    }
    assert!(
        last > 0 && last <= written,
        "{last} rows backed up of {written} written"
    );
}

/// A test that needs to drop privileges where it cannot (not root, or no
/// setpriv): a failure where everything a test needs is installed
/// (`.ci/run`, as root), else said aloud.
fn cannot_drop_privileges() {
    let why = "no way to drop privileges here (it takes root and setpriv)";
    assert!(
        std::env::var_os("RUNBOOK_TEST_NO_SKIP").is_none(),
        "not skipped where everything is installed: {why}"
    );
    use std::io::Write;
    let _ = writeln!(std::io::stderr(), "SKIPPED: {why}");
}

/// As root, an install every user may change, with the app's connection
/// open and idle, as between two requests: no lock, only an open file,
/// held by the test's own process, which `nobody` may not look at. `None`
/// (said) where the tests do not run as root.
fn held_install() -> Option<(tempfile::TempDir, Install, rusqlite::Connection)> {
    // SAFETY: getuid has no preconditions.
    if unsafe { libc::getuid() } != 0 {
        cannot_drop_privileges();
        return None;
    }
    let t = tempfile::tempdir().unwrap();
    let dir = t.path();
    let app = install(dir);
    open_up(dir, 0o755);
    for p in ["app", "app/db_data", "app/backups"] {
        open_up(&dir.join(p), 0o777);
    }
    open_up(&app.db(), 0o666);
    let conn = app.conn();
    conn.query_row("SELECT count(*) FROM media", [], |r| r.get::<_, i64>(0))
        .unwrap();
    Some((t, app, conn))
}

/// What a look through /proc that could not cover everything says, after
/// what it saw: the count of root's processes varies, the rest does not.
const BUT: &str = "but the open files of ";
const RUN_AS_ROOT: &str =
    "may not be looked at by user nobody; run it as root (sudo) so that every process can be seen";

/// Whitespace folded: the summary wraps lines to a terminal's width.
fn flat(out: &[u8]) -> String {
    String::from_utf8_lossy(out)
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
}

/// A user who may not look at other users' processes cannot know that
/// none of them holds the database: the app's idle connection (root's,
/// here) shows no lock, and its open file is out of that user's sight.
/// Root sees it and refuses, naming it, changing nothing; the other user's
/// restore does not claim to have seen what it could not: it says what it
/// could not look at, and how to look.
#[test]
fn a_restore_by_a_user_who_cannot_see_every_process_says_what_it_could_not_see() {
    let Some((t, app, held)) = held_install() else {
        return;
    };
    let before = dump(&app.db());
    let restore = RESTORE_LEGACY;
    let out = runbook(t.path(), &restore)
        .stderr(Stdio::piped())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains(&format!(
            "is in use: open by process {} (",
            std::process::id()
        )),
        "{stderr}"
    );
    assert!(!stderr.contains("may not be looked at"), "{stderr}");
    assert_eq!(dump(&app.db()), before);

    let Some(out) = as_nobody(t.path(), &restore) else {
        return cannot_drop_privileges();
    };
    let stderr = flat(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(
        stderr.contains(&format!(
            "warning: no process seen holding the old database, {BUT}"
        )) && stderr.contains(RUN_AS_ROOT),
        "{stderr}"
    );
    drop(held);
}

/// The check a playbook makes before it changes the database: run by such
/// a user, the step that makes it ends ⚠, not ✓, in a dry run and in the
/// run; a `require` of it passes but shows, even in a run, what it could
/// not see, and counts as a warning of the run; a `skip_if` of it does not
/// skip. Run by root, with no other process holding the file, it is ✓ with
/// nothing to add, and the `skip_if` skips.
#[test]
fn a_quiescent_check_by_a_user_who_cannot_see_every_process_is_not_a_tick() {
    let Some((t, _app, held)) = held_install() else {
        return;
    };
    std::fs::write(
        t.path().join("idle.yaml"),
        "name: idle\nsteps:\n  - id: idle\n    name: Nothing else uses the database\n    \
         action: sqlite.quiescent\n    with: {db: app/db_data/main.db, timeout: 1s}\n  \
         - id: after\n    name: Runs once nothing else does\n    require:\n      \
         - name: nothing else uses it\n        action: sqlite.quiescent\n        \
         with: {db: app/db_data/main.db, timeout: 1s}\n    action: shell\n    \
         with: {command: touch app/after}\n  \
         - id: unless-idle\n    name: Runs unless nothing else uses it\n    skip_if:\n      \
         - name: nothing else uses it\n        action: sqlite.quiescent\n        \
         with: {db: app/db_data/main.db, timeout: 1s}\n    action: shell\n    \
         with: {command: touch app/unless}\n",
    )
    .unwrap();
    let base = ["run", "idle.yaml", "--runs", "app/backups/runs"];
    let Some(dry) = as_nobody(t.path(), &[&base[..], &["--dry-run"]].concat()) else {
        return cannot_drop_privileges();
    };
    let stdout = flat(&dry.stdout);
    assert_eq!(dry.status.code(), Some(0), "{stdout}");
    assert!(
        stdout.contains(&format!(
            "⚠ idle Nothing else uses the database: no process seen using it, {BUT}"
        )) && stdout.contains("the run would succeed with 2 warnings")
            && stdout.contains(&format!(
                "⚠ after: nothing else uses it: no process seen using it, {BUT}"
            ))
            && stdout.contains(RUN_AS_ROOT),
        "{stdout}"
    );
    let Some(run) = as_nobody(t.path(), &base) else {
        return cannot_drop_privileges();
    };
    let stdout = flat(&run.stdout);
    assert_eq!(run.status.code(), Some(0), "{stdout}");
    assert!(
        stdout.contains("⚠ idle Nothing else uses the database: no process seen using it, ")
            && stdout.contains(&format!(
                "require nothing else uses it: passed: no process seen using it, {BUT}"
            ))
            && stdout.contains("run succeeded with 2 warnings"),
        "{stdout}"
    );
    assert!(!stdout.contains("✓ idle"), "{stdout}");
    // Skipped as done only on a check that fully held.
    assert!(stdout.contains("✓ unless-idle"), "{stdout}");
    assert!(t.path().join("app/unless").exists());

    drop(held);
    // Root in a container without CAP_SYS_PTRACE is itself blind to the
    // processes of other users, such as other tests' `nobody` runs.
    if !runbook::holders::sees_every_process() {
        eprintln!("root here lacks CAP_SYS_PTRACE or CAP_DAC_*: its own check is not asserted");
    } else {
        std::fs::remove_file(t.path().join("app/after")).unwrap();
        let out = runbook(t.path(), &base)
            .stdout(Stdio::piped())
            .output()
            .unwrap();
        let stdout = flat(&out.stdout);
        assert_eq!(out.status.code(), Some(0), "{stdout}");
        assert!(
            stdout.contains("✓ idle Nothing else uses the database")
                && stdout.contains("- unless-idle Runs unless nothing else uses it: skip_if")
                && !stdout.contains("may not be looked at"),
            "{stdout}"
        );
    }
    assert!(t.path().join("app/after").exists());
}

/// The emergency run by a user who may not look at every process: its
/// checks of the database end as warnings, and what the mails and the
/// report state is still what happened. Option 1 made to fail, option 2
/// rolls back with a warning of its own, and the facts name option 2, not
/// option 1, whose status is then a warning too, and the report counts the
/// recovery; without the failure, they name option 1.
#[test]
fn an_emergency_by_a_user_who_cannot_see_every_process_names_the_option_that_rolled_back() {
    let Some((t, _app, held)) = held_install() else {
        return;
    };
    drop(held);
    let finished = |extra: &[&str]| -> serde_json::Value {
        let base = ["--rehearse", "--json", "--runs", "app/backups/runs"];
        let args = crate::emergency(&[&base[..], extra].concat());
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let out = as_nobody(t.path(), &args).unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(0), "{stderr}{stdout}");
        stdout
            .lines()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .find(|e| e["event"] == "run_finished")
            .unwrap_or_else(|| panic!("no run_finished: {stdout}"))
    };
    let unseen = |run: &serde_json::Value| {
        run["warnings"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|w| w.as_str().unwrap().contains(RUN_AS_ROOT))
            .count()
    };

    let run = finished(&["--fail", "option-1"]);
    assert_eq!(
        run["facts"]["rolled_back_by"], "option 2, the pre-migration backup restored",
        "{run}"
    );
    assert!(unseen(&run) >= 2, "{run}");
    // The report counts it as the recovery it is, though it fell short.
    let report = runbook(
        t.path(),
        &["report", "latest", "--runs", "app/backups/runs", "--json"],
    )
    .stdout(Stdio::piped())
    .output()
    .unwrap();
    let summary: serde_json::Value = serde_json::from_slice(&report.stdout).unwrap();
    assert_eq!(
        summary["recoveries"],
        serde_json::json!([{"step": "option-1", "by": "option-2"}]),
        "{summary}"
    );
    assert!(
        summary["timeline"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["step"] == "option-1"
                && e["outcome"] == "recovered by `option-2`, with warnings"),
        "{summary}"
    );

    let run = finished(&[]);
    assert_eq!(
        run["facts"]["rolled_back_by"], "option 1, the built-in rollback",
        "{run}"
    );
    assert!(run["facts"]["uploads_carried_back"].is_object(), "{run}");
    assert!(unseen(&run) >= 2, "{run}");
}

/// Under a file-size limit runbook reports a write that fails (EFBIG), and
/// is not killed by SIGXFSZ; the programs its steps start are, as they
/// would be from a shell: the limit stops `head` with the signal (exit
/// 128 + 25 from sh), not with an error it may not expect. A step's
/// program that inherited an ignored SIGXFSZ would write on past where the
/// operator's shell would have stopped it.
#[test]
fn a_program_a_step_starts_is_stopped_by_a_file_size_limit_as_from_a_shell() {
    let t = tempfile::tempdir().unwrap();
    std::fs::write(
        t.path().join("big.yaml"),
        "name: big\nsteps:\n  - id: big\n    name: Write past the limit\n    action: shell\n    \
         with: {command: [sh, -c, \"head -c 1048576 /dev/zero > big\"]}\n",
    )
    .unwrap();
    // 64 blocks of 512 bytes: room for the run's journal and report.
    let out = with_blocks(t.path(), 64, "run big.yaml --runs runs --json");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    let finished: serde_json::Value = stdout
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .find(|e| e["event"] == "step_finished" && e["step"] == "big")
        .unwrap_or_else(|| panic!("no step_finished for big: {stdout}"));
    assert_eq!(
        finished["detail"], "`sh` exited with code 153: File size limit exceeded",
        "{finished}"
    );
    assert!(
        !finished.to_string().contains("File too large"),
        "the program saw EFBIG instead of the signal: {finished}"
    );
    assert_eq!(
        std::fs::metadata(t.path().join("big")).unwrap().len(),
        64 * 512
    );
}
