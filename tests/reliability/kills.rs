//! kill -9 at random moments of backup create, backup restore and each
//! rollback option: the database always passes integrity_check and holds,
//! row for row, one of the states the operation is allowed to leave.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Instant;

use crate::gofastcdn::Install;
use crate::{assert_integrity, copy_tree, dump, runbook, scale, Rng, PLAYBOOKS};

type Dump = BTreeMap<String, Vec<String>>;

/// A migrated install with uploads made since the migration, built once.
fn pristine(dir: &Path) -> Install {
    let app = Install::new(&dir.join("app"), 600, 300);
    app.legacy_backup("20240501-120000");
    app.migrate().unwrap();
    app.upload("after.png", "image");
    app.upload("after.pdf", "document");
    app.upload("clip.mp4", "video");
    app
}

/// Runs `args` on fresh copies of `template`, killing it at random moments
/// spread over its whole length. Every database left must pass
/// integrity_check; returns those that are neither the state before nor the
/// state after.
fn trials(
    name: &str,
    template: &Path,
    args: &[&str],
    trials: u32,
    extra_check: impl Fn(&Path, &Dump, &Dump),
) -> Vec<Dump> {
    let work = tempfile::tempdir().unwrap();
    // How long the whole operation takes here, and what it leaves.
    let whole = work.path().join("whole");
    copy_tree(template, &whole);
    let before = dump(&whole.join("app/db_data/main.db"));
    let started = Instant::now();
    assert!(
        runbook(&whole, args).status().unwrap().success(),
        "{name}: the operation fails even unkilled"
    );
    let length = started.elapsed();
    let after = dump(&whole.join("app/db_data/main.db"));
    let mut others = Vec::new();
    let seed = 0x5eed_u64 ^ name.len() as u64;
    let mut rng = Rng::new(seed);
    for trial in 0..trials {
        let dir = work.path().join(format!("t{trial}"));
        copy_tree(template, &dir);
        let mut child = runbook(&dir, args).spawn().unwrap();
        std::thread::sleep(length.mul_f64(rng.fraction() * 1.2));
        let _ = child.kill();
        let _ = child.wait();
        let db = dir.join("app/db_data/main.db");
        assert_integrity(&db);
        let now = dump(&db);
        extra_check(&dir, &before, &now);
        if now != before && now != after {
            // For the caller to judge (e.g. option 2's restored-but-not-yet-carried state).
            others.push(now);
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }
    eprintln!("{name}: {trials} kills over {length:?} (seed {seed:#x})");
    others
}

/// Every backup file left passes integrity_check and is what its manifest
/// says, checksum included — but for a pre-restore backup named before an
/// exchange the kill came before, which its manifest marks: that one holds
/// the restored copy, and the live database must be the state before.
fn backups_are_whole(dir: &Path, before: &Dump, now: &Dump) {
    for entry in std::fs::read_dir(dir.join("app/backups")).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        if name.ends_with(".db") {
            assert_integrity(&path);
            let manifest = path.with_extension("db.json");
            if manifest.exists() {
                let m: serde_json::Value =
                    serde_json::from_slice(&std::fs::read(&manifest).unwrap()).unwrap();
                let size = std::fs::metadata(&path).unwrap().len();
                let sum = blake3::hash(&std::fs::read(&path).unwrap()).to_hex();
                let matches = m["size"] == size && m["blake3"].as_str() == Some(sum.as_str());
                if m["pending_swap"] == true && !matches {
                    assert_eq!(now, before, "{name}: unswapped, yet the database changed");
                } else {
                    assert_eq!(m["size"], size, "{name}: manifest and file differ");
                    if m["sha256"].is_null() {
                        assert_eq!(
                            m["blake3"].as_str(),
                            Some(sum.as_str()),
                            "{name}: checksum and manifest differ"
                        );
                    }
                }
            }
        }
    }
}

/// A restore that happened kept the state before: some pre-restore backup,
/// matching its manifest, holds exactly the rows the database held.
fn restore_kept_the_state_before(dir: &Path, before: &Dump, now: &Dump) {
    backups_are_whole(dir, before, now);
    if now == before {
        return;
    }
    let kept = std::fs::read_dir(dir.join("app/backups"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.to_string_lossy().ends_with("-pre-restore.db"))
        .any(|p| dump(&p) == *before);
    assert!(
        kept,
        "the database was restored, but no pre-restore backup holds its state before"
    );
}

#[test]
fn backup_create_killed_at_random_moments() {
    let t = tempfile::tempdir().unwrap();
    pristine(t.path());
    let others = trials(
        "backup create",
        t.path(),
        &["backup", "create", "--db", "app/db_data/main.db"],
        20 * scale(),
        backups_are_whole,
    );
    assert!(others.is_empty(), "backup create changed the live database");
}

#[test]
fn backup_restore_killed_at_random_moments() {
    let t = tempfile::tempdir().unwrap();
    pristine(t.path());
    let others = trials(
        "backup restore",
        t.path(),
        &crate::RESTORE_LEGACY,
        40 * scale(),
        restore_kept_the_state_before,
    );
    assert!(
        others.is_empty(),
        "a killed restore left a database that is neither the old nor the new one"
    );
}

/// The same, for a backup whose check `backup verify` recorded: the restore
/// compares its checksum as it copies instead of checking it again.
#[test]
fn restore_of_a_verified_backup_killed_at_random_moments() {
    let t = tempfile::tempdir().unwrap();
    pristine(t.path());
    let backup = "app/backups/db_backup_20240501-120000.db";
    assert!(runbook(t.path(), &["backup", "verify", "--backup", backup])
        .status()
        .unwrap()
        .success());
    let others = trials(
        "backup restore (verified)",
        t.path(),
        &[
            "backup",
            "restore",
            "--db",
            "app/db_data/main.db",
            "--backup",
            backup,
            "--force",
        ],
        40 * scale(),
        restore_kept_the_state_before,
    );
    assert!(
        others.is_empty(),
        "a killed restore left a database that is neither the old nor the new one"
    );
}

fn option(n: u32) -> String {
    format!("{PLAYBOOKS}/rollback-option-{n}.yaml")
}

#[test]
fn option_1_killed_at_random_moments() {
    let t = tempfile::tempdir().unwrap();
    pristine(t.path());
    let pb = option(1);
    let others = trials(
        "option 1",
        t.path(),
        &["run", &pb, "--var", "root=app"],
        40 * scale(),
        |_, _, _| {},
    );
    assert!(
        others.is_empty(),
        "option 1 killed midway left a half-rolled-back database"
    );
}

#[test]
fn option_2_killed_at_random_moments() {
    let t = tempfile::tempdir().unwrap();
    let app = pristine(t.path());
    // Option 2 is two changes: the restore, then the carry-back. Between
    // them the database is the backup, whole; resume finishes the job.
    let restored = dump(&app.root.join("backups/db_backup_20240501-120000.db"));
    let pb = option(2);
    let others = trials(
        "option 2",
        t.path(),
        &["run", &pb, "--var", "root=app"],
        30 * scale(),
        restore_kept_the_state_before,
    );
    for other in others {
        assert!(
            other == restored,
            "option 2 killed midway left a database that is neither before, restored, nor after"
        );
    }
}

#[test]
fn option_3_killed_at_random_moments() {
    let t = tempfile::tempdir().unwrap();
    pristine(t.path());
    let pb = option(3);
    let others = trials(
        "option 3",
        t.path(),
        &["run", &pb, "--var", "root=app"],
        20 * scale(),
        backups_are_whole,
    );
    assert!(
        others.is_empty(),
        "option 3 killed midway left a database that is neither the old nor the new one"
    );
}
