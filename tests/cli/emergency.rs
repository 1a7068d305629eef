//! The emergency rollback end to end, the notifications it sends (to the
//! outbox, and over SMTP to a real server on loopback), and `runbook demo`.

use std::path::Path;

use crate::gofastcdn::Install;
use crate::support::{
    body_text, emergency_args, outbox, rolled_back, sees_every_process, skipped, unseen_warnings,
    LoopbackServer, Output, Test, EMERGENCY,
};
const NOTIFY: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/playbooks/notify.yaml");

/// The emergency rollback as these tests run it: the app "stopped" and
/// "started" by touching files, two recipients, mail in the outbox.
fn emergency_run(reason: &str, extra: &[&str]) -> Vec<String> {
    let mut base = vec![
        "--yes",
        "--var",
        "stop_command=touch stopped",
        "--var",
        "start_command=touch started",
        "--var",
        "notify_to=lead@example.com, devops@example.com",
        "--var",
        "mail_from=runbook@example.com",
    ];
    base.extend_from_slice(extra);
    emergency_args(reason, &base)
}

fn emergency(t: &Test, reason: &str, extra: &[&str]) -> Output {
    let args = emergency_run(reason, extra);
    t.run(&args.iter().map(String::as_str).collect::<Vec<_>>())
}

/// A loopback port nothing listens on (bound, then let go): a server that
/// does not answer.
fn closed_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[track_caller]
fn assert_headers(raw: &[u8]) {
    let parsed = mailparse::parse_mail(raw).unwrap();
    for header in [
        "From",
        "To",
        "Date",
        "Message-ID",
        "Subject",
        "MIME-Version",
    ] {
        assert!(
            parsed
                .headers
                .iter()
                .any(|h| h.get_key().eq_ignore_ascii_case(header)),
            "no {header} header"
        );
    }
}

fn migrated(t: &Test) -> Install {
    let app = Install::new(&t.path().join("app"), 20, 10);
    app.legacy_backup("20240501-120000");
    app.migrate().unwrap();
    app.upload("after.png", "image");
    app.upload("clip.mp4", "video");
    app
}

#[test]
fn option_1_succeeds_and_the_team_is_told() {
    let t = Test::new();
    let app = migrated(&t);
    let out = emergency(&t, "thumbnails broken", &[]);
    out.code(0);
    assert!(t.path().join("stopped").exists() && t.path().join("started").exists());
    assert!(!app.has_table("media"));
    assert_eq!(out.finished("option-1")["status"], rolled_back());
    let mail = outbox(&out);
    assert_eq!(mail.len(), 2, "initiated and completed");
    assert!(
        mail[0]
            .0
            .starts_with("URGENT: Media Migration Rollback Initiated"),
        "{}",
        mail[0].0
    );
    assert!(
        mail[0].1.contains("initiated due to thumbnails broken"),
        "{}",
        mail[0].1
    );
    assert!(
        mail[1]
            .0
            .starts_with("Media Migration Rollback Completed: thumbnails broken"),
        "{}",
        mail[1].0
    );
    assert!(
        mail[1]
            .1
            .contains("Rollback method: option 1, the built-in rollback"),
        "{}",
        mail[1].1
    );
    assert!(
        mail[1]
            .1
            .contains("Uploads made since the migration, carried back: 1 images, 0 documents; rows of other types kept in the salvage file: 1"),
        "{}",
        mail[1].1
    );
    for (_, _, raw) in &mail {
        assert_headers(raw);
    }
}

#[test]
fn option_1_fails_and_option_2_restores() {
    let t = Test::new();
    let app = migrated(&t);
    app.conn().execute_batch("DROP TABLE images").unwrap();
    let out = emergency(&t, "images table lost", &[]);
    out.code(0);
    assert_eq!(out.finished("option-1")["recovered_by"], "option-2");
    assert_eq!(app.count("images"), 21);
    let mail = outbox(&out);
    assert!(
        mail[1].1.contains(
            "Rollback method: option 2, the pre-migration backup restored (option 1 failed"
        ),
        "{}",
        mail[1].1
    );
}

#[test]
fn options_1_and_2_fail_and_option_3_restores_the_given_backup() {
    let t = Test::new();
    let app = Install::new(&t.path().join("app"), 20, 10);
    // A known good backup kept outside the app's naming, and a damaged legacy one.
    std::fs::copy(app.db(), t.path().join("known-good.db")).unwrap();
    std::fs::write(
        t.path().join("app/backups/db_backup_20240501-120000.db"),
        b"garbage",
    )
    .unwrap();
    app.migrate().unwrap();
    app.conn().execute_batch("DROP TABLE docs").unwrap();
    let out = emergency(&t, "docs table lost", &["--var", "backup=known-good.db"]);
    out.code(0);
    assert_eq!(out.finished("option-1")["recovered_by"], "option-3");
    assert_eq!(out.finished("option-2")["status"], "failed");
    assert_eq!(app.count("docs"), 10);
}

