//! `runbook backup` and the backup store: snapshots that are consistent,
//! durable, never overwritten, and never trusted unverified.

use std::os::unix::fs::PermissionsExt;

use crate::gofastcdn::Install;
use crate::support::Test;

#[test]
fn create_writes_a_0600_backup_and_a_manifest_with_the_fingerprint() {
    let t = Test::new();
    let app = Install::new(&t.path().join("app"), 12, 7);
    app.migrate().unwrap();
    let v = t.backup_create();
    let path = v["path"].as_str().unwrap();
    assert!(path.starts_with("app/backups/runbook-"), "{path}");
    let mode = std::fs::metadata(t.path().join(path))
        .unwrap()
        .permissions()
        .mode()
        & 0o777;
    assert_eq!(mode, 0o600);
    let manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(t.path().join(format!("{path}.json"))).unwrap())
            .unwrap();
    // By default every table is counted, and no migration table is assumed.
    assert_eq!(manifest["fingerprint"]["counts"]["images"], 12);
    assert_eq!(manifest["fingerprint"]["counts"]["media"], 10 + 6);
    assert_eq!(manifest["fingerprint"]["counts"]["migration_records"], 1);
    assert_eq!(manifest["fingerprint"]["markers"], serde_json::json!([]));
    assert_eq!(manifest["counting"], serde_json::json!({}));
    assert_eq!(
        manifest["fingerprint"]["schema"].as_str().unwrap().len(),
        64
    );
    // In the application's terms, given on the command line, and recorded.
    let out = t.run(&[
        "backup",
        "create",
        "--db",
        "app/db_data/main.db",
        "--json",
        "--count",
        "images",
        "--count",
        "media",
        "--soft-delete",
        "deleted_at",
        "--markers",
        "migration_records.name",
    ]);
    out.code(0);
    let v: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
    let m = &v["manifest"];
    assert_eq!(
        m["fingerprint"]["counts"],
        serde_json::json!({"images": 12, "media": 16}),
        "{m}"
    );
    assert_eq!(m["fingerprint"]["markers"][0], "media_unification_2024");
    assert_eq!(
        m["counting"]["tables"],
        serde_json::json!(["images", "media"])
    );
    assert_eq!(m["counting"]["markers"]["table"], "migration_records");
    t.run(&["backup", "list", "--db", "app/db_data/main.db"])
        .code(0)
        .stdout_has("images 12, media 16; markers: media_unification_2024");
    assert_eq!(manifest["size"], std::fs::metadata(app.db()).unwrap().len());
    assert_eq!(manifest["blake3"], blake3_of(&t.path().join(path)));
    assert_eq!(manifest["format"], 2);
    assert!(manifest.get("sha256").is_none(), "{manifest}");
}

#[test]
fn backups_made_in_the_same_second_never_overwrite_each_other() {
    let t = Test::new();
    let _app = Install::new(&t.path().join("app"), 3, 3);
    for _ in 0..5 {
        t.run(&[
            "backup",
            "create",
            "--db",
            "app/db_data/main.db",
            "--label",
            "same",
        ])
        .code(0);
    }
    let dbs = std::fs::read_dir(t.path().join("app/backups"))
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .unwrap()
                .path()
                .extension()
                .is_some_and(|x| x == "db")
        })
        .count();
    assert_eq!(dbs, 5);
}

#[test]
fn list_shows_ours_and_the_apps_legacy_backups_newest_first() {
    let t = Test::new();
    let app = Install::new(&t.path().join("app"), 3, 3);
    app.legacy_backup("20240101-000000");
    app.legacy_backup("20240301-000000");
    t.run(&["backup", "create", "--db", "app/db_data/main.db"])
        .code(0);
    // The app's own backups are listed when their prefix is given.
    let out = t.run(&["backup", "list", "--db", "app/db_data/main.db"]);
    assert_eq!(out.stdout.lines().count(), 1, "{}", out.stdout);
    let out = t.run(&[
        "backup",
        "list",
        "--db",
        "app/db_data/main.db",
        "--app-backups",
        "db_backup_",
    ]);
    out.code(0);
    let lines: Vec<&str> = out.stdout.lines().collect();
    assert_eq!(lines.len(), 3, "{}", out.stdout);
    // With --json, the `backup.list` action's outputs: one document.
    let js = t.run(&[
        "backup",
        "list",
        "--db",
        "app/db_data/main.db",
        "--app-backups",
        "db_backup_",
        "--json",
    ]);
    js.code(0);
    let v: serde_json::Value = serde_json::from_str(&js.stdout).unwrap();
    assert_eq!(v["count"], 3, "{v}");
    assert_eq!(v["backups"][0]["kind"], "runbook");
    assert_eq!(v["backups"][1]["kind"], "legacy");
    assert!(v["backups"][0]["fingerprint"]["tables"].is_array(), "{v}");
    assert!(!js.stdout.contains("\"Ok\""), "{}", js.stdout);
    assert!(
        lines[0].contains("runbook") && lines[0].contains("docs 3, images 3"),
        "{}",
        lines[0]
    );
    assert!(
        lines[1].contains("2024-03-01T00:00:00Z  legacy"),
        "{}",
        lines[1]
    );
    assert!(
        lines[2].contains("2024-01-01T00:00:00Z  legacy"),
        "{}",
        lines[2]
    );
}

