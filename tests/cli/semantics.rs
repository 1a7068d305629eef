//! One test per execution rule: require, verify, skip_if, when, fallbacks,
//! retries, timeouts, always-steps, outputs in scope, manual steps.

use crate::support::Test;

#[test]
fn require_that_fails_stops_the_step_before_its_action() {
    let t = Test::new().file(
        "pb.yaml",
        r#"
steps:
  - id: guarded
    require:
      - name: the marker file exists
        that: "false"
    action: shell
    with: {command: [touch, ran]}
  - id: never
    action: shell
    with: {command: [touch, never]}
"#,
    );
    let out = t.run(&["run", "pb.yaml"]);
    out.code(1)
        .stdout_has("require failed: the marker file exists");
    assert!(
        !t.path().join("ran").exists(),
        "the action ran despite its require"
    );
    assert!(
        !t.path().join("never").exists(),
        "the run went on after a failed step"
    );
    assert_eq!(out.finished("guarded")["status"], "failed");
}

#[test]
fn verify_that_fails_after_the_action_fails_the_step() {
    let t = Test::new().file(
        "pb.yaml",
        r#"
steps:
  - id: write
    action: shell
    with: {command: [sh, -c, "echo wrong > out.txt"]}
    verify:
      - name: out.txt says right
        action: shell
        with: {command: [grep, -q, right, out.txt], read_only: true}
"#,
    );
    let out = t.run(&["run", "pb.yaml"]);
    out.code(1).stdout_has("verify failed: out.txt says right");
    assert_eq!(
        std::fs::read_to_string(t.path().join("out.txt")).unwrap(),
        "wrong\n"
    );
}

#[test]
fn fallback_chain_where_the_first_two_fail_and_the_third_succeeds() {
    let t = Test::new().file(
        "pb.yaml",
        r#"
steps:
  - id: option-1
    action: shell
    with: {command: [sh, -c, "echo one >> tried; exit 1"]}
    fallback:
      - id: option-2
        action: shell
        with: {command: [sh, -c, "echo two >> tried; exit 2"]}
      - id: option-3
        action: shell
        with: {command: [sh, -c, "echo three >> tried"]}
  - id: next
    action: assert
    with: {that: "steps['option-1'].recovered_by == 'option-3'"}
"#,
    );
    let out = t.run(&["run", "pb.yaml"]);
    out.code(0).stdout_has("recovered by option-3");
    assert_eq!(
        std::fs::read_to_string(t.path().join("tried")).unwrap(),
        "one\ntwo\nthree\n"
    );
    let finished = out.finished("option-1");
    assert_eq!(finished["status"], "recovered");
    assert_eq!(finished["recovered_by"], "option-3");
    assert_eq!(out.finished("option-2")["status"], "failed");
    assert!(out.report().contains("recovered by `option-3`"));
}

#[test]
fn a_failing_step_whose_fallbacks_all_fail_fails_the_run() {
    let t = Test::new().file(
        "pb.yaml",
        r#"
steps:
  - id: a
    action: shell
    with: {command: ["false"]}
    fallback:
      - id: b
        action: shell
        with: {command: [sh, -c, "echo b failed >&2; exit 4"]}
"#,
    );
    // -v: the verdict on one line, as it is in the journal and report.
    t.run(&["run", "pb.yaml", "-v"])
        .code(1)
        .stdout_has("every fallback failed too (last: `sh` exited with code 4: b failed)");
}

#[test]
fn retries_that_succeed_on_the_last_try() {
    let t = Test::new().file(
        "pb.yaml",
        r#"
steps:
  - id: flaky
    retries: 2
    retry_delay: 10ms
    action: shell
    with:
      command: [sh, -c, 'n=$(cat count 2>/dev/null || echo 0); n=$((n+1)); echo $n > count; [ $n -ge 3 ]']
"#,
    );
    let out = t.run(&["run", "pb.yaml"]);
    out.code(0);
    assert_eq!(
        std::fs::read_to_string(t.path().join("count"))
            .unwrap()
            .trim(),
        "3"
    );
    let failed_attempts = out
        .journal()
        .iter()
        .filter(|e| e["event"] == "attempt_failed")
        .count();
    assert_eq!(failed_attempts, 2);
}

#[test]
fn retries_that_run_out_report_how_many_attempts() {
    let t = Test::new().file(
        "pb.yaml",
        "steps:\n  - id: never\n    retries: 1\n    retry_delay: 1ms\n    action: shell\n    with: {command: [\"false\"]}\n",
    );
    t.run(&["run", "pb.yaml"])
        .code(1)
        .stdout_has("(after 2 attempts)");
}