#[test]
fn all_options_fail_the_run_fails_and_says_so_and_the_database_is_as_it_was() {
    let t = Test::new();
    let app = Install::new(&t.path().join("app"), 5, 5);
    app.migrate().unwrap();
    app.conn().execute_batch("DROP TABLE images").unwrap();
    let before = app.bytes();
    let out = emergency(&t, "everything is on fire", &[]);
    out.code(1);
    assert_eq!(app.bytes(), before, "the live database changed");
    assert!(
        !t.path().join("started").exists(),
        "the app was started on a failed rollback"
    );
    let mail = outbox(&out);
    let last = mail.last().unwrap();
    assert!(
        last.0
            .starts_with("Media Migration Rollback FAILED: everything is on fire"),
        "{}",
        last.0
    );
    assert!(
        last.1.contains("has FAILED") && last.1.contains("Failed at step: option-1"),
        "{}",
        last.1
    );
}

#[test]
fn a_hostile_reason_ends_up_only_as_text() {
    let t = Test::new();
    let app = migrated(&t);
    let reason = r#"x"; DROP TABLE images; -- $(touch pwned) `touch pwned2` {{ 7*7 }} 'quoted'"#;
    let out = emergency(&t, reason, &[]);
    out.code(0);
    assert!(!t.path().join("pwned").exists() && !t.path().join("pwned2").exists());
    assert!(app.has_table("images"));
    let mail = outbox(&out);
    // Word for word: not run, not evaluated as a template, not escaped.
    assert!(
        mail[0].1.contains(reason),
        "the reason was altered: {}",
        mail[0].1
    );
}

#[test]
fn a_dry_run_of_the_emergency_renders_every_message_and_changes_nothing() {
    let t = Test::new();
    let _app = migrated(&t);
    let before = t.snapshot();
    let out = emergency(&t, "rehearsal", &["--dry-run"]);
    out.code(0)
        .stdout_has("would e-mail \"URGENT: Media Migration Rollback Initiated (critical)\" to lead@example.com, devops@example.com via file")
        .stdout_has("body from ../templates/rollback-initiated.txt: \"Team,");
    assert_eq!(t.snapshot(), before);
}

/// A real SMTP server on a free loopback port, in this process
/// (mailin-embedded, a dev-dependency: nothing to install): it speaks SMTP
/// with runbook over TCP and keeps each message it receives, as received.
struct SmtpServer {
    port: u16,
    received: std::sync::Arc<std::sync::Mutex<Vec<Vec<u8>>>>,
}

#[derive(Clone)]
struct Keep {
    received: std::sync::Arc<std::sync::Mutex<Vec<Vec<u8>>>>,
    message: Vec<u8>,
    rcpt: Vec<String>,
    /// The credentials it accepts, when it asks for any.
    login: Option<(String, String)>,
}

impl mailin_embedded::Handler for Keep {
    fn auth_plain(
        &mut self,
        _authorization_id: &str,
        user: &str,
        password: &str,
    ) -> mailin_embedded::Response {
        if self.login.as_ref() == Some(&(user.to_owned(), password.to_owned())) {
            mailin_embedded::response::AUTH_OK
        } else {
            mailin_embedded::response::INVALID_CREDENTIALS
        }
    }

    fn data_start(
        &mut self,
        _domain: &str,
        _from: &str,
        _is8bit: bool,
        to: &[String],
    ) -> mailin_embedded::Response {
        self.message.clear();
        self.rcpt = to.to_vec();
        mailin_embedded::response::OK
    }

    fn data(&mut self, buf: &[u8]) -> std::io::Result<()> {
        self.message.extend_from_slice(buf);
        Ok(())
    }

    fn data_end(&mut self) -> mailin_embedded::Response {
        let mut kept = format!("X-Envelope-To: {}\r\n", self.rcpt.join(", ")).into_bytes();
        kept.extend_from_slice(&self.message);
        self.received.lock().unwrap().push(kept);
        mailin_embedded::response::OK
    }
}

fn smtp_server() -> SmtpServer {
    smtp_server_with(None)
}

/// The same, asking for a login (AUTH PLAIN) and accepting only `login`.
fn smtp_server_with(login: Option<(&str, &str)>) -> SmtpServer {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let received = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let mut server = mailin_embedded::Server::new(Keep {
        received: std::sync::Arc::clone(&received),
        message: Vec::new(),
        rcpt: Vec::new(),
        login: login.map(|(u, p)| (u.to_owned(), p.to_owned())),
    });
    if login.is_some() {
        server.with_auth(mailin_embedded::AuthMechanism::Plain);
    }
    server
        .with_name("smtp.test")
        .with_ssl(mailin_embedded::SslConfig::None)
        .unwrap()
        .with_tcp_listener(listener);
    // Serves until the test process ends.
    std::thread::spawn(move || {
        let _ = server.serve();
    });
    SmtpServer { port, received }
}

fn notify_smtp(t: &Test, port: u16) -> Output {
    notify_smtp_as(t, port, "")
}

fn notify_smtp_as(t: &Test, port: u16, user: &str) -> Output {
    t.run(
        &[
            "run",
            NOTIFY,
            "--var",
            &format!("smtp_user={user}"),
            "--var",
            "reason=disk full",
            "--var",
            "event=initiated",
            "--var",
            "notify_to=lead@example.com",
            "--var",
            "notify_cc=pm@example.com",
            "--var",
            "mail_from=runbook@example.com",
        ]
        .into_iter()
        .chain(smtp_vars(port).iter().map(String::as_str))
        .collect::<Vec<_>>(),
    )
}