#[test]
fn verify_rejects_corrupt_truncated_and_foreign_files() {
    let t = Test::new();
    let app = Install::new(&t.path().join("app"), 50, 50);
    let good = app.legacy_backup("20240101-000000");
    t.run(&["backup", "verify", "--backup", good.to_str().unwrap()])
        .code(0)
        .stdout_has("integrity ok, no manifest to compare the blake3 with")
        .stdout_has("recorded in a new manifest");

    let bytes = std::fs::read(&good).unwrap();
    let truncated = t.path().join("truncated.db");
    std::fs::write(&truncated, &bytes[..bytes.len() / 2]).unwrap();
    t.run(&["backup", "verify", "--backup", "truncated.db"])
        .code(1)
        .stderr_has("error: ");

    let foreign = t.path().join("notes.db");
    std::fs::write(&foreign, "these are not the bytes you are looking for").unwrap();
    t.run(&["backup", "verify", "--backup", "notes.db"])
        .code(1)
        .stderr_has("error: notes.db is not an SQLite database");

    // A backup of ours whose bytes changed after it was made.
    let v = t.backup_create();
    let ours = t.path().join(v["path"].as_str().unwrap());
    let conn = rusqlite::Connection::open(&ours).unwrap();
    conn.execute("UPDATE configs SET value = 'tampered'", [])
        .unwrap();
    drop(conn);
    t.run(&["backup", "verify", "--backup", ours.to_str().unwrap()])
        .code(1)
        .stderr_has("does not match its manifest");
}

#[test]
fn wal_rows_that_are_only_in_the_wal_file_are_in_the_backup_and_survive_restore() {
    let t = Test::new();
    let app = Install::new(&t.path().join("app"), 5, 5);
    let conn = app.conn();
    conn.query_row("PRAGMA journal_mode = WAL", [], |r| r.get::<_, String>(0))
        .unwrap();
    conn.execute_batch("PRAGMA wal_autocheckpoint = 0;")
        .unwrap();
    for i in 0..30 {
        conn.execute(
            "INSERT INTO images (file_name) VALUES (?)",
            [format!("wal-{i}.png")],
        )
        .unwrap();
    }
    let wal = t.path().join("app/db_data/main.db-wal");
    assert!(
        std::fs::metadata(&wal).unwrap().len() > 0,
        "the rows should be in the -wal file"
    );
    let v = t.backup_create();
    assert_eq!(v["manifest"]["fingerprint"]["counts"]["images"], 35);
    let backup = v["path"].as_str().unwrap().to_owned();
    // The backup is one self-contained file.
    assert!(!t.path().join(format!("{backup}-wal")).exists());
    drop(conn);

    // Change the live database, then restore: the 35 rows come back.
    app.conn().execute("DELETE FROM images", []).unwrap();
    t.backup_restore(&backup).code(0);
    assert_eq!(app.count("images"), 35);
}

#[test]
fn restore_refuses_while_another_process_holds_the_database() {
    let t = Test::new();
    let app = Install::new(&t.path().join("app"), 5, 5);
    let backup = app.legacy_backup("20240101-000000");
    app.conn().execute("DELETE FROM docs", []).unwrap();
    let before = app.bytes();
    let holder = app.conn();
    holder
        .execute_batch("BEGIN; SELECT count(*) FROM images;")
        .unwrap();
    t.backup_restore(backup.to_str().unwrap())
        .code(1)
        .stderr_has("is in use");
    holder.execute_batch("COMMIT").unwrap();
    assert_eq!(app.bytes(), before);
}

