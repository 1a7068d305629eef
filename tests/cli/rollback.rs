//! The shipped rollback playbooks on go-fast-cdn installs in every state
//! that matters.

use crate::gofastcdn::{Install, MARKER};
use crate::support::Test;

const PLAYBOOKS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/playbooks");

fn playbook(name: &str) -> String {
    format!("{PLAYBOOKS}/{name}.yaml")
}

/// A migrated install: 20 images and 10 docs (every fifth soft-deleted), a
/// legacy backup from before the migration, the migration applied.
fn migrated(t: &Test) -> Install {
    let install = Install::new(&t.path().join("app"), 20, 10);
    install.legacy_backup("20240501-120000");
    install.migrate().unwrap();
    install
}

fn run(t: &Test, name: &str, extra: &[&str]) -> crate::support::Output {
    let pb = playbook(name);
    let mut args = vec!["run", pb.as_str(), "--var", "root=app"];
    args.extend_from_slice(extra);
    t.run(&args)
}

#[test]
fn option_1_on_a_migrated_install_restores_the_old_tables() {
    let t = Test::new();
    let app = migrated(&t);
    let images_before = app.dump("images");
    let out = run(&t, "rollback-option-1", &[]);
    out.code(0);
    assert!(!app.has_table("media"));
    assert_eq!(app.dump("images"), images_before, "images changed");
    let marker_rows: i64 = app
        .conn()
        .query_row(
            "SELECT count(*) FROM migration_records WHERE name = ?",
            [MARKER],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(
        marker_rows, 0,
        "the marker row must be deleted, not soft-deleted"
    );
}

#[test]
fn option_1_carries_post_migration_uploads_back_and_salvages_other_types() {
    let t = Test::new();
    let app = migrated(&t);
    app.upload("new-photo.jpg", "image");
    app.upload("new-manual.pdf", "document");
    app.upload("launch-video.mp4", "video");
    let (images, docs) = (app.count("images"), app.count("docs"));
    let out = run(&t, "rollback-option-1", &[]);
    out.code(0);
    assert_eq!(app.count("images"), images + 1);
    assert_eq!(app.count("docs"), docs + 1);
    let last_image = app.dump("images").pop().unwrap();
    assert!(last_image.starts_with("'new-photo.jpg'|X'"), "{last_image}");
    assert!(
        last_image.contains("'2024-06-01 12:00:00'"),
        "timestamps not kept: {last_image}"
    );
    let salvage = std::fs::read_to_string(out.run_dir().join("media-salvage.jsonl")).unwrap();
    let rows: Vec<serde_json::Value> = salvage
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0]["file_name"], "launch-video.mp4");
    assert_eq!(rows[0]["type"], "video");
    assert_eq!(out.finished("rollback")["outputs"]["exported"], 1);
}

#[test]
fn option_1_a_second_time_succeeds_and_changes_nothing() {
    let t = Test::new();
    let app = migrated(&t);
    run(&t, "rollback-option-1", &[]).code(0);
    let bytes = app.bytes();
    let out = run(&t, "rollback-option-1", &[]);
    out.code(0);
    assert_eq!(out.finished("rollback")["status"], "skipped");
    assert_eq!(app.bytes(), bytes, "the second run changed the database");
}

#[test]
fn the_apps_forward_migration_runs_again_after_option_1() {
    let t = Test::new();
    let app = migrated(&t);
    run(&t, "rollback-option-1", &[]).code(0);
    app.migrate().expect("re-migration after the rollback");
    assert_eq!(app.count("media"), 16 + 8);
}

#[test]
fn option_1_clears_a_marker_the_apps_own_rollback_soft_deleted() {
    let t = Test::new();
    let app = migrated(&t);
    // The app's rollback: drop media, soft-delete the marker.
    app.conn()
        .execute_batch(
            "DROP TABLE media; UPDATE migration_records SET deleted_at = datetime('now');",
        )
        .unwrap();
    assert!(
        app.migrate().is_err(),
        "the fixture should reproduce the app's defect"
    );
    run(&t, "rollback-option-1", &[]).code(0);
    app.migrate()
        .expect("re-migration after clearing the marker");
}