/// The variables that send notify.yaml's mail over SMTP, in clear, to a
/// server on loopback.
fn smtp_vars(port: u16) -> Vec<String> {
    [
        "transport=smtp".to_owned(),
        "smtp_host=127.0.0.1".to_owned(),
        format!("smtp_port={port}"),
        "smtp_tls=none".to_owned(),
    ]
    .into_iter()
    .flat_map(|v| ["--var".to_owned(), v])
    .collect()
}

#[test]
fn notifications_are_delivered_over_smtp_and_kept_in_the_outbox() {
    let t = Test::new();
    let server = smtp_server();
    let out = notify_smtp(&t, server.port);
    out.code(0);
    let received = server.received.lock().unwrap().clone();
    assert_eq!(
        received.len(),
        1,
        "the server received {} messages",
        received.len()
    );
    let raw = &received[0];
    let mail = mailparse::parse_mail(raw).unwrap();
    let header = |k: &str| {
        mail.headers
            .iter()
            .find(|h| h.get_key().eq_ignore_ascii_case(k))
            .map(|h| h.get_value())
    };
    assert_eq!(header("To").as_deref(), Some("lead@example.com"));
    assert_eq!(header("Cc").as_deref(), Some("pm@example.com"));
    assert!(header("Subject")
        .unwrap()
        .starts_with("URGENT: Media Migration Rollback Initiated"));
    assert!(body_text(&mail).contains("initiated due to disk full"));
    // Sent to both, over SMTP: the envelope names To and Cc.
    assert_eq!(
        header("X-Envelope-To").as_deref(),
        Some("lead@example.com, pm@example.com")
    );
    assert_eq!(outbox(&out).len(), 1);
}

/// The SMTP password is the one given through `RUNBOOK_SECRET_SMTP_PASSWORD`,
/// which runbook keeps at start and takes out of the environment its
/// programs inherit. Over a connection without TLS it is not sent: the
/// login fails for want of a mechanism the client will use in the clear,
/// not for want of a password. Without the variable, the step says which
/// one is missing. The password is in no file of the run.
#[test]
fn the_smtp_password_comes_from_the_secret_environment_and_never_goes_in_clear() {
    let server = smtp_server_with(Some(("runbook", "pa55-w0rd")));
    let t = Test::new().env("RUNBOOK_SECRET_SMTP_PASSWORD", "pa55-w0rd");
    let out = notify_smtp_as(&t, server.port, "runbook");
    out.code(1)
        .stdout_has("compatible authentication mechanism was found");
    assert!(!out.stdout.contains("is not:"), "{}", out.stdout);
    assert!(server.received.lock().unwrap().is_empty());
    for (path, bytes) in t.snapshot() {
        assert!(
            !String::from_utf8_lossy(&bytes).contains("pa55-w0rd"),
            "{} holds the password",
            path.display()
        );
    }
    let t = Test::new();
    notify_smtp_as(&t, server.port, "runbook")
        .code(1)
        .stdout_has("smtp_user is set but RUNBOOK_SECRET_SMTP_PASSWORD is not");
}

#[test]
fn an_smtp_server_that_is_down_is_a_clear_error_and_the_message_stays_in_the_outbox() {
    let t = Test::new();
    let port = closed_port();
    let out = notify_smtp(&t, port);
    out.code(1)
        .stdout_has(&format!("SMTP delivery to 127.0.0.1:{port} failed"))
        .stdout_has("the message is in");
    assert_eq!(outbox(&out).len(), 1);
}

/// Python's http.server standing in for the app's read endpoints.
fn app_server(dir: &Path) -> LoopbackServer {
    let root = dir.join("www");
    for endpoint in ["api/cdn/size", "api/cdn/image/all", "api/cdn/doc/all"] {
        let path = root.join(endpoint);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, "[]").unwrap();
    }
    LoopbackServer::start("python3 -m http.server", |port| {
        let mut cmd = std::process::Command::new("python3");
        cmd.args([
            "-m",
            "http.server",
            &port.to_string(),
            "--bind",
            "127.0.0.1",
            "--directory",
        ])
        .arg(&root);
        cmd
    })
}

#[test]
fn the_probe_checks_the_apps_read_endpoints_after_the_restart() {
    let t = Test::new();
    let _app = migrated(&t);
    let server = app_server(t.path());
    let url = format!("app_url=http://127.0.0.1:{}", server.port);
    let out = emergency(&t, "probe", &["--var", "probe=required", "--var", &url]);
    out.code(0);
    let statuses = &out.finished("probe")["outputs"]["statuses"];
    assert_eq!(statuses.as_object().unwrap().len(), 3, "{statuses}");
    assert!(
        statuses.as_object().unwrap().values().all(|s| s == 200),
        "{statuses}"
    );
}