/// The backup is checked while the pre-restore backup is being made; when
/// the check fails, that backup goes too, and the live file is as it was.
#[test]
fn a_refused_restore_leaves_no_file_behind_and_the_database_as_it_was() {
    let t = Test::new();
    let app = Install::new(&t.path().join("app"), 6, 4);
    let made = t.backup_create();
    let good = made["path"].as_str().unwrap().to_owned();
    let files = |dir: &str| -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(t.path().join(dir))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    };
    // A sound database whose manifest names other bytes: the checksum fails.
    let tampered = "app/backups/tampered.db";
    let bytes = std::fs::read(t.path().join(&good)).unwrap();
    std::fs::write(t.path().join(tampered), &bytes).unwrap();
    let manifest = std::fs::read_to_string(t.path().join(format!("{good}.json"))).unwrap();
    let sha = made["manifest"]["blake3"].as_str().unwrap();
    std::fs::write(
        t.path().join(format!("{tampered}.json")),
        manifest.replace(sha, &"0".repeat(64)),
    )
    .unwrap();
    // Cut short: the integrity check fails.
    let truncated = "app/backups/truncated.db";
    std::fs::write(t.path().join(truncated), &bytes[..bytes.len() / 3]).unwrap();

    let before = app.bytes();
    let backups = files("app/backups");
    let live_dir = files("app/db_data");
    t.backup_restore(tampered)
        .code(1)
        .stderr_has("does not match its manifest");
    t.backup_restore(truncated)
        .code(1)
        .stderr_has("truncated.db");
    assert_eq!(app.bytes(), before);
    assert_eq!(
        files("app/backups"),
        backups,
        "a pre-restore backup was left"
    );
    assert_eq!(files("app/db_data"), live_dir, "a temporary file was left");
    assert_eq!(app.count("images"), 6);
}

#[test]
fn restore_without_a_terminal_or_force_asks_and_fails_at_once() {
    let t = Test::new();
    let app = Install::new(&t.path().join("app"), 2, 2);
    let backup = app.legacy_backup("20240101-000000");
    t.run(&[
        "backup",
        "restore",
        "--db",
        "app/db_data/main.db",
        "--backup",
        backup.to_str().unwrap(),
    ])
    .code(1)
    .stderr_has("pass --force to go ahead without asking");
}

#[test]
fn delete_removes_the_backup_and_its_manifest() {
    let t = Test::new();
    let _app = Install::new(&t.path().join("app"), 2, 2);
    let v = t.backup_create();
    let path = v["path"].as_str().unwrap().to_owned();
    t.run(&["backup", "delete", "--backup", &path]).code(1);
    assert!(t.path().join(&path).exists());
    t.run(&["backup", "delete", "--backup", &path, "--force"])
        .code(0);
    assert!(!t.path().join(&path).exists());
    assert!(!t.path().join(format!("{path}.json")).exists());
}

/// kill -9 at many moments of a restore: the database is always the old one
/// or the new one, whole.
#[test]
fn a_restore_killed_at_any_moment_leaves_the_old_or_the_new_database_whole() {
    let t = Test::new();
    let app = Install::new(&t.path().join("app"), 3000, 2000);
    let backup = app.legacy_backup("20240101-000000");
    let new_images = app.dump("images");
    app.migrate().unwrap();
    app.conn()
        .execute_batch("DELETE FROM images WHERE id % 3 = 0; INSERT INTO images (file_name) VALUES ('only-in-old');")
        .unwrap();
    let old_images = app.dump("images");
    let old_copy = t.path().join("old.db");
    std::fs::copy(app.db(), &old_copy).unwrap();
    let bin = env!("CARGO_BIN_EXE_runbook");
    let restore = || {
        std::process::Command::new(bin)
            .args([
                "backup",
                "restore",
                "--db",
                "app/db_data/main.db",
                "--backup",
            ])
            .arg(&backup)
            .arg("--force")
            .current_dir(t.path())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap()
    };
    // How long a whole restore takes here, so the kills spread over all of it.
    let started = std::time::Instant::now();
    assert!(restore().wait().unwrap().success());
    let whole = started.elapsed();
    assert_eq!(app.dump("images"), new_images);
    std::fs::copy(&old_copy, app.db()).unwrap();

    let trials = 40u32;
    let (mut saw_old, mut saw_new) = (0, 0);
    for trial in 0..trials {
        let mut child = restore();
        std::thread::sleep(whole * trial * 5 / (trials * 4));
        let _ = child.kill();
        let _ = child.wait();
        let conn = rusqlite::Connection::open(app.db()).unwrap();
        let check: String = conn
            .query_row("PRAGMA integrity_check", [], |r| r.get(0))
            .unwrap();
        assert_eq!(check, "ok", "trial {trial}");
        drop(conn);
        let now = app.dump("images");
        if now == old_images {
            saw_old += 1;
        } else if now == new_images {
            saw_new += 1;
            std::fs::copy(&old_copy, app.db()).unwrap();
        } else {
            panic!("trial {trial}: the database is neither the old nor the new one");
        }
    }
    assert!(
        saw_old > 0 && saw_new > 0,
        "the kills should land both before and after the swap (old {saw_old}, new {saw_new})"
    );
}

