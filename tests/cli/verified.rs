//! A backup checked once and then trusted by its checksum, and a restore
//! that keeps the state before by exchanging files rather than copying.

use std::os::unix::fs::MetadataExt;
use std::path::Path;

use crate::gofastcdn::Install;
use crate::support::{Output, Test};

fn manifest(backup: &Path) -> serde_json::Value {
    let mut p = backup.as_os_str().to_owned();
    p.push(".json");
    serde_json::from_slice(&std::fs::read(p).unwrap()).unwrap()
}

fn blake3_of(path: &Path) -> String {
    blake3::hash(&std::fs::read(path).unwrap())
        .to_hex()
        .to_string()
}

/// `runbook backup restore --force` of `backup` over the live database.
fn restore(t: &Test, backup: &Path, extra: &[&str]) -> Output {
    let mut args = vec![
        "backup",
        "restore",
        "--db",
        "app/db_data/main.db",
        "--backup",
        backup.to_str().unwrap(),
        "--force",
    ];
    args.extend_from_slice(extra);
    t.run(&args)
}

fn restore_json(t: &Test, backup: &Path) -> serde_json::Value {
    let out = restore(t, backup, &["--json"]);
    out.code(0);
    serde_json::from_str(&out.stdout).unwrap()
}

/// Each row a query gives, as text.
fn rows(db: &Path, sql: &str) -> Vec<String> {
    let conn = rusqlite::Connection::open(db).unwrap();
    let mut stmt = conn.prepare(sql).unwrap();
    stmt.query_map([], |r| r.get(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap()
}

fn has_media(db: &Path) -> bool {
    !rows(db, "SELECT name FROM sqlite_master WHERE name = 'media'").is_empty()
}

/// `backup verify` writes the app's backup a manifest recording the check;
/// a restore of it then compares the checksum in its copy pass instead of
/// checking the content again, and says which it did.
#[test]
fn a_verified_backup_is_restored_on_its_checksum_and_an_unverified_one_is_checked() {
    let t = Test::new();
    let app = Install::new(&t.path().join("app"), 8, 4);
    let backup = app.legacy_backup("20240101-000000");
    app.migrate().unwrap();

    // Never verified: checked now, and the check recorded for next time.
    let r = restore_json(&t, &backup);
    assert_eq!(r["checked"], "integrity_check ok", "{r}");
    let m = manifest(&backup);
    assert_eq!(m["verified"]["integrity_check"], "ok", "{m}");
    assert_eq!(m["blake3"], blake3_of(&backup));
    assert_eq!(
        m["verified"]["checksum"],
        format!("blake3:{}", blake3_of(&backup))
    );

    app.migrate().unwrap();
    let r = restore_json(&t, &backup);
    let checked = r["checked"].as_str().unwrap();
    assert!(
        checked.starts_with(&format!(
            "blake3:{} matches its manifest",
            blake3_of(&backup)
        )),
        "{checked}"
    );
    assert!(!app.has_table("media"));
    assert_eq!(app.count("images"), 8);

    // `backup list` shows when it was checked.
    let list: serde_json::Value = serde_json::from_str(
        &t.run(&[
            "backup",
            "list",
            "--dir",
            "app/backups",
            "--app-backups",
            "db_backup_",
            "--json",
        ])
        .code(0)
        .stdout
        .clone(),
    )
    .unwrap();
    let legacy = list["backups"]
        .as_array()
        .unwrap()
        .iter()
        .find(|b| b["kind"] == "legacy")
        .unwrap();
    assert_eq!(legacy["verified_at"], m["verified"]["at"], "{list}");
}

/// The fast path trusts the recorded check only for the bytes it was made
/// on: a backup changed after `backup verify` — same size, still a sound
/// database, so only the checksum can tell — is refused, and nothing changes.
#[test]
fn a_backup_changed_after_it_was_verified_is_refused_by_the_fast_path() {
    let t = Test::new();
    let app = Install::new(&t.path().join("app"), 8, 4);
    let backup = app.legacy_backup("20240101-000000");
    app.migrate().unwrap();
    t.run(&["backup", "verify", "--backup", backup.to_str().unwrap()])
        .code(0)
        .stdout_has("recorded in a new manifest");
    let size = std::fs::metadata(&backup).unwrap().len();
    {
        let conn = rusqlite::Connection::open(&backup).unwrap();
        conn.execute(
            "UPDATE images SET file_name = 'image-X.png' WHERE id = 1",
            [],
        )
        .unwrap();
    }
    assert_eq!(std::fs::metadata(&backup).unwrap().len(), size);
    let live = app.bytes();
    let backups: Vec<_> = std::fs::read_dir(t.path().join("app/backups"))
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    restore(&t, &backup, &[])
        .code(1)
        .stderr_has("does not match its manifest: blake3:");
    assert_eq!(app.bytes(), live, "the live database changed");
    assert!(app.has_table("media"));
    let after: Vec<_> = std::fs::read_dir(t.path().join("app/backups"))
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(after.len(), backups.len(), "a file was left: {after:?}");
    // A full check, asked for, finds the change too.
    t.run(&["backup", "verify", "--backup", backup.to_str().unwrap()])
        .code(1)
        .stderr_has("does not match its manifest");
}

/// On one filesystem the state before is the old file itself: the
/// pre-restore backup has the live file's inode, its manifest matches it,
/// and it holds the rows the database held.
#[test]
fn the_state_before_is_kept_by_exchanging_the_old_file_not_by_copying_it() {
    let t = Test::new();
    let app = Install::new(&t.path().join("app"), 8, 4);
    let backup = app.legacy_backup("20240101-000000");
    app.migrate().unwrap();
    app.upload("after.png", "image");
    let old_inode = std::fs::metadata(app.db()).unwrap().ino();
    const MEDIA: &str = "SELECT quote(file_name) || quote(checksum) FROM media ORDER BY id";
    let media = rows(&app.db(), MEDIA);

    let r = restore_json(&t, &backup);
    assert_eq!(r["kept_by"], "exchange", "{r}");
    let kept = Path::new(r["pre_restore_backup"].as_str().unwrap()).to_path_buf();
    let kept = if kept.is_absolute() {
        kept
    } else {
        t.path().join(kept)
    };
    assert_eq!(std::fs::metadata(&kept).unwrap().ino(), old_inode);
    assert_ne!(std::fs::metadata(app.db()).unwrap().ino(), old_inode);
    let m = manifest(&kept);
    assert_eq!(m["blake3"], blake3_of(&kept));
    assert_eq!(m["label"], "pre-restore");
    assert!(m.get("pending_swap").is_none(), "{m}");
    assert_eq!(rows(&kept, MEDIA), media);
    // The restored database is the backup's, and SQLite opens it whole.
    assert!(!app.has_table("media"));
    assert_eq!(blake3_of(&app.db()), blake3_of(&backup));
    // The live file keeps its mode.
    assert_eq!(
        std::fs::metadata(app.db()).unwrap().mode() & 0o777,
        std::fs::metadata(&kept).unwrap().mode() & 0o777
    );
}

/// Across filesystems nothing can be exchanged: the state before is copied,
/// and says so.
#[test]
fn across_filesystems_the_state_before_is_copied() {
    let shm = Path::new("/dev/shm");
    let t = Test::new();
    let app = Install::new(&t.path().join("app"), 8, 4);
    let other_fs = shm.is_dir()
        && std::fs::metadata(shm).unwrap().dev() != std::fs::metadata(t.path()).unwrap().dev();
    if !other_fs {
        crate::support::skipped("no second filesystem at /dev/shm");
        return;
    }
    let dir = tempfile::tempdir_in(shm).unwrap();
    let backup = app.legacy_backup("20240101-000000");
    app.migrate().unwrap();
    let out = restore(
        &t,
        &backup,
        &["--dir", dir.path().to_str().unwrap(), "--json"],
    );
    out.code(0);
    let r: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!(r["kept_by"], "copy", "{r}");
    let kept = Path::new(r["pre_restore_backup"].as_str().unwrap());
    assert!(kept.starts_with(dir.path()));
    assert_eq!(manifest(kept)["blake3"], blake3_of(kept));
    assert!(has_media(kept));
    assert!(!app.has_table("media"));
}

/// A kill after the pre-restore backup is named and before the exchange
/// leaves a file under its name that holds the backup being restored: it
/// does not match its manifest, and verify says why and what to do.
#[test]
fn a_pre_restore_backup_named_before_an_exchange_that_never_happened_says_so() {
    let t = Test::new();
    let app = Install::new(&t.path().join("app"), 8, 4);
    let backup = app.legacy_backup("20240101-000000");
    app.migrate().unwrap();
    let live = app.bytes();
    // The state a kill there leaves: the copy of the backup under the
    // pre-restore name, its manifest describing the live file, marked.
    let named = t
        .path()
        .join("app/backups/runbook-20260101T000000Z-pre-restore.db");
    std::fs::copy(&backup, &named).unwrap();
    let json = serde_json::json!({
        "format": 2,
        "file": "runbook-20260101T000000Z-pre-restore.db",
        "blake3": blake3_of(&app.db()),
        "size": std::fs::metadata(app.db()).unwrap().len(),
        "created_at": "2026-01-01T00:00:00Z",
        "source": app.db(),
        "sqlite_version": "3",
        "label": "pre-restore",
        "fingerprint": {"tables": [], "counts": {}, "schema": ""},
        "pending_swap": true,
    });
    std::fs::write(
        t.path()
            .join("app/backups/runbook-20260101T000000Z-pre-restore.db.json"),
        json.to_string(),
    )
    .unwrap();
    t.run(&["backup", "verify", "--backup", named.to_str().unwrap()])
        .code(1)
        .stderr_has("made for a restore stopped before its swap")
        .stderr_has("the database was not replaced");
    assert_eq!(app.bytes(), live);
}

/// A manifest written before BLAKE3 names its SHA-256, and still verifies:
/// the checksum is computed in the algorithm the manifest names.
#[test]
fn a_manifest_with_a_sha256_still_verifies_and_restores() {
    use sha2::Digest;
    let t = Test::new();
    let app = Install::new(&t.path().join("app"), 8, 4);
    let made = t.backup_create();
    let path = t.path().join(made["path"].as_str().unwrap());
    let mut m = manifest(&path);
    let sha: String = sha2::Sha256::digest(std::fs::read(&path).unwrap())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let o = m.as_object_mut().unwrap();
    o.remove("blake3");
    o.insert("format".into(), 1.into());
    o.insert("sha256".into(), sha.clone().into());
    let mut at = path.as_os_str().to_owned();
    at.push(".json");
    std::fs::write(&at, m.to_string()).unwrap();

    t.run(&["backup", "verify", "--backup", path.to_str().unwrap()])
        .code(0)
        .stdout_has("sha256 matches its manifest");
    let m = manifest(&path);
    assert_eq!(m["verified"]["checksum"], format!("sha256:{sha}"), "{m}");
    app.migrate().unwrap();
    let r = restore_json(&t, &path);
    assert!(
        r["checked"]
            .as_str()
            .unwrap()
            .starts_with(&format!("sha256:{sha} matches its manifest")),
        "{r}"
    );
    assert!(!app.has_table("media"));
}

/// The manifest's checksum is the one Debian's `b3sum --check` reads: a
/// backup can be checked by hand, without runbook.
#[test]
fn b3sum_checks_a_backup_by_its_manifest() {
    if std::process::Command::new("b3sum")
        .arg("--version")
        .output()
        .is_err()
    {
        crate::support::skipped("b3sum is not installed (apt-get install b3sum)");
        return;
    }
    let t = Test::new();
    let _app = Install::new(&t.path().join("app"), 8, 4);
    let made = t.backup_create();
    let path = t.path().join(made["path"].as_str().unwrap());
    let m = manifest(&path);
    let line = format!(
        "{}  {}\n",
        m["blake3"].as_str().unwrap(),
        m["file"].as_str().unwrap()
    );
    let check = |line: &str| {
        let mut child = std::process::Command::new("b3sum")
            .arg("--check")
            .current_dir(path.parent().unwrap())
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        use std::io::Write;
        child
            .stdin
            .take()
            .unwrap()
            .write_all(line.as_bytes())
            .unwrap();
        child.wait_with_output().unwrap()
    };
    let ok = check(&line);
    assert!(
        ok.status.success(),
        "{}",
        String::from_utf8_lossy(&ok.stdout)
    );
    assert!(String::from_utf8_lossy(&ok.stdout).contains(": OK"));
    // And it is not a check that passes anything.
    let first = if line.starts_with('0') { "1" } else { "0" };
    let wrong = format!("{first}{}", &line[1..]);
    assert!(!check(&wrong).status.success());
}