#[test]
fn an_app_that_does_not_answer_is_a_warning_when_the_probe_is_optional() {
    let t = Test::new();
    let _app = migrated(&t);
    let port = closed_port();
    let url = format!("app_url=http://127.0.0.1:{port}");
    let out = emergency(&t, "probe", &["--var", "probe=optional", "--var", &url]);
    // Not a ✓ nor a plain recovery: the app did not answer, and the run says so.
    out.code(0)
        .stdout_has(
            "⚠ probe The app's read endpoints answer: probe-skipped let the run go on: GET ",
        )
        .stdout_has("run succeeded with ")
        .stdout_has("probe-skipped: the app did not answer on http://127.0.0.1:");
    assert_eq!(out.finished("probe")["status"], "warning");
    assert_eq!(out.finished("probe-skipped")["status"], "warning");
    let required = emergency(&t, "probe", &["--var", "probe=required", "--var", &url]);
    required.code(1).stdout_has("run failed at step probe");
}

#[test]
fn a_rehearsal_failing_options_1_and_2_proves_option_3_and_leaves_the_live_install_alone() {
    let t = Test::new();
    let app = migrated(&t);
    let before = t.snapshot();
    let out = t.run(&[
        "run",
        EMERGENCY,
        "--yes",
        "--rehearse",
        "--fail",
        "option-1",
        "--fail",
        "option-2",
        "--var",
        "root=app",
        "--var",
        "reason=rehearsal",
        "--var",
        "probe=off",
        "--var",
        "stop_command=touch stopped-for-real",
        "--var",
        "notify_to=lead@example.com",
    ]);
    out.code(0)
        .stdout_has("rehearsal: the live databases are not touched");
    assert_eq!(out.finished("option-1")["recovered_by"], "option-3");
    assert_eq!(
        out.finished("option-2")["detail"],
        "failed on purpose (--fail option-2)"
    );
    // The live install: the same bytes, and no new backups.
    let after = t.snapshot();
    let changed: Vec<_> = after
        .iter()
        .filter(|(p, b)| p.starts_with("app") && before.get(*p) != Some(b))
        .map(|(p, _)| p.display().to_string())
        .collect();
    assert!(
        changed.is_empty(),
        "the rehearsal changed the live install: {changed:?}"
    );
    assert!(app.has_table("media"));
    // A command the operator gives explicitly is run as given; the start command is a no-op.
    assert!(t.path().join("stopped-for-real").exists());
    assert!(
        out.stdout
            .contains("start_command: `true` instead of `systemctl start go-fast-cdn`"),
        "{}",
        out.stdout
    );
    // The copy was rolled back.
    let copy = out.run_dir().join("rehearsal/db/main.db");
    let media = t.query(
        copy.to_str().unwrap(),
        "SELECT count(*) FROM sqlite_master WHERE name = 'media'",
    );
    assert_eq!(media, [["0"]]);
}

#[test]
fn fail_names_a_step_that_exists() {
    let t = Test::new();
    let _app = migrated(&t);
    emergency(&t, "x", &["--rehearse", "--fail", "option-4"])
        .code(2)
        .stderr_has("error: --fail option-4: the playbook has no step `option-4`")
        .stderr_has("did you mean `option-");
    emergency(&t, "x", &["--fail", "option-1"])
        .code(2)
        .stderr_has("--rehearse");
}

fn fingerprint_of(out: &Output) -> String {
    let line = out
        .stdout
        .lines()
        .find(|l| l.starts_with("plan fingerprint: "))
        .expect("a fingerprint line");
    line.trim_start_matches("plan fingerprint: ")
        .split_whitespace()
        .next()
        .unwrap()
        .to_owned()
}