#[test]
fn a_timeout_kills_the_command_and_everything_it_started() {
    let t = Test::new().file(
        "pb.yaml",
        r#"
steps:
  - id: slow
    timeout: 300ms
    action: shell
    with: {command: [sh, -c, "sleep 2 && touch late"]}
"#,
    );
    let out = t.run(&["run", "pb.yaml"]);
    out.code(1).stdout_has("timed out after 300ms");
    // The shell's child `sleep` must have died with it, or it would touch the file.
    std::thread::sleep(std::time::Duration::from_millis(2500));
    assert!(
        !t.path().join("late").exists(),
        "the command outlived its timeout"
    );
}

#[test]
fn a_timeout_interrupts_a_running_sql_statement() {
    let t = Test::new().db("app.db", "CREATE TABLE t(x);").file(
        "pb.yaml",
        r#"
steps:
  - id: endless
    timeout: 300ms
    action: sqlite.query
    with:
      db: app.db
      sql: "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c) SELECT count(*) FROM c"
"#,
    );
    t.run(&["run", "pb.yaml"])
        .code(1)
        .stdout_has("timed out after 300ms");
}

#[test]
fn an_always_step_sees_that_the_run_failed() {
    let t = Test::new().file(
        "pb.yaml",
        r#"
steps:
  - id: breaks
    action: shell
    with: {command: [sh, -c, "echo disk on fire >&2; exit 7"]}
  - id: skipped-by-failure
    action: shell
    with: {command: [touch, not-reached]}
always:
  - id: record
    action: shell
    with:
      command: [sh, -c, 'printf "%s|%s|%s" "$1" "$2" "$3" > outcome', _, "{{ run.status }}", "{{ run.failed_step }}", "{{ run.error }}"]
"#,
    );
    t.run(&["run", "pb.yaml"]).code(1);
    assert_eq!(
        std::fs::read_to_string(t.path().join("outcome")).unwrap(),
        "failed|breaks|`sh` exited with code 7: disk on fire"
    );
    assert!(!t.path().join("not-reached").exists());
}

#[test]
fn an_always_step_sees_success_too() {
    let t = Test::new().file(
        "pb.yaml",
        "steps:\n  - id: fine\n    action: shell\n    with: {command: [\"true\"]}\nalways:\n  - id: record\n    action: shell\n    with: {command: [sh, -c, 'echo $1 > outcome', _, \"{{ run.status }}\"]}\n",
    );
    t.run(&["run", "pb.yaml"]).code(0);
    assert_eq!(
        std::fs::read_to_string(t.path().join("outcome")).unwrap(),
        "succeeded\n"
    );
}

#[test]
fn skip_if_marks_a_step_already_done_and_does_not_run_it() {
    let t = Test::new().file("done-marker", "").file(
        "pb.yaml",
        r#"
steps:
  - id: once
    skip_if:
      - name: the marker exists
        action: shell
        with: {command: [test, -e, done-marker], read_only: true}
    action: shell
    with: {command: [touch, ran]}
"#,
    );
    let out = t.run(&["run", "pb.yaml"]);
    out.code(0).stdout_has("skip_if: already done");
    assert!(!t.path().join("ran").exists());
    assert_eq!(out.finished("once")["status"], "skipped");
}

#[test]
fn when_false_skips_the_step() {
    let t = Test::new().file(
        "pb.yaml",
        r#"
vars:
  severity: minor
steps:
  - id: page
    when: "severity == 'critical'"
    action: shell
    with: {command: [touch, paged]}
"#,
    );
    t.run(&["run", "pb.yaml"])
        .code(0)
        .stdout_has("- page: does not apply (-v: why)");
    let out = t.run(&["run", "pb.yaml", "-v"]);
    out.code(0)
        .stdout_has("when: `severity == 'critical'` is false");
    assert!(!t.path().join("paged").exists());
    t.run(&["run", "pb.yaml", "--var", "severity=critical"])
        .code(0);
    assert!(t.path().join("paged").exists());
}

#[test]
fn outputs_of_earlier_steps_are_in_scope() {
    let t = Test::new()
        .db("app.db", "CREATE TABLE images(id INTEGER PRIMARY KEY); INSERT INTO images DEFAULT VALUES; INSERT INTO images DEFAULT VALUES;")
        .file(
            "pb.yaml",
            r#"
steps:
  - id: count
    action: sqlite.query
    with: {db: app.db, sql: "SELECT count(*) AS n FROM images"}
  - id: say
    action: shell
    with: {command: [sh, -c, 'echo "$1" > said', _, "images={{ steps.count.rows[0].n }}"]}
"#,
        );
    t.run(&["run", "pb.yaml"]).code(0);
    assert_eq!(
        std::fs::read_to_string(t.path().join("said")).unwrap(),
        "images=2\n"
    );
}

