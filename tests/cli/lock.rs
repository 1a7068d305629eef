//! The install lock as an operator meets it: a second command that would
//! change the database is refused at once with exit 4 and told who holds it;
//! `--wait` waits; a dry run says a run holds it; a symlink to the database
//! is the same install.

use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use crate::gofastcdn::Install;
use crate::support::{Test, APP_DB};

/// A playbook that holds the install's lock while its `hold` step waits for
/// the file `go` to appear.
const HOLDER: &str = "name: holder
vars:
  db: app/db_data/main.db
steps:
  - id: hold
    action: shell
    with: {command: [sh, -c, 'while [ ! -e go ]; do sleep 0.05; done']}
  - id: touch-db
    action: sqlite.exec
    with: {db: '{{ db }}', sql: \"UPDATE configs SET value = 'held' WHERE key = 'site_name'\"}
";

fn install(t: &Test) -> Install {
    let app = Install::new(&t.path().join("app"), 10, 10);
    app.legacy_backup("20240501-120000");
    app
}

/// Starts the holder and waits until it is in its `hold` step.
fn hold(t: &Test) -> Child {
    let child = t
        .command(&["run", "holder.yaml"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let started = Instant::now();
    let lock = t.path().join("app/db_data/main.db.runbook-lock");
    while !std::fs::read_to_string(&lock).is_ok_and(|s| s.contains("\"step\":\"hold\"")) {
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "the holder never started"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    child
}

fn release(t: &Test, mut child: Child) {
    std::fs::write(t.path().join("go"), "").unwrap();
    assert!(child.wait().unwrap().success(), "the holder failed");
}

#[test]
fn a_second_operator_is_refused_with_exit_4_and_told_who_holds_the_install() {
    let t = Test::new().file("holder.yaml", HOLDER);
    let app = install(&t);
    let holder = hold(&t);
    let pid = holder.id();
    let before = app.bytes();

    let out = t.backup_restore("app/backups/db_backup_20240501-120000.db");
    out.code(4)
        .stderr_has("error: another operator holds app/db_data/main.db\n")
        .stderr_has(&format!(", pid {pid}, since 20"))
        .stderr_has("  command: ")
        .stderr_has(" run holder.yaml\n")
        .stderr_has("  run directory: .runbook/runs/")
        .stderr_has("  current step: hold\n")
        .stderr_has(
            "  help: nothing was done; let that run finish (or stop it), or pass --wait DURATION",
        );
    assert_eq!(
        app.bytes(),
        before,
        "the refused restore changed the database"
    );
    let backups: Vec<_> = std::fs::read_dir(t.path().join("app/backups"))
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(
        backups.len(),
        1,
        "a refused restore made a backup: {backups:?}"
    );

    // A second run of the same playbook: refused before it makes a run directory.
    let runs_before = std::fs::read_dir(t.path().join(".runbook/runs"))
        .unwrap()
        .count();
    t.run(&["run", "holder.yaml"])
        .code(4)
        .stderr_has("error: another operator holds app/db_data/main.db");
    assert_eq!(
        std::fs::read_dir(t.path().join(".runbook/runs"))
            .unwrap()
            .count(),
        runs_before
    );

    // A dry run takes no lock, but says a run holds it.
    t.run(&["run", "holder.yaml", "--dry-run"])
        .code(0)
        .stderr_has(&format!(
            "note: a run holds app/db_data/main.db now (pid {pid}"
        ));
    release(&t, holder);
    // Free again, and the lock file went with its holder.
    t.backup_restore("app/backups/db_backup_20240501-120000.db")
        .code(0);
    assert!(!t.path().join("app/db_data/main.db.runbook-lock").exists());
}

#[test]
fn with_wait_a_second_operator_waits_for_the_first_and_then_runs() {
    let t = Test::new().file("holder.yaml", HOLDER);
    install(&t);
    let holder = hold(&t);
    let go = t.path().join("go");
    let releaser = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(500));
        std::fs::write(go, "").unwrap();
    });
    let out = t.run(&[
        "backup",
        "restore",
        "--db",
        APP_DB,
        "--backup",
        "app/backups/db_backup_20240501-120000.db",
        "--force",
        "--wait",
        "30s",
        "--json",
    ]);
    out.code(0);
    releaser.join().unwrap();
    assert!(holder.wait_with_output().unwrap().status.success());
    // It waited: the holder's last step wrote before the restore kept the
    // state it replaced.
    let restored: serde_json::Value = serde_json::from_str(out.stdout.trim()).unwrap();
    let pre = restored["pre_restore_backup"].as_str().unwrap();
    let rows = t.query(pre, "SELECT value FROM configs WHERE key = 'site_name'");
    assert_eq!(rows, [["held"]]);
}

#[test]
fn a_symlink_to_the_database_is_the_same_install() {
    let t = Test::new().file("holder.yaml", HOLDER);
    install(&t);
    std::os::unix::fs::symlink(
        t.path().join("app/db_data/main.db"),
        t.path().join("other-name.db"),
    )
    .unwrap();
    let holder = hold(&t);
    t.run(&[
        "backup",
        "restore",
        "--db",
        "other-name.db",
        "--dir",
        "app/backups",
        "--backup",
        "app/backups/db_backup_20240501-120000.db",
        "--force",
    ])
    .code(4)
    .stderr_has("error: another operator holds ");
    release(&t, holder);
}

/// No such install: nothing to lock, and the run says what is wrong in its
/// own words rather than a lock file's.
#[test]
fn a_run_on_an_install_that_does_not_exist_fails_at_its_first_step_not_at_the_lock() {
    let t = Test::new();
    let pb = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/playbooks/rollback-option-1.yaml"
    );
    let out = t.run(&["run", pb, "--var", "root=nowhere"]);
    out.code(1)
        .stdout_has("database nowhere/db_data/main.db does not exist");
    assert!(!out.stderr.contains("cannot lock"), "{}", out.stderr);
}