/// `--expect-plan` holds the run to what was reviewed — the path and every
/// argument — not to row counts: an upload after the review changes no
/// decision, so the run goes ahead; a change of path refuses it, and says
/// what the run would do now.
#[test]
fn expect_plan_refuses_a_changed_path_but_not_an_upload_made_since_the_review() {
    let t = Test::new();
    let app = migrated(&t);
    let review = emergency(&t, "review", &["--dry-run", "--save-review"]);
    let reviewed = fingerprint_of(review.code(0));
    review.stdout_has(&format!(
        "review recorded: .runbook/reviews/{reviewed}.json"
    ));
    assert_eq!(
        fingerprint_of(emergency(&t, "review", &["--dry-run"]).code(0)),
        reviewed,
        "not stable"
    );
    // A different variable is a different plan.
    let other =
        fingerprint_of(emergency(&t, "review", &["--dry-run", "--var", "severity=major"]).code(0));
    assert_ne!(other, reviewed);

    // The images table is lost since the review: option 1 can no longer run.
    app.conn()
        .execute_batch("ALTER TABLE images RENAME TO images_gone")
        .unwrap();
    let before = app.bytes();
    // The review was recorded here: what changed is listed, step by step.
    emergency(&t, "review", &["--expect-plan", &reviewed])
        .code(2)
        .stderr_has(&format!("error: what the run would do changed since the review (a step, the path or an argument): expected fingerprint {reviewed}, now "))
        .stderr_has("  changed since the review at ")
        .stderr_has("    option-1.rollback: would execute on app/db_data/main.db in one transaction")
        .stderr_has(" → would fail: require failed: images and docs tables present")
        .stderr_has("    option-2.restore: not in the review; now would verify app/backups/db_backup_20240501-120000.db")
        .stderr_has("  what the steps read has changed too:\n")
        .stderr_has("    option-1.before: tables[2] images → images_gone");
    // Reviewed elsewhere: only the fingerprint can be compared, and the
    // run says what it would do now.
    let reviews = t.path().join(".runbook/reviews");
    let aside = t.path().join("reviews-aside");
    std::fs::rename(&reviews, &aside).unwrap();
    emergency(&t, "review", &["--expect-plan", &reviewed])
        .code(2)
        .stderr_has("  now it would:\n")
        .stderr_has("    option-1: require failed: images and docs tables present")
        .stderr_has("(no record of that review in .runbook/reviews: a review made with --dry-run --save-review lists the differences)");
    std::fs::rename(&aside, &reviews).unwrap();
    assert_eq!(app.bytes(), before);
    assert!(!t.path().join("stopped").exists(), "a step ran");
    app.conn()
        .execute_batch("ALTER TABLE images_gone RENAME TO images")
        .unwrap();

    // An upload made since the review: the same path, the same arguments.
    // The run goes ahead, and says what reads differently.
    let media: i64 = app
        .conn()
        .query_row("SELECT count(*) FROM media", [], |r| r.get(0))
        .unwrap();
    app.upload("late.png", "image");
    emergency(&t, "review", &["--expect-plan", &reviewed])
        .code(0)
        .stderr_has("note: the path and every argument are as reviewed at ")
        .stderr_has(&format!(
            "    option-1.before: counts.media {media} → {}\n",
            media + 1
        ));
    assert!(!app.has_table("media"));
    assert_eq!(
        app.conn()
            .query_row(
                "SELECT count(*) FROM images WHERE file_name = 'late.png'",
                [],
                |r| r.get::<_, i64>(0)
            )
            .unwrap(),
        1,
        "the late upload was carried back"
    );
}

/// The top-level lines of a dry run's "predicted path", by step.
fn predicted(out: &Output) -> Vec<String> {
    out.stdout
        .lines()
        .skip_while(|l| *l != "predicted path:")
        .skip(1)
        .take_while(|l| l.starts_with("  "))
        .map(|l| l.trim().to_owned())
        .collect()
}

#[test]
fn the_dry_run_predicts_what_the_run_then_does() {
    // Option 1 will work.
    let t = Test::new();
    let _app = migrated(&t);
    let dry = emergency(&t, "predict", &["--dry-run"]);
    let path = predicted(dry.code(0));
    let option_1 = path.iter().find(|l| l.starts_with("option-1:")).unwrap();
    assert!(
        option_1.starts_with("option-1: would execute on app/db_data/main.db in one transaction"),
        "{option_1}"
    );
    assert!(
        !dry.stdout.contains("cannot be predicted: it reads"),
        "{}",
        dry.stdout
    );
    let real = emergency(&t, "predict", &[]);
    real.code(0);
    assert_eq!(real.finished("option-1")["status"], rolled_back());

    // Option 1 will refuse, and option 2 will restore the legacy backup.
    let t = Test::new();
    let app = migrated(&t);
    app.conn().execute_batch("DROP TABLE images").unwrap();
    let dry = emergency(&t, "predict", &["--dry-run"]);
    let path = predicted(dry.code(0));
    let option_1 = path.iter().find(|l| l.starts_with("option-1:")).unwrap();
    assert!(
        option_1.contains("require failed: images and docs tables present"),
        "{option_1}"
    );
    assert!(option_1.contains("option-2 would take over"), "{option_1}");
    dry.stdout_has("would verify app/backups/db_backup_20240501-120000.db (never verified: integrity_check reads it all first; `runbook backup verify --backup app/backups/db_backup_20240501-120000.db` now");
    // The restore is made on the dry run's copy, so the carry-back after it
    // and every check of verify are predicted, not guessed.
    dry.stdout_has("-pre-restore.db (made by the run) as `old`")
        .stdout_has("✓ verify.compare-images ")
        .stdout_has("✓ verify.compare-docs ");
    assert!(
        !dry.stdout.contains("cannot be predicted: it reads"),
        "{}",
        dry.stdout
    );
    assert!(
        std::fs::read_dir(t.path().join("app/backups"))
            .unwrap()
            .count()
            == 1,
        "the dry run left a file in the live backup directory"
    );
    // Verified the week before, the same restore is predicted as a checked copy.
    t.run(&[
        "backup",
        "verify",
        "--backup",
        "app/backups/db_backup_20240501-120000.db",
    ])
    .code(0);
    let dry = emergency(&t, "predict", &["--dry-run"]);
    dry.code(0).stdout_has(
        "would restore app/backups/db_backup_20240501-120000.db (its integrity_check passed at ",
    )
    .stdout_has("only its checksum is compared, as it is copied");
    assert_eq!(
        std::fs::read_dir(t.path().join("app/backups"))
            .unwrap()
            .count(),
        2,
        "the backup and the manifest verify wrote, and nothing the dry run made"
    );
    let real = emergency(&t, "predict", &[]);
    real.code(0);
    assert_eq!(real.finished("option-1")["recovered_by"], "option-2");
    assert_eq!(
        real.finished("option-2.restore")["outputs"]["backup"],
        "app/backups/db_backup_20240501-120000.db"
    );
}