/// Without a terminal and without --yes, a run that would ask is refused
/// before its first step: nothing runs, no run directory, no e-mail.
#[test]
fn a_run_that_would_ask_without_a_terminal_or_yes_is_refused_before_its_first_step() {
    let t = Test::new().file(
        "pb.yaml",
        "steps:\n  - id: first\n    action: shell\n    with: {command: [touch, first]}\n  - id: assess\n    action: confirm\n    with: {message: Have you assessed the impact?}\n  - id: drop\n    confirm: Really drop it?\n    action: shell\n    with: {command: [touch, dropped]}\n",
    );
    t.run(&["run", "pb.yaml"]).code(2).stderr_is(
        "error: pb.yaml asks the operator to confirm (steps assess, drop), but there is no terminal to ask on and no --yes\n  \
         help: nothing was done; run it on a terminal, or pass --yes to confirm them in advance\n",
    );
    assert!(!t.path().join("first").exists(), "a step ran");
    assert!(
        !t.path().join(".runbook").exists(),
        "a run directory was made"
    );
    // A dry run asks nothing, so it needs neither.
    t.run(&["run", "pb.yaml", "--dry-run"]).code(0);
    t.run(&["run", "pb.yaml", "--yes"]).code(0);
    assert!(t.path().join("dropped").exists());
}

/// The emergency rollback without --yes, no terminal: refused before the
/// "rollback initiated" mail, with nothing stopped and nobody told.
#[test]
fn the_emergency_rollback_without_a_terminal_or_yes_tells_nobody_anything() {
    let t = Test::new();
    let app = crate::gofastcdn::Install::new(&t.path().join("app"), 5, 5);
    app.legacy_backup("20240501-120000");
    app.migrate().unwrap();
    let before = app.bytes();
    let pb = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/playbooks/emergency_rollback.yaml"
    );
    t.run(&[
        "run",
        pb,
        "--var",
        "root=app",
        "--var",
        "reason=x",
        "--var",
        "notify_to=lead@example.com",
        "--var",
        "stop_command=touch stopped",
    ])
    .code(2)
    .stderr_has("asks the operator to confirm (steps assess)");
    assert!(
        !t.path().join(".runbook").exists(),
        "a run directory (and outbox) was made"
    );
    assert!(!t.path().join("stopped").exists(), "the app was stopped");
    assert_eq!(app.bytes(), before);
}