#[test]
fn a_database_sqlite_cannot_read_is_kept_byte_for_byte_and_can_be_restored_over() {
    let t = Test::new();
    let app = Install::new(&t.path().join("app"), 50, 50);
    let backup = app.legacy_backup("20240101-000000");
    // The live file is wrecked: its first page overwritten.
    let mut bytes = std::fs::read(app.db()).unwrap();
    bytes[..4096].fill(0x42);
    std::fs::write(app.db(), &bytes).unwrap();
    std::fs::write(
        t.path().join("app/db_data/main.db-journal"),
        b"a stale journal",
    )
    .unwrap();

    let out = t.run(&[
        "backup",
        "create",
        "--db",
        "app/db_data/main.db",
        "--label",
        "emergency",
        "--json",
    ]);
    out.code(0);
    let v: serde_json::Value = serde_json::from_str(out.stdout.trim()).unwrap();
    assert_eq!(v["manifest"]["raw"], true);
    let kept = t.path().join(v["path"].as_str().unwrap());
    assert_eq!(
        std::fs::read(&kept).unwrap(),
        bytes,
        "the raw backup is not the file's bytes"
    );
    assert!(
        kept.with_extension("db-journal").exists(),
        "its journal was not kept beside it"
    );
    // A raw backup is never chosen for a restore.
    t.run(&["backup", "list", "--db", "app/db_data/main.db"])
        .code(0)
        .stdout_has("unreadable");

    let out = t.backup_restore(backup.to_str().unwrap());
    out.code(0).stdout_has("pre-restore-raw");
    assert_eq!(app.count("images"), 50);
    assert!(
        !t.path().join("app/db_data/main.db-journal").exists(),
        "the stale journal was left for SQLite to replay"
    );
}

