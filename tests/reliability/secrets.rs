//! Secrets in every sink: a generated secret — any Unicode, quotes,
//! backslashes, runs of spaces, newlines, lengths around every cut runbook
//! makes — is put in check details, step outputs, dry-run descriptions and
//! an e-mail, and must appear, in none of its forms, in any byte runbook
//! writes: stdout, stderr, `--json`, the journal, the report, the outbox.
//! `SECRET_CASES` sets how many secrets (default 24; 10,000 in the
//! documented run).

use std::path::Path;
use std::process::Command;

use proptest::prelude::*;

fn cases() -> u32 {
    std::env::var("SECRET_CASES")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(24)
}

const PLAYBOOK: &str = r#"vars:
  token: {secret: true, required: true}
  notify_to: ops@example.com
steps:
  - id: read
    name: Read it back from the database
    action: sqlite.query
    with: {db: app.db, sql: "SELECT ? AS t, ? AS u", params: ["{{ token }}", "{{ token ~ token }}"]}
  - id: echo
    name: A program that prints it
    action: shell
    with:
      command: [sh, -c, 'printf "%s\n%s" "$T" "$T"']
      env: {T: "{{ token }}"}
  - id: store
    name: Store it
    action: sqlite.exec
    with: {db: app.db, sql: "INSERT INTO t VALUES (?)", params: ["{{ token }}"]}
  - id: compare
    name: A check that fails on it
    action: sqlite.query
    with: {db: app.db, sql: "SELECT ? AS t", params: ["{{ token }}"]}
    verify:
      - name: it is not what it is
        that: "steps.compare.rows[0].t == 'x' ~ steps.compare.rows[0].t"
always:
  - id: tell
    action: notify.email
    with:
      template: mail.txt
      subject: "about {{ token }}"
      to: "{{ notify_to }}"
      from: runbook@localhost
      transport: file
"#;

const MAIL: &str = "The token is {{ token }}, and again: {{ token }}\n";

/// Every byte under `dir`, and the outputs, searched for the secret's forms.
fn leaks(secret: &str, texts: &[(&str, Vec<u8>)]) -> Vec<String> {
    let json = serde_json::to_string(secret).unwrap();
    let forms = [
        secret.to_owned(),
        json[1..json.len() - 1].to_owned(),
        shell_words::quote(secret).into_owned(),
        secret.split_whitespace().collect::<Vec<_>>().join(" "),
    ];
    let mut found = Vec::new();
    for (what, bytes) in texts {
        let text = String::from_utf8_lossy(bytes);
        for form in &forms {
            if !form.trim().is_empty() && text.contains(form.as_str()) {
                found.push(format!("{what} holds {form:?}"));
            }
        }
    }
    found
}

fn files(dir: &Path, out: &mut Vec<(String, Vec<u8>)>) {
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            files(&p, out);
        } else if p.extension().is_none_or(|x| x != "db") {
            out.push((p.display().to_string(), std::fs::read(&p).unwrap()));
        }
    }
}

fn run_with(secret: &str) -> Vec<String> {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("pb.yaml"), PLAYBOOK).unwrap();
    std::fs::write(dir.path().join("mail.txt"), MAIL).unwrap();
    rusqlite::Connection::open(dir.path().join("app.db"))
        .unwrap()
        .execute_batch("CREATE TABLE t(x)")
        .unwrap();
    let mut outputs: Vec<(String, Vec<u8>)> = Vec::new();
    for args in [
        &["run", "pb.yaml", "--dry-run"][..],
        &["run", "pb.yaml", "--dry-run", "--json"],
        &["run", "pb.yaml"],
        &["run", "pb.yaml", "--json"],
        &["report", "latest"],
        &["report", "latest", "--format", "json"],
    ] {
        let out = Command::new(crate::BIN)
            .args(args)
            .current_dir(dir.path())
            .env("RUNBOOK_SECRET_TOKEN", secret)
            .output()
            .unwrap();
        outputs.push((format!("stdout of {args:?}"), out.stdout));
        outputs.push((format!("stderr of {args:?}"), out.stderr));
    }
    // The secret did reach the steps: the run stored it, and wrote a mail.
    let stored: String = rusqlite::Connection::open(dir.path().join("app.db"))
        .unwrap()
        .query_row("SELECT x FROM t LIMIT 1", [], |r| r.get(0))
        .unwrap();
    assert_eq!(stored, secret, "the playbook did not get the secret");
    files(&dir.path().join(".runbook"), &mut outputs);
    assert!(
        outputs.iter().any(|(w, _)| w.ends_with(".eml")),
        "no mail was written"
    );
    let texts: Vec<(&str, Vec<u8>)> = outputs
        .iter()
        .map(|(w, b)| (w.as_str(), b.clone()))
        .collect();
    leaks(secret, &texts)
}

/// Secrets that cannot turn up in runbook's own words by chance: at least
/// six characters that are not white space, from a mix of every kind of
/// character, and lengths reaching past the cuts at 60, 120, 160 and 200.
fn secret() -> impl Strategy<Value = String> {
    let piece = prop_oneof![
        Just("\"".to_owned()),
        Just("\\".to_owned()),
        Just("  ".to_owned()),
        Just("\n".to_owned()),
        Just("'".to_owned()),
        Just("`".to_owned()),
        "[a-zA-Z0-9]{1,8}",
        "\\PC{1,4}",
    ];
    (prop::collection::vec(piece, 2..60), "[A-Za-z0-9]{6}")
        .prop_map(|(pieces, core)| format!("{core}{}", pieces.concat()))
        .prop_filter("long enough to be told apart", |s| {
            s.chars().filter(|c| !c.is_whitespace()).count() >= 6
        })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: cases(), ..ProptestConfig::default() })]

    #[test]
    fn a_secret_appears_in_no_byte_runbook_writes(secret in secret()) {
        let found = run_with(&secret);
        prop_assert!(found.is_empty(), "the secret {secret:?} leaked: {found:#?}");
    }
}

/// The forms that once leaked, each on its own.
#[test]
fn secrets_that_once_leaked_do_not() {
    for secret in [
        "pa\"ss\"word9",
        "pw\"with\"quote42",
        "two  spaces  inside9",
        "back\\slash\\es9",
        "it's-a-secret-42",
        &format!("straddle{}", "x".repeat(190)),
    ] {
        let found = run_with(secret);
        assert!(found.is_empty(), "{secret:?} leaked: {found:#?}");
    }
}