/// `script` gives the child a real terminal, so the prompt is really asked.
#[test]
fn an_operator_who_answers_no_aborts_the_run_with_exit_3() {
    let t = Test::new().file(
        "pb.yaml",
        "steps:\n  - id: drop\n    confirm: Really drop it?\n    action: shell\n    with: {command: [touch, dropped]}\nalways:\n  - id: after\n    action: shell\n    with: {command: [sh, -c, 'echo $1 > outcome', _, \"{{ run.status }}\"]}\n",
    );
    let bin = env!("CARGO_BIN_EXE_runbook");
    let Some(out) = t.run_on_terminal(&format!("{bin} run pb.yaml"), "n\n") else {
        crate::support::skipped("util-linux `script` is not installed, so no terminal test ran");
        return;
    };
    assert_eq!(
        out.status.code(),
        Some(3),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    assert!(!t.path().join("dropped").exists());
    assert_eq!(
        std::fs::read_to_string(t.path().join("outcome")).unwrap(),
        "aborted\n"
    );
}

#[test]
fn a_step_past_its_own_deadline_is_recorded_and_the_run_goes_on() {
    let t = Test::new().file(
        "pb.yaml",
        "steps:\n  - id: slow\n    deadline: 100ms\n    action: shell\n    with: {command: [sleep, \"0.3\"]}\n  - id: after\n    action: shell\n    with: {command: [touch, after]}\n",
    );
    let out = t.run(&["run", "pb.yaml"]);
    out.code(0).stdout_has("its deadline passed");
    assert_eq!(out.finished("slow")["deadline_missed"], true);
    assert!(t.path().join("after").exists());
    assert!(out.report().contains("ok (its deadline passed)"));
}

/// The deadline is the playbook's: a template over its variables, here
/// keyed by a severity. A variable called `severity` means nothing by itself.
#[test]
fn the_playbooks_deadline_is_recorded_in_the_journal_and_report() {
    let pb = "deadline: \"{{ {'critical': '15m', 'major': '1h', 'minor': '4h'}[severity] }}\"\nvars:\n  severity: minor\nsteps:\n  - id: s\n    action: shell\n    with: {command: [\"true\"]}\n";
    let t = Test::new().file("pb.yaml", pb);
    let out = t.run(&["run", "pb.yaml", "--var", "severity=major"]);
    out.code(0)
        .stdout_has("deadline: 1h, by ")
        .stdout_has("deadline met");
    let journal = out.journal();
    assert_eq!(journal[0]["deadline"], "1h");
    assert_eq!(journal.last().unwrap()["deadline_met"], true);
    assert!(out.report().contains("- Deadline: **met**"));

    // Without `deadline:`, no deadline, whatever the variables are called.
    let t = t.file(
        "plain.yaml",
        "vars:\n  severity: critical\nsteps:\n  - id: s\n    action: shell\n    with: {command: [\"true\"]}\n",
    );
    let out = t.run(&["run", "plain.yaml"]);
    out.code(0);
    assert!(!out.stdout.contains("deadline"), "{}", out.stdout);
    assert_eq!(out.journal()[0]["deadline"], serde_json::Value::Null);

    // One that is not a duration is found by `check`, where it is written.
    let t = t.file("bad.yaml", &pb.replace("'4h'", "'soon'"));
    t.run(&["check", "bad.yaml"])
        .code(2)
        .stderr_has("error: bad.yaml:1:11: `deadline` is `soon`, not a duration")
        .stderr_has("help: it must render to a duration such as `15m`");
}

/// `runbook run … | head -1`: the reader goes away after the first line;
/// the run goes on to its end and exits 0, without a panic.
#[test]
fn a_reader_that_goes_away_does_not_fail_the_run() {
    use std::io::BufRead as _;
    let t = Test::new().file(
        "pb.yaml",
        "steps:\n  - id: a\n    action: shell\n    with: {command: [\"true\"]}\n  - id: b\n    action: shell\n    with: {command: [touch, done]}\n",
    );
    let mut child = t
        .command(&["run", "pb.yaml"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut first = String::new();
    std::io::BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut first)
        .unwrap();
    assert!(first.starts_with("▶ pb"), "{first}");
    // The reader is gone: dropped with the BufReader.
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(t.path().join("done").exists());
}

/// Every subcommand whose reader has gone (`… | true`) ends quietly, exit 0.
#[test]
fn every_subcommand_on_a_closed_pipe_ends_quietly_with_exit_0() {
    let t = Test::new()
        .db("app.db", "CREATE TABLE t(x); INSERT INTO t VALUES (1);")
        .file(
            "playbooks/pb.yaml",
            "description: a playbook\nsteps:\n  - id: a\n    action: shell\n    with: {command: [\"true\"]}\n",
        );
    t.run(&["run", "playbooks/pb.yaml"]).code(0);
    t.run(&["backup", "create", "--db", "app.db", "--dir", "backups"])
        .code(0);
    let commands: &[&[&str]] = &[
        &["list", "--json"],
        &["list"],
        &["report", "latest"],
        &["report", "latest", "--format", "json"],
        &["schema"],
        &["graph", "playbooks/pb.yaml"],
        &["check", "--json", "playbooks/pb.yaml"],
        &["check", "playbooks/pb.yaml"],
        &["backup", "list", "--db", "app.db", "--dir", "backups"],
        &["completions", "bash"],
        &["man"],
        &["run", "playbooks/pb.yaml", "--json"],
    ];
    for args in commands {
        let mut child = t
            .command(args)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        // The reader goes away before the first byte.
        drop(child.stdout.take());
        let out = child.wait_with_output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!stderr.contains("panicked"), "{args:?}: {stderr}");
        assert_eq!(out.status.code(), Some(0), "{args:?}: {stderr}");
    }
}

/// No hash is computed from a secret: two runs that differ only in a
/// secret's value record the same plan fingerprint, and their dry runs the
/// same review fingerprint, so neither can be used to guess the secret.
#[test]
fn no_fingerprint_depends_on_a_secrets_value() {
    let pb = "vars:\n  token: {secret: true, required: true}\nsteps:\n  - id: use\n    action: shell\n    with: {command: [echo, \"{{ token }}\"]}\n  - id: after\n    action: sqlite.exec\n    with: {db: app.db, sql: \"INSERT INTO t VALUES (?)\", params: [\"{{ token }}\"]}\n";
    let plan_of = |secret: &str| {
        let t = Test::new()
            .db("app.db", "CREATE TABLE t(x);")
            .file("pb.yaml", pb)
            .env("RUNBOOK_SECRET_TOKEN", secret);
        let out = t.run(&["run", "pb.yaml"]);
        out.code(0);
        let plan = out.journal()[0]["plan"].as_str().unwrap().to_owned();
        let journal = std::fs::read_to_string(out.run_dir().join("journal.jsonl")).unwrap();
        assert!(!journal.contains(secret), "{journal}");
        let dry = t.run(&["run", "pb.yaml", "--dry-run"]);
        dry.code(0);
        let fp = dry
            .stdout
            .lines()
            .find_map(|l| l.strip_prefix("plan fingerprint: "))
            .unwrap()
            .split_whitespace()
            .next()
            .unwrap()
            .to_owned();
        (plan, fp)
    };
    assert_eq!(plan_of("Hunter2xyz"), plan_of("Other-999"));
}

/// A program a step starts inherits no secret (nor runbook's own
/// variables); a step that needs one gives it by `env:` or `stdin:`, never
/// in the command line.
#[test]
fn a_child_inherits_no_secret_and_gets_one_only_through_env_or_stdin() {
    let secret = "s3cr3t-for-the-child";
    let pb = r#"vars:
  token: {secret: true, required: true}
steps:
  - id: inherited
    action: shell
    with: {command: [sh, -c, "env > inherited.env"]}
  - id: by-env
    action: shell
    with:
      command: [sh, -c, "printf %s \"$TOKEN\" > by-env.txt"]
      env: {TOKEN: "{{ token }}"}
  - id: by-stdin
    action: shell
    with:
      command: [sh, -c, "cat > by-stdin.txt"]
      stdin: "{{ token }}"
"#;
    let t = Test::new()
        .file("pb.yaml", pb)
        .env("RUNBOOK_SECRET_TOKEN", secret)
        .env("RUNBOOK_SECRET_OTHER", "another-secret-value");
    let out = t.run(&["run", "pb.yaml"]);
    out.code(0);
    let env = std::fs::read_to_string(t.path().join("inherited.env")).unwrap();
    assert!(!env.contains("RUNBOOK_"), "the child inherited: {env}");
    assert!(!env.contains(secret) && !env.contains("another-secret-value"));
    assert_eq!(
        std::fs::read_to_string(t.path().join("by-env.txt")).unwrap(),
        secret
    );
    assert_eq!(
        std::fs::read_to_string(t.path().join("by-stdin.txt")).unwrap(),
        secret
    );
    // And it is still nowhere runbook writes.
    let journal = std::fs::read_to_string(out.run_dir().join("journal.jsonl")).unwrap();
    assert!(!journal.contains(secret), "{journal}");
    assert!(!out.stdout.contains(secret) && !out.stderr.contains(secret));
    assert!(!out.report().contains(secret));
}

/// A step's timeout covers rendering its arguments: a template that takes
/// longer than the whole timeout fails the step, and the program never runs.
#[test]
fn a_steps_timeout_covers_rendering_its_arguments() {
    let t = Test::new().file(
        "pb.yaml",
        "steps:\n  - id: slow\n    timeout: 10ms\n    action: shell\n    with: {command: [touch, \"{% for i in range(1000) %}{% for j in range(1000) %}{% endfor %}{% endfor %}made\"]}\n",
    );
    let out = t.run(&["run", "pb.yaml"]);
    out.code(1).stdout_has("timed out after 10ms");
    assert!(!t.path().join("made").exists(), "the program ran");
}

/// What an `always` step states about the deadline is what the run
/// records, however long the `always` steps themselves take: here the
/// message is written within the deadline and the run ends after it.
#[test]
fn the_always_steps_state_the_deadline_answer_the_run_records() {
    let pb = "deadline: 1s\nsteps:\n  - id: s\n    action: shell\n    with: {command: [\"true\"]}\nalways:\n  - id: say\n    action: shell\n    with: {command: [echo, \"met={{ run.deadline_met }}\"]}\n  - id: slow\n    action: shell\n    with: {command: [sleep, \"1.2\"]}\n";
    let t = Test::new().file("pb.yaml", pb);
    let out = t.run(&["run", "pb.yaml"]);
    let journal = out.journal();
    let recorded = &journal.last().unwrap()["deadline_met"];
    let said = out.finished("say")["outputs"]["stdout"]
        .as_str()
        .unwrap()
        .trim()
        .to_lowercase();
    assert_eq!(said, format!("met={recorded}"), "{}", out.stdout);
    assert_eq!(recorded, true);
}