/// Numbers in `ticks` of a database file.
fn ticks(db: &std::path::Path) -> std::collections::BTreeSet<i64> {
    let conn =
        rusqlite::Connection::open_with_flags(db, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
            .unwrap();
    let mut stmt = conn.prepare("SELECT n FROM ticks").unwrap();
    let rows = stmt.query_map([], |r| r.get(0)).unwrap();
    rows.collect::<Result<_, _>>().unwrap()
}

fn blake3_of(path: &std::path::Path) -> String {
    blake3::hash(&std::fs::read(path).unwrap())
        .to_hex()
        .to_string()
}

/// An app that reconnects per request: a thread that opens the database,
/// inserts the next number into `ticks` and closes, every 10 ms, and
/// remembers each insert whose commit returned OK.
struct Writer {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    thread: std::thread::JoinHandle<Vec<i64>>,
}

impl Writer {
    fn start(db: std::path::PathBuf, first: i64) -> Writer {
        use std::sync::atomic::Ordering;
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let stopping = std::sync::Arc::clone(&stop);
        let thread = std::thread::spawn(move || {
            let mut committed = Vec::new();
            let mut n = first;
            while !stopping.load(Ordering::SeqCst) {
                n += 1;
                // Never one that creates the file.
                if let Ok(conn) = rusqlite::Connection::open_with_flags(
                    &db,
                    rusqlite::OpenFlags::SQLITE_OPEN_READ_WRITE,
                ) {
                    conn.busy_timeout(std::time::Duration::from_millis(5))
                        .unwrap();
                    if conn
                        .execute("INSERT INTO ticks (n) VALUES (?1)", [n])
                        .is_ok()
                    {
                        committed.push(n);
                    }
                }
                std::thread::sleep(std::time::Duration::from_millis(10));
            }
            committed
        });
        // Writing before the command under test starts.
        std::thread::sleep(std::time::Duration::from_millis(100));
        Writer { stop, thread }
    }

    /// Lets it write a little longer, stops it: the rows it committed.
    fn stop(self) -> Vec<i64> {
        std::thread::sleep(std::time::Duration::from_millis(100));
        self.stop.store(true, std::sync::atomic::Ordering::SeqCst);
        self.thread.join().unwrap()
    }
}

/// An app that opens the database, inserts a row and closes, every 10 ms,
/// passes every check a restore makes of who is using the file. Rows it
/// commits while the restore runs must still be somewhere: each is in the
/// restored database (written after the swap) or in the pre-restore backup
/// (written before it). A write caught in between must fail, not vanish.
#[test]
fn a_writer_that_reconnects_during_a_restore_loses_no_committed_row() {
    let t = Test::new();
    let app = Install::new(&t.path().join("app"), 3000, 2000);
    app.conn()
        .execute_batch("CREATE TABLE ticks (n INTEGER PRIMARY KEY)")
        .unwrap();
    let backup = app.legacy_backup("20240101-000000");
    for trial in 0..6i64 {
        let writer = Writer::start(app.db(), trial * 1_000_000);
        std::thread::sleep(std::time::Duration::from_millis(100));
        let out = t.run(&[
            "backup",
            "restore",
            "--db",
            crate::support::APP_DB,
            "--backup",
            backup.to_str().unwrap(),
            "--force",
            "--json",
        ]);
        let committed = writer.stop();
        out.code(0);
        let v: serde_json::Value = serde_json::from_str(out.stdout.trim()).unwrap();
        let kept = std::path::PathBuf::from(v["pre_restore_backup"].as_str().unwrap());
        let kept = if kept.is_absolute() {
            kept
        } else {
            t.path().join(kept)
        };
        let before = kept_ticks(&kept);
        assert_none_lost(&committed, &ticks(&app.db()), &before, trial);
    }
}

/// The numbers in a backup's `ticks`, once its checksum is checked against
/// its manifest: a row is kept only in a backup that is what it says.
fn kept_ticks(backup: &std::path::Path) -> std::collections::BTreeSet<i64> {
    let manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(format!("{}.json", backup.display())).unwrap())
            .unwrap();
    assert_eq!(
        manifest["blake3"],
        blake3_of(backup),
        "{} does not match its manifest",
        backup.display()
    );
    ticks(backup)
}

/// Every committed row is in the live database or in a kept backup.
#[track_caller]
fn assert_none_lost(
    committed: &[i64],
    live: &std::collections::BTreeSet<i64>,
    kept: &std::collections::BTreeSet<i64>,
    trial: i64,
) {
    let lost: Vec<i64> = committed
        .iter()
        .filter(|n| !live.contains(n) && !kept.contains(n))
        .copied()
        .collect();
    assert!(
        lost.is_empty(),
        "trial {trial}: {} of {} committed rows are in neither the live database nor a kept backup: {lost:?}",
        lost.len(),
        committed.len()
    );
    assert!(
        committed.len() > 10,
        "trial {trial}: the writer committed only {} rows",
        committed.len()
    );
}

/// The same writer through option 2, which restores the pre-migration
/// backup and carries the uploads back: every row it committed is in the
/// live database or in a backup the run kept, whose manifest matches it.
#[test]
fn a_writer_that_reconnects_during_option_2_loses_no_committed_row() {
    let pb = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/playbooks/rollback-option-2.yaml"
    );
    for trial in 0..3i64 {
        let t = Test::new();
        let app = Install::new(&t.path().join("app"), 3000, 2000);
        app.conn()
            .execute_batch("CREATE TABLE ticks (n INTEGER PRIMARY KEY)")
            .unwrap();
        app.legacy_backup("20240101-000000");
        app.migrate().unwrap();
        app.upload("after.png", "image");
        let writer = Writer::start(app.db(), trial * 1_000_000);
        let out = t.run(&["run", pb, "--var", "root=app"]);
        let committed = writer.stop();
        out.code(0);
        let mut kept = std::collections::BTreeSet::new();
        for entry in std::fs::read_dir(t.path().join("app/backups")).unwrap() {
            let path = entry.unwrap().path();
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            if name.starts_with("runbook-") && name.ends_with(".db") {
                kept.extend(kept_ticks(&path));
            }
        }
        assert_none_lost(&committed, &ticks(&app.db()), &kept, trial);
        assert!(!app.has_table("media"));
        assert_eq!(
            app.count("images"),
            3001,
            "trial {trial}: the backup's images and the upload"
        );
    }
}