#[test]
fn option_1_refuses_when_images_is_lost_and_option_2_restores_the_backup() {
    let t = Test::new();
    let app = migrated(&t);
    app.upload("after.png", "image");
    app.upload("clip.mp4", "video");
    app.conn().execute_batch("DROP TABLE images").unwrap();
    let bytes = app.bytes();
    run(&t, "rollback-option-1", &[])
        .code(1)
        .stdout_has("require failed: images and docs tables present");
    assert_eq!(
        app.bytes(),
        bytes,
        "option 1 changed the database although it refused"
    );

    let out = run(&t, "rollback-option-2", &[]);
    out.code(0);
    assert!(app.has_table("images") && !app.has_table("media"));
    // 20 from the backup, plus the one uploaded after the migration.
    assert_eq!(app.count("images"), 21);
    assert_eq!(app.count("docs"), 10);
    let salvage = std::fs::read_to_string(out.run_dir().join("media-salvage.jsonl")).unwrap();
    assert!(salvage.contains("clip.mp4"));
    // The state before the restore was kept.
    let pre = out.finished("restore")["outputs"]["pre_restore_backup"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(t.path().join(&pre).exists(), "{pre}");
}

#[test]
fn option_2_with_only_corrupt_backups_refuses_and_changes_nothing() {
    let t = Test::new();
    let app = Install::new(&t.path().join("app"), 5, 5);
    let backup = app.legacy_backup("20240501-120000");
    app.migrate().unwrap();
    // Damage the backup in the middle of the file.
    let mut bytes = std::fs::read(&backup).unwrap();
    let mid = bytes.len() / 2;
    let end = (mid + 4096).min(bytes.len());
    bytes[mid..end].fill(0xA5);
    std::fs::write(&backup, &bytes).unwrap();
    std::fs::write(
        t.path().join("app/backups/db_backup_20240502-120000.db"),
        b"not a database",
    )
    .unwrap();
    let before = app.bytes();
    run(&t, "rollback-option-2", &[])
        .code(1)
        .stdout_has("no backup in app/backups qualifies");
    assert_eq!(app.bytes(), before);
}

#[test]
fn option_3_replaces_the_database_with_a_given_backup_after_an_emergency_backup() {
    let t = Test::new();
    let app = migrated(&t);
    let out = run(
        &t,
        "rollback-option-3",
        &["--var", "backup=app/backups/db_backup_20240501-120000.db"],
    );
    out.code(0);
    assert!(!app.has_table("media"));
    assert_eq!(app.count("images"), 20);
    let emergency = out.finished("emergency-backup")["outputs"]["path"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(emergency.contains("emergency"), "{emergency}");
    let conn = rusqlite::Connection::open(t.path().join(&emergency)).unwrap();
    let media: i64 = conn
        .query_row("SELECT count(*) FROM media", [], |r| r.get(0))
        .unwrap();
    assert_eq!(media, 24, "the emergency backup must hold the state before");
}

#[test]
fn verify_passes_after_a_rollback_and_fails_before() {
    let t = Test::new();
    let app = migrated(&t);
    app.upload("after.png", "image");
    run(&t, "verify", &[])
        .code(1)
        .stdout_has("the media table still exists");
    run(&t, "rollback-option-1", &[]).code(0);
    run(&t, "verify", &[]).code(0);
    // A row of the backup that went missing is caught, even if counts could hide it.
    app.conn()
        .execute("DELETE FROM images WHERE file_name = 'images-0.png'", [])
        .unwrap();
    let out = run(&t, "verify", &[]);
    out.code(1)
        .stdout_has("✗ images-kept Every image of the backup is still there")
        .stdout_has("images of the backup gone or changed: 1 (images-0.png)");
    let compared = &out.finished("compare-images")["outputs"];
    assert_eq!(compared["only_left"], 1, "{compared}");
    assert_eq!(compared["only_left_sample"][0]["file_name"], "images-0.png");
    // A row whose checksum changed is a lost row too, though the count holds.
    run(&t, "rollback-option-1", &[]).code(0);
    app.conn()
        .execute(
            "INSERT INTO images (file_name, checksum) VALUES ('images-0.png', X'00')",
            [],
        )
        .unwrap();
    let out = run(&t, "verify", &[]);
    out.code(1)
        .stdout_has("images of the backup gone or changed: 1 (images-0.png)");
    let compared = &out.finished("compare-images")["outputs"];
    // Only on the right: after.png, carried back, and the changed row.
    assert_eq!(
        (&compared["only_left"], &compared["only_right"]),
        (&1.into(), &2.into())
    );
}

#[test]
fn a_database_locked_by_another_process_is_refused_and_left_alone() {
    let t = Test::new();
    let app = migrated(&t);
    let before = app.bytes();
    // This test process is the other process: it holds a write transaction.
    let holder = app.conn();
    holder
        .execute_batch("BEGIN IMMEDIATE; UPDATE configs SET value = 'x';")
        .unwrap();
    let out = run(&t, "rollback-option-1", &[]);
    out.code(1).stdout_has("is in use: open by process");
    holder.execute_batch("ROLLBACK").unwrap();
    drop(holder);
    assert_eq!(app.bytes(), before);
}

#[test]
fn wal_mode_rows_only_in_the_wal_file_are_carried_back_by_option_1() {
    let t = Test::new();
    let app = migrated(&t);
    let db = app.db();
    let wal = db.with_extension("db-wal");
    {
        let conn = app.conn();
        conn.query_row("PRAGMA journal_mode = WAL", [], |r| r.get::<_, String>(0))
            .unwrap();
        conn.execute_batch("PRAGMA wal_autocheckpoint = 0;")
            .unwrap();
        conn.execute(
            "INSERT INTO media (created_at, file_name, checksum, type) VALUES ('2024-07-01', 'wal-only.png', X'01', 'image')",
            [],
        )
        .unwrap();
        // The app dies here: the row is only in the -wal file.
        std::fs::copy(&db, t.path().join("crash.db")).unwrap();
        std::fs::copy(&wal, t.path().join("crash.db-wal")).unwrap();
    }
    std::fs::copy(t.path().join("crash.db"), &db).unwrap();
    std::fs::copy(t.path().join("crash.db-wal"), &wal).unwrap();
    let _ = std::fs::remove_file(db.with_extension("db-shm"));
    assert!(std::fs::metadata(&wal).unwrap().len() > 0);
    let images = app.count("images");
    run(&t, "rollback-option-1", &[]).code(0);
    assert_eq!(app.count("images"), images + 1);
    assert!(app
        .dump("images")
        .last()
        .unwrap()
        .starts_with("'wal-only.png'"));
}

/// A run interrupted after the restore's rename, before its end was written
/// down, leaves the database restored: option 2 run again must not take a
/// second pre-restore backup of the restored state and carry back from it
/// (the uploads are not there), but carry back from the first one.
#[test]
fn option_2_after_a_restore_already_done_carries_back_from_the_first_pre_restore_backup() {
    let t = Test::new();
    let app = migrated(&t);
    app.upload("after.png", "image");
    app.upload("clip.mp4", "video");
    t.backup_restore("app/backups/db_backup_20240501-120000.db")
        .code(0);
    assert_eq!(
        app.count("images"),
        20,
        "the restore alone does not carry anything back"
    );
    let out = run(&t, "rollback-option-2", &[]);
    out.code(0);
    assert_eq!(out.finished("restore")["status"], "skipped");
    assert_eq!(
        app.count("images"),
        21,
        "the upload made since the migration was not carried back"
    );
    let salvage = std::fs::read_to_string(out.run_dir().join("media-salvage.jsonl")).unwrap();
    assert!(salvage.contains("clip.mp4"));
}

/// With no pre-migration backup at all, a good option-1 rollback is not a
/// failed run: verify checks what it can and says, with ⚠, what it could
/// not. The same with only a corrupt backup.
#[test]
fn a_good_rollback_with_no_backup_to_compare_with_is_verified_with_a_warning() {
    for corrupt in [false, true] {
        let t = Test::new();
        let app = Install::new(&t.path().join("app"), 20, 10);
        if corrupt {
            let backup = app.legacy_backup("20240501-120000");
            let mut bytes = std::fs::read(&backup).unwrap();
            bytes[4096..8192].fill(0xff);
            std::fs::write(&backup, bytes).unwrap();
        }
        app.migrate().unwrap();
        app.upload("after.png", "image");
        let rolled = run(&t, "rollback-option-1", &[]);
        rolled.code(0);
        let out = run(&t, "verify", &["-v"]);
        out.code(0)
            .stdout_has("⚠ no-baseline Verify without a pre-migration backup: no verified pre-migration backup in app/backups to compare with")
            .stdout_has("run succeeded with 1 warning");
        assert_eq!(out.finished("compare-images")["status"], "skipped");
        assert_eq!(out.finished("compare-docs")["status"], "skipped");
        assert_eq!(out.finished("media-absent")["status"], "ok");
        assert_eq!(app.count("images"), 21);
    }
}