#[test]
fn a_secret_appears_in_no_file_of_the_run_and_nowhere_on_the_terminal() {
    let secret = "tr0ub4dor-and-3";
    let t = Test::new().env("RUNBOOK_SECRET_REASON", secret);
    let _app = migrated(&t);
    let base = [
        "run",
        EMERGENCY,
        "--yes",
        "--var",
        "root=app",
        "--var",
        "stop_command=true",
        "--var",
        "start_command=true",
        "--var",
        "probe=off",
        "--var",
        "notify_to=lead@example.com",
    ];
    let out = t.run(&base);
    out.code(0);
    let json = t.run(&[&base[..], &["--json"]].concat());
    for o in [&out, &json] {
        assert!(!o.stdout.contains(secret) && !o.stderr.contains(secret));
    }
    let mut files = 0;
    let mut stack = vec![t.path().join(".runbook")];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else {
                files += 1;
                let bytes = std::fs::read(&path).unwrap();
                let text = String::from_utf8_lossy(&bytes);
                assert!(
                    !text.contains(secret),
                    "{} holds the secret",
                    path.display()
                );
            }
        }
    }
    assert!(files >= 8, "only {files} files looked at");
    // The e-mail says something in its place.
    let mail = outbox(&out);
    assert!(mail[0].1.contains("initiated due to ***"), "{}", mail[0].1);
}