/// Every file name in a directory of the test, sorted.
fn names(t: &Test, dir: &str) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(t.path().join(dir))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

#[track_caller]
fn assert_integrity(db: &std::path::Path) {
    let conn = rusqlite::Connection::open(db).unwrap();
    let check: String = conn
        .query_row("PRAGMA integrity_check", [], |r| r.get(0))
        .unwrap();
    assert_eq!(check, "ok", "{}", db.display());
}

/// A symlink is how a database is often moved to another disk. Renaming
/// over it replaced the link with a regular file and left the file it
/// named, the one the app opens, with the old data.
#[test]
fn a_symlinked_database_stays_a_symlink_and_the_file_it_names_is_restored() {
    let t = Test::new();
    let app = Install::new(&t.path().join("app"), 6, 4);
    let backup = app.legacy_backup("20240101-000000");
    app.conn().execute("DELETE FROM images", []).unwrap();
    let real = t.path().join("volume/main.db");
    std::fs::create_dir_all(real.parent().unwrap()).unwrap();
    std::fs::rename(app.db(), &real).unwrap();
    std::os::unix::fs::symlink(&real, app.db()).unwrap();

    t.backup_restore(backup.to_str().unwrap()).code(0);
    let link = std::fs::symlink_metadata(app.db()).unwrap();
    assert!(link.file_type().is_symlink(), "the symlink was replaced");
    assert_eq!(std::fs::read_link(app.db()).unwrap(), real);
    let conn = rusqlite::Connection::open(&real).unwrap();
    let images: i64 = conn
        .query_row("SELECT count(*) FROM images", [], |r| r.get(0))
        .unwrap();
    assert_eq!(images, 6, "the file the symlink names was not restored");
    assert_integrity(&real);
    assert_eq!(
        names(&t, "volume"),
        ["main.db"],
        "a file was left beside the real database"
    );
}

/// A process that has the database open under another name (a hard link,
/// or a name removed since) would go on writing to the old file after a
/// rename. The restore refuses, names it, and changes nothing.
#[test]
fn a_database_held_through_another_name_is_not_restored_over() {
    use std::os::unix::fs::MetadataExt;
    let t = Test::new();
    let app = Install::new(&t.path().join("app"), 5, 5);
    let backup = app.legacy_backup("20240101-000000");
    app.conn().execute("DELETE FROM docs", []).unwrap();
    let other = t.path().join("app/other-name.db");
    std::fs::hard_link(app.db(), &other).unwrap();
    let mut holder = std::process::Command::new("sh")
        .arg("-c")
        .arg("exec sleep 60 < \"$0\"")
        .arg(&other)
        .spawn()
        .unwrap();
    let inode = std::fs::metadata(app.db()).unwrap().ino();
    let stdin = format!("/proc/{}/fd/0", holder.id());
    let started = std::time::Instant::now();
    while std::fs::metadata(&stdin).map(|m| m.ino()).ok() != Some(inode) {
        assert!(started.elapsed().as_secs() < 10, "the holder did not start");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let before = app.bytes();
    let backups = names(&t, "app/backups");

    t.backup_restore(backup.to_str().unwrap())
        .code(1)
        .stderr_has("app/db_data/main.db has 2 hard links");
    // The other name gone, the process still has the file open.
    std::fs::remove_file(&other).unwrap();
    t.backup_restore(backup.to_str().unwrap())
        .code(1)
        .stderr_has(&format!(
            "is in use: open by process {} (sleep)",
            holder.id()
        ));
    let _ = holder.kill();
    let _ = holder.wait();
    assert_eq!(app.bytes(), before);
    assert_eq!(names(&t, "app/backups"), backups, "a backup was left");
    assert_eq!(names(&t, "app/db_data"), ["main.db"]);
}

/// A `-journal` SQLite does not consider hot (empty, or its header zeroed,
/// as a kill can leave it) is harmless; it stopped every restore.
#[test]
fn a_journal_sqlite_ignores_does_not_stop_a_restore() {
    for journal in [vec![0u8; 512], Vec::new()] {
        let t = Test::new();
        let app = Install::new(&t.path().join("app"), 6, 4);
        let backup = app.legacy_backup("20240101-000000");
        app.conn().execute("DELETE FROM images", []).unwrap();
        let path = t.path().join("app/db_data/main.db-journal");
        std::fs::write(&path, &journal).unwrap();

        t.backup_restore(backup.to_str().unwrap()).code(0);
        assert_eq!(app.count("images"), 6, "{} bytes", journal.len());
        assert_integrity(&app.db());
        assert!(!path.exists(), "the journal was left");
    }
}

/// A writer killed in the middle of a transaction leaves a hot journal and
/// a database file with its half-written pages. The journal is rolled back
/// before the pre-restore backup is made, so that backup holds the last
/// committed state, and it is never replayed onto the restored file.
#[test]
fn a_hot_journal_is_rolled_back_into_the_pre_restore_backup_never_onto_the_restored_file() {
    let t = Test::new();
    let app = Install::new(&t.path().join("app"), 600, 400);
    let backup = app.legacy_backup("20240101-000000");
    app.conn()
        .execute("DELETE FROM images WHERE id > 100", [])
        .unwrap();
    let committed = app.dump("docs");
    // A cache of a few pages makes SQLite write changed pages into the
    // database file before the commit, as a large transaction does.
    let script = "import sqlite3, sys, time\n\
        c = sqlite3.connect(sys.argv[1], isolation_level=None)\n\
        c.execute('PRAGMA cache_size = 2')\n\
        c.execute('BEGIN')\n\
        c.execute(\"UPDATE docs SET file_name = 'half-written'\")\n\
        c.execute('DELETE FROM images')\n\
        print('ready', flush=True)\n\
        time.sleep(60)\n";
    let mut writer = std::process::Command::new("python3")
        .args(["-c", script])
        .arg(app.db())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(writer.stdout.take().unwrap()),
        &mut line,
    )
    .unwrap();
    assert_eq!(line.trim(), "ready");
    writer.kill().unwrap();
    writer.wait().unwrap();
    let journal = t.path().join("app/db_data/main.db-journal");
    let head = std::fs::read(&journal).unwrap();
    assert_eq!(
        head[..8],
        [0xd9, 0xd5, 0x05, 0xf9, 0x20, 0xa1, 0x63, 0xd7],
        "no hot journal"
    );

    let out = t.run(&[
        "backup",
        "restore",
        "--db",
        crate::support::APP_DB,
        "--backup",
        backup.to_str().unwrap(),
        "--force",
        "--json",
    ]);
    out.code(0);
    assert!(!journal.exists());
    assert_eq!(app.count("images"), 600);
    assert_integrity(&app.db());
    let v: serde_json::Value = serde_json::from_str(out.stdout.trim()).unwrap();
    let kept = t.path().join(v["pre_restore_backup"].as_str().unwrap());
    assert_integrity(&kept);
    let conn = rusqlite::Connection::open(&kept).unwrap();
    let images: i64 = conn
        .query_row("SELECT count(*) FROM images", [], |r| r.get(0))
        .unwrap();
    assert_eq!(
        images, 100,
        "the pre-restore backup is not the committed state"
    );
    drop(conn);
    let kept_app = Install {
        root: t.path().join("kept"),
    };
    std::fs::create_dir_all(kept_app.root.join("db_data")).unwrap();
    std::fs::copy(&kept, kept_app.db()).unwrap();
    assert_eq!(kept_app.dump("docs"), committed);
}

/// A markers query is read on the live database's own connection: one that
/// would write is refused before it runs, and nothing is changed or made.
#[test]
fn a_markers_query_that_writes_is_refused_and_changes_nothing() {
    let t = Test::new().db(
        "app.db",
        "CREATE TABLE m(name TEXT); INSERT INTO m VALUES ('0001_init');",
    );
    let out = t.run(&[
        "backup",
        "create",
        "--db",
        "app.db",
        "--dir",
        "b",
        "--markers",
        "UPDATE m SET name = 'gone' RETURNING name",
    ]);
    out.code(1).stderr_has("not read-only");
    assert_eq!(
        t.query("app.db", "SELECT name FROM m"),
        vec![vec!["0001_init".to_owned()]]
    );
    assert!(
        !t.path().join("b").exists() || std::fs::read_dir(t.path().join("b")).unwrap().count() == 0
    );
}