#[test]
fn a_wrecked_database_is_kept_and_replaced_by_option_3() {
    let t = Test::new();
    let app = migrated(&t);
    let mut bytes = std::fs::read(app.db()).unwrap();
    bytes[..4096].fill(0);
    std::fs::write(app.db(), &bytes).unwrap();
    let out = emergency(&t, "database wrecked", &[]);
    out.code(0);
    assert_eq!(out.finished("option-1")["recovered_by"], "option-3");
    assert_eq!(app.count("images"), 20);
    let kept = out.finished("option-3.emergency-backup")["outputs"]["path"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(kept.ends_with("-emergency-raw.db"), "{kept}");
    assert_eq!(std::fs::read(t.path().join(&kept)).unwrap(), bytes);
}

/// Nobody to tell: the alert and the report did nothing their names
/// promise, so they are ⚠, never ✓, and the last line counts them.
#[test]
fn with_no_recipient_the_alert_and_the_report_are_warnings_not_ticks() {
    let t = Test::new();
    let _app = migrated(&t);
    let out = emergency(&t, "no one", &["--var", "notify_to="]);
    out.code(0)
        .stdout_has("⚠ alert Alert the team - rollback initiated: nothing done: no step applied")
        .stdout_has("⚠ report Notify - rollback completed or failed: nothing done")
        .stdout_has(&format!(
            "run succeeded with {} warnings in ",
            2 + unseen_warnings()
        ))
        .stdout_has("alert: nothing done");
    assert!(!out.stdout.contains("✓ alert"), "{}", out.stdout);
    assert!(!out.stdout.contains("outbox: "), "no mail, no outbox line");
    assert_eq!(out.finished("alert")["status"], "warning");
    let last: serde_json::Value = out.journal().last().cloned().unwrap();
    assert_eq!(last["status"], "succeeded");
    assert_eq!(
        last["warnings"].as_array().unwrap().len(),
        2 + unseen_warnings(),
        "{last}"
    );
}

/// `transport: file` (the default) only writes the outbox: the mail steps
/// say "not sent", and the outbox is named at the end for whoever sends it.
#[test]
fn mail_only_written_to_the_outbox_is_a_warning_and_the_outbox_is_named() {
    let t = Test::new();
    let _app = migrated(&t);
    let out = emergency(&t, "file only", &["-v"]);
    out.code(0)
        .stdout_has("⚠ alert.initiated E-mail: rollback initiated: not sent: written to the outbox only (transport: file)")
        .stdout_has("⚠ alert Alert the team - rollback initiated: 1 warning (alert.initiated)")
        .stdout_has(&format!(
            "run succeeded with {} warnings in ",
            2 + unseen_warnings()
        ));
    let outbox_line = out
        .stdout
        .lines()
        .find(|l| l.starts_with("outbox: "))
        .expect("the outbox is named");
    assert!(out
        .dir
        .join(outbox_line.trim_start_matches("outbox: "))
        .is_dir());
    assert_eq!(out.finished("alert.initiated")["status"], "warning");
    assert_eq!(
        out.finished("alert.initiated")["outputs"]["delivered"],
        false
    );
}

/// The outcome and the notice (to everyone) of a run, as their bodies.
fn mails(out: &Output) -> (String, Option<String>) {
    let mail = outbox(out);
    let outcome = mail
        .iter()
        .find(|(subject, _, _)| subject.starts_with("Media Migration Rollback "))
        .map(|(_, body, _)| body.clone())
        .expect("an outcome mail");
    let notice = mail
        .iter()
        .find(|(subject, _, _)| subject.starts_with("go-fast-cdn: "))
        .map(|(_, body, _)| body.clone());
    (outcome, notice)
}

#[track_caller]
fn says(body: &str, yes: &[&str], no: &[&str]) {
    for s in yes {
        assert!(body.contains(s), "the mail does not say `{s}`:\n{body}");
    }
    for s in no {
        assert!(
            !body.contains(s),
            "the mail says `{s}`, which is not true:\n{body}"
        );
    }
}

/// Option 1, the app answering: everything the mails say happened did.
#[test]
fn after_option_1_with_the_app_answering_the_mails_say_the_uploads_were_kept() {
    let t = Test::new();
    let _app = migrated(&t);
    let server = app_server(t.path());
    let url = format!("app_url=http://127.0.0.1:{}", server.port);
    let out = emergency(
        &t,
        "truth",
        &[
            "--var",
            "probe=required",
            "--var",
            &url,
            "--var",
            "notify_wide_to=all@example.com",
        ],
    );
    out.code(0);
    let (outcome, notice) = mails(&out);
    says(
        &outcome,
        &[
            "Rollback method: option 1, the built-in rollback",
            "Application: restarted, and it answers its read endpoints",
            "carried back: 1 images, 0 documents",
        ],
        &["NOT", "never stopped"],
    );
    says(
        &notice.expect("a notice"),
        &[
            "The service is available again.",
            "Media uploaded since the migration has been kept.",
        ],
        &["not back yet"],
    );
}

/// Option 3 restores a backup as it is: no mail may say the uploads were kept.
#[test]
fn after_option_3_no_mail_says_the_uploads_were_kept() {
    let t = Test::new();
    let _app = migrated(&t);
    let out = emergency(
        &t,
        "truth",
        &[
            "--rehearse",
            "--fail",
            "option-1",
            "--fail",
            "option-2",
            "--var",
            "notify_wide_to=all@example.com",
        ],
    );
    out.code(0);
    assert!(out.finished("option-1")["recovered_by"]
        .as_str()
        .is_some_and(|b| b.contains("option-3")));
    let (outcome, notice) = mails(&out);
    says(
        &outcome,
        &["Uploads made since the migration were NOT carried back: option 3 restores a backup as it is"],
        &["Uploads made since the migration, carried back"],
    );
    says(
        &notice.expect("a notice"),
        &["Media uploaded since the migration is not back yet"],
        &["has been kept"],
    );
}

/// The app did not answer its (optional) probe: the run succeeds with a
/// warning, and no mail says the service is available.
#[test]
fn after_a_failed_probe_no_mail_says_the_service_is_available() {
    let t = Test::new();
    let _app = migrated(&t);
    let port = closed_port();
    let url = format!("app_url=http://127.0.0.1:{port}");
    let out = emergency(
        &t,
        "truth",
        &[
            "--var",
            "probe=optional",
            "--var",
            &url,
            "--var",
            "notify_wide_to=all@example.com",
        ],
    );
    out.code(0);
    let (outcome, notice) = mails(&out);
    says(
        &outcome,
        &["Application: restarted, but it did NOT answer its read endpoints: check it by hand"],
        &["answers its read endpoints"],
    );
    says(
        &notice.expect("a notice"),
        &["did not answer our check yet"],
        &["available again"],
    );
}

/// Stopped at the assessment (the operator said no): nothing was rolled
/// back, the app was never stopped, and no deadline was met.
#[test]
fn after_a_stop_at_assess_the_mail_claims_no_deadline_and_no_stopped_app() {
    let t = Test::new();
    let app = migrated(&t);
    let command = format!(
        "{} run {EMERGENCY} --var root=app --var reason=truth --var 'stop_command=touch stopped' \
         --var 'notify_to=lead@example.com' --var probe=off",
        env!("CARGO_BIN_EXE_runbook")
    );
    let Some(ran) = t.run_on_terminal(&command, "n\n") else {
        panic!("`script` (util-linux) is needed for this test: apt-get install bsdutils");
    };
    assert_eq!(
        ran.status.code(),
        Some(3),
        "{}",
        String::from_utf8_lossy(&ran.stdout)
    );
    assert!(!t.path().join("stopped").exists());
    assert!(app.has_table("media"));
    let run = std::fs::read_dir(t.path().join(".runbook/runs"))
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    let out = Output {
        code: 3,
        stdout: format!("  run directory: {}\n", run.display()),
        stderr: String::new(),
        dir: t.path().to_path_buf(),
    };
    let (outcome, notice) = mails(&out);
    assert!(notice.is_none(), "a notice went to everyone");
    says(
        &outcome,
        &[
            "has FAILED",
            "Failed at step: assess",
            "Rollback method: none; the database was not rolled back",
            "not met, the rollback did not complete",
            "Application: never stopped by this run",
            "The application was not stopped by this run",
        ],
        &["): met", "Keep the application stopped"],
    );
}

/// Option 2 (option 1 failed on purpose, in a rehearsal): the backup was
/// restored and the uploads carried back from the state before; the mails
/// say exactly that.
#[test]
fn after_option_2_the_mails_say_what_was_restored_and_carried_back() {
    let t = Test::new();
    let _app = migrated(&t);
    let out = emergency(
        &t,
        "truth",
        &[
            "--rehearse",
            "--fail",
            "option-1",
            "--var",
            "notify_wide_to=all@example.com",
        ],
    );
    out.code(0);
    let (outcome, notice) = mails(&out);
    says(
        &outcome,
        &[
            "Rollback method: option 2, the pre-migration backup restored (option 1 failed: failed on purpose",
            "Uploads made since the migration, carried back: 1 images, 0 documents; rows of other types kept in the salvage file: 1",
            "- Restored from the backup ",
            "- Backup made by this run (pre-restore): ",
            "Verification: passed",
        ],
        &["NOT carried back"],
    );
    assert!(
        outcome
            .lines()
            .any(|l| l.starts_with("- Restored from the backup ")
                && l.trim_end().ends_with("db_backup_20240501-120000.db")),
        "{outcome}"
    );
    // The summary the mail was rendered from says the same, as data.
    let js = t.run(&["report", "latest", "--format", "json"]);
    js.code(0);
    let v: serde_json::Value = serde_json::from_str(&js.stdout).unwrap();
    assert_eq!(v["recoveries"][0]["step"], "option-1");
    assert_eq!(v["recoveries"][0]["by"], "option-2");
    let restored = v["backups_restored"][0]["backup"].as_str().unwrap();
    assert!(restored.ends_with("db_backup_20240501-120000.db"), "{v}");
    assert_eq!(v["backups_made"][0]["label"], "pre-restore", "{v}");
    // Every backup the mail names exists, as the run left it.
    for line in outcome.lines().filter(|l| {
        l.starts_with("- Restored from the backup ") || l.starts_with("- Backup made by this run")
    }) {
        let path = line.trim_end().rsplit(' ').next().unwrap();
        assert!(
            std::path::Path::new(path).is_file() || t.path().join(path).is_file(),
            "{line}: no such file"
        );
    }
    says(
        &notice.expect("a notice"),
        &["Media uploaded since the migration has been kept."],
        &["not back yet"],
    );
}

/// Killed just after option 1 finished, then resumed: the mail the resumed
/// run sends states what the first run did, from the journal.
#[test]
fn after_a_resume_the_mail_states_what_the_interrupted_run_did() {
    let t = Test::new();
    let _app = migrated(&t);
    // Where option 1 finishes, in a run like this one.
    let probe = Test::new();
    let _probe_app = migrated(&probe);
    let whole = emergency(&probe, "truth", &[]);
    whole.code(0);
    let at = whole
        .journal()
        .iter()
        .position(|e| e["event"] == "step_finished" && e["step"] == "option-1")
        .unwrap()
        + 1;
    let args = emergency_run("truth", &[]);
    let killed = t
        .command(&args)
        .env("RUNBOOK_FAULT_AT", at.to_string())
        .stdout(std::process::Stdio::null())
        .status()
        .unwrap();
    assert!(!killed.success(), "the run was not killed");
    let out = t.run(&["resume", "latest", "--yes"]);
    out.code(0);
    let (outcome, _) = mails(&out);
    says(
        &outcome,
        &[
            "has COMPLETED",
            "Rollback method: option 1, the built-in rollback",
            "Uploads made since the migration, carried back: 1 images, 0 documents",
            "Application: restarted (its endpoints were not checked)",
            "Verification: passed",
        ],
        &["FAILED", "none"],
    );
}

/// The outcome mail says what the run did not do or could not establish,
/// as the closing lines of the run do: here the first mail only went to the
/// outbox. A manager reading "succeeded" reads the warnings with it; a run
/// that had none says nothing more.
#[test]
fn the_outcome_mail_lists_the_runs_warnings_and_only_when_there_are_some() {
    if !sees_every_process() {
        return skipped("counts a run's warnings, which would include those of a run that may not look at every process (run the tests as root)");
    }
    let t = Test::new();
    migrated(&t);
    let out = emergency(&t, "thumbnails broken", &[]);
    out.code(0)
        .stdout_has("⚠ alert.initiated: not sent: written to the outbox only (transport: file)");
    let mail = outbox(&out);
    // Mail lines end in CRLF.
    let outcome = mail[1].1.replace("\r\n", "\n");
    assert!(
        outcome.contains("- Status: succeeded, with 1 warning (below)\n")
            && outcome.contains(
                "\nWarnings: what the run did not do or could not establish, though it went on\n\
                 - alert.initiated: not sent: written to the outbox only (transport: file)\n"
            ),
        "{outcome}"
    );

    let t = Test::new();
    migrated(&t);
    let server = smtp_server();
    let smtp = smtp_vars(server.port);
    let smtp: Vec<&str> = smtp.iter().map(String::as_str).collect();
    let out = emergency(&t, "thumbnails broken", &smtp);
    out.code(0).stdout_has("run succeeded in ");
    let received = server.received.lock().unwrap().clone();
    assert_eq!(received.len(), 2, "initiated and completed");
    let outcome = body_text(&mailparse::parse_mail(&received[1]).unwrap()).replace("\r\n", "\n");
    assert!(
        outcome.contains("- Status: succeeded\n") && !outcome.contains("Warnings:"),
        "{outcome}"
    );
}
