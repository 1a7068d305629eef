//! `runbook check`: every problem at once, each with file:line:column.

use crate::support::Test;

#[test]
fn three_mistakes_are_reported_together_with_positions() {
    let t = Test::new().file(
        "playbooks/x.yaml",
        r#"vars:
  db: app.db
steps:
  - id: one
    actoin: shell
    with: {command: [echo, hi]}
  - id: two
    action: sqlite.query
    with:
      db: "{{ dbb }}"
      sql: SELECT 1
  - id: three
    action: shel
"#,
    );
    let out = t.run(&["check", "playbooks/x.yaml"]);
    out.code(2);
    let errors: Vec<&str> = out
        .stderr
        .lines()
        .filter(|l| l.starts_with("error:"))
        .collect();
    assert_eq!(
        errors,
        [
            "error: playbooks/x.yaml:5:5: unknown key `actoin` in a step",
            "error: playbooks/x.yaml:10:15: undefined variable `dbb`",
            "error: playbooks/x.yaml:13:13: unknown action `shel`",
        ]
    );
    assert!(out.stdout.is_empty());
}

#[test]
fn unknown_key_is_shown_with_its_line_a_caret_and_a_suggestion() {
    let t = Test::new().file(
        "pb.yaml",
        "steps:\n  - id: one\n    actoin: shell\n    with: {command: [echo, hi]}\n",
    );
    t.run(&["check", "pb.yaml"]).code(2).stderr_is(
        "error: pb.yaml:3:5: unknown key `actoin` in a step
  |
3 |     actoin: shell
  |     ^
  help: did you mean `action`?
",
    );
}

#[test]
fn undefined_variable_is_found_before_anything_runs() {
    let t = Test::new().file(
        "pb.yaml",
        "steps:\n  - id: first\n    action: shell\n    with: {command: [touch, ran]}\n  - id: second\n    action: shell\n    with: {command: [echo, \"{{ reasn }}\"]}\nvars:\n  reason: x\n",
    );
    t.run(&["run", "pb.yaml"])
        .code(2)
        .stderr_has("error: pb.yaml:7:32: undefined variable `reasn`")
        .stderr_has("did you mean `reason`?");
    assert!(
        !t.path().join("ran").exists(),
        "a step ran although the playbook is invalid"
    );
}

#[test]
fn unknown_action_argument_points_at_the_argument() {
    let t = Test::new().file(
        "pb.yaml",
        "steps:\n  - id: q\n    action: sqlite.query\n    with:\n      db: app.db\n      sql: SELECT 1\n      parms: [1]\n",
    );
    t.run(&["check", "pb.yaml"])
        .code(2)
        .stderr_has("error: pb.yaml:7:7: invalid arguments for `sqlite.query`: unknown field `parms`, expected one of `db`, `sql`, `params`");
}

#[test]
fn wrong_argument_type_is_an_error_with_position() {
    let t = Test::new().file(
        "pb.yaml",
        "steps:\n  - id: s\n    action: shell\n    with:\n      command: [echo]\n      ok_codes: zero\n",
    );
    t.run(&["check", "pb.yaml"])
        .code(2)
        .stderr_has("error: pb.yaml:6:17: invalid arguments for `shell`: invalid type: string \"zero\", expected a sequence");
}

#[test]
fn duplicate_step_ids_are_reported() {
    let t = Test::new().file(
        "pb.yaml",
        "steps:\n  - id: a\n    action: shell\n    with: {command: [\"true\"]}\n    fallback:\n      - id: a\n        action: shell\n        with: {command: [\"true\"]}\n",
    );
    t.run(&["check", "pb.yaml"])
        .code(2)
        .stderr_has("error: pb.yaml:6:13: duplicate step id `a`");
}

#[test]
fn a_template_naming_a_step_that_does_not_exist_is_an_error() {
    let t = Test::new().file(
        "pb.yaml",
        "steps:\n  - id: count\n    action: shell\n    with: {command: [echo, \"{{ steps.cuont.stdout }}\"]}\n",
    );
    t.run(&["check", "pb.yaml"])
        .code(2)
        .stderr_has("error: pb.yaml:4:38: no step `cuont` in this playbook")
        .stderr_has("did you mean `count`?");
}

#[test]
fn a_template_syntax_error_is_reported() {
    let t = Test::new().file(
        "pb.yaml",
        "steps:\n  - id: s\n    action: shell\n    with: {command: [echo, \"{{ 1 + }}\"]}\n",
    );
    t.run(&["check", "pb.yaml"])
        .code(2)
        .stderr_has("error: pb.yaml:4:28: invalid template: syntax error");
}

#[test]
fn a_check_may_not_use_an_action_that_changes_things() {
    let t = Test::new().file(
        "pb.yaml",
        "steps:\n  - id: s\n    require:\n      - action: sqlite.exec\n        with: {db: a.db, sql: DELETE FROM t}\n    action: shell\n    with: {command: [\"true\"]}\n",
    );
    t.run(&["check", "pb.yaml"]).code(2).stderr_has(
        "error: pb.yaml:4:17: `sqlite.exec` can change things, so it cannot be a check",
    );
}

#[test]
fn a_valid_playbook_checks_ok() {
    let t = Test::new().file(
        "pb.yaml",
        "vars:\n  reason: {required: true}\nsteps:\n  - id: s\n    action: shell\n    with: {command: [echo, \"{{ reason }}\"]}\n",
    );
    t.run(&["check", "pb.yaml"])
        .code(0)
        .stdout_has("ok: pb.yaml (1 steps)");
}

#[test]
fn a_step_named_by_subscript_must_exist_too() {
    let t = Test::new().file(
        "pb.yaml",
        "steps:\n  - id: option-1\n    action: shell\n    with: {command: [\"true\"]}\n  - id: after\n    when: \"steps['option-l'].status == 'ok'\"\n    action: shell\n    with: {command: [\"true\"]}\n",
    );
    t.run(&["check", "pb.yaml"])
        .code(2)
        .stderr_has("error: pb.yaml:6:19: no step `option-l` in this playbook")
        .stderr_has("did you mean `option-1`?");
}

/// Facts are what mails and reports state: `check` refuses a template that
/// reads one nobody declares, and a fact that reads a step that does not
/// exist; a run records each fact's value, none where it could not be had.
#[test]
fn facts_are_checked_before_the_run_and_recorded_by_it() {
    let t = Test::new()
        .file("mail.txt", "Done: {{ run.facts.dnoe }}\n")
        .file(
            "bad.yaml",
            r#"steps:
  - id: a
    action: shell
    with: {command: ["true"]}
  - id: mail
    action: notify.email
    with: {template: mail.txt, subject: s, to: a@example.com, from: b@example.com}
facts:
  done: "steps.a.status == 'ok'"
  other: "steps.b.status == 'ok'"
"#,
        );
    let out = t.run(&["check", "bad.yaml"]);
    out.code(2);
    let errors: Vec<&str> = out
        .stderr
        .lines()
        .filter(|l| l.starts_with("error:") || l.trim_start().starts_with("help:"))
        .collect();
    assert_eq!(
        errors,
        [
            "error: bad.yaml:7:11: no fact `dnoe` is declared",
            "  help: did you mean `done`?",
            "error: bad.yaml:10:17: no step `b` in this playbook",
        ],
        "{}",
        out.stderr
    );

    let t = t.file(
        "good.yaml",
        r#"steps:
  - id: a
    action: shell
    with: {command: ["true"]}
  - id: b
    when: "false"
    action: shell
    with: {command: ["true"]}
facts:
  done: "steps.a.status == 'ok'"
  b_code: "steps.b.code"
"#,
    );
    let out = t.run(&["run", "good.yaml"]);
    out.code(0);
    let finished = out.journal().last().cloned().unwrap();
    assert_eq!(finished["facts"]["done"], true);
    assert_eq!(
        finished["facts"]["b_code"],
        serde_json::Value::Null,
        "{finished}"
    );
    let report = out.report();
    assert!(
        report.contains("- Fact `b_code`: not established"),
        "{report}"
    );
    assert!(report.contains("- Fact `done`: `true`"), "{report}");
}

/// A field of `run` that does not exist is found by `check`, not at 3 a.m.
#[test]
fn an_unknown_field_of_run_is_an_error_with_a_suggestion() {
    let t = Test::new().file(
        "pb.yaml",
        "steps:\n  - id: say\n    action: shell\n    with: {command: [echo, \"{{ run.statuss }}\"]}\n",
    );
    let out = t.run(&["check", "pb.yaml"]);
    out.code(2)
        .stderr_has("error: pb.yaml:4:36: `run` has no field `statuss`")
        .stderr_has("help: did you mean `status`?");
}

/// `report:` makes report.md from the playbook's own template, which reads
/// the run summary; `runbook report` renders it again from the journal.
/// `check` finds a field that does not exist and a name that is not `run`.
#[test]
fn a_playbooks_report_template_renders_the_summary_and_is_checked() {
    let t = Test::new()
        .file(
            "pb.yaml",
            r#"report: templates/short.md
steps:
  - id: a
    action: shell
    with: {command: ["true"]}
  - id: b
    action: shell
    with: {command: ["false"]}
    fallback:
      - id: c
        action: shell
        with: {command: ["true"]}
facts:
  two: "1 + 1"
"#,
        )
        .file(
            "templates/short.md",
            "{{ run.playbook }}: {{ run.status }}; {{ run.steps|length }} steps; two={{ run.facts.two }}\n\
             {% for r in run.recoveries %}{{ r.step }} by {{ r.by }}\n{% endfor %}",
        );
    t.run(&["check", "pb.yaml"]).code(0);
    let out = t.run(&["run", "pb.yaml"]);
    out.code(0);
    let written = out.report();
    assert_eq!(written, "pb: succeeded; 3 steps; two=2\nb by c\n");
    let again = t.run(&["report", "latest"]);
    again.code(0);
    assert_eq!(again.stdout, written);
    let js = t.run(&["report", "latest", "--format", "json"]);
    let v: serde_json::Value = serde_json::from_str(&js.stdout).unwrap();
    assert_eq!(v["recoveries"][0]["by"], "c");
    assert_eq!(v["facts"]["two"], 2);

    let t = t.file(
        "templates/short.md",
        "{{ run.stauts }} {{ run.facts.three }}",
    );
    t.run(&["check", "pb.yaml"])
        .code(2)
        .stderr_has("error: pb.yaml:1:9: `run` has no field `stauts`")
        .stderr_has("help: did you mean `status`?")
        .stderr_has("no fact `three` is declared");
    let t = t.file("templates/short.md", "{{ steps.a.code }}");
    t.run(&["check", "pb.yaml"])
        .code(2)
        .stderr_has("reads `steps.a.code`")
        .stderr_has("a report reads only `run`");
    let t = t.file("pb.yaml", "report: nowhere.md\nsteps:\n  - id: a\n    action: shell\n    with: {command: [\"true\"]}\n");
    t.run(&["check", "pb.yaml"])
        .code(2)
        .stderr_has("error: pb.yaml:1:9: template ")
        .stderr_has("nowhere.md: cannot read it");
}

/// A template that would loop for hours stops with an error where it is
/// written, in `check` as in a run, instead of hanging both.
#[test]
fn a_template_that_does_not_end_is_an_error_with_its_position() {
    let looping =
        "{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}";
    let t = Test::new()
        .file(
            "default.yaml",
            &format!("vars:\n  x: \"{looping}\"\nsteps:\n  - id: a\n    action: shell\n    with: {{command: [\"true\"]}}\n"),
        )
        .file(
            "argument.yaml",
            &format!("steps:\n  - id: a\n    action: shell\n    with: {{command: [echo, \"{looping}\"]}}\n"),
        );
    t.run(&["check", "default.yaml"])
        .code(2)
        .stderr_has("error: default.yaml:2:6: the template did not finish within");
    let out = t.run(&["run", "argument.yaml"]);
    out.code(1)
        .stdout_has("run failed at step a: the template did not finish within");
}

/// Includes nested 3,000 deep: an error naming the depth and the chain,
/// not a stack overflow.
#[test]
fn includes_nested_too_deep_are_an_error_not_a_crash() {
    let mut t = Test::new();
    for i in 0..3000 {
        t = t.file(
            &format!("p{i}.yaml"),
            &format!("steps:\n  - id: s{i}\n    playbook: p{}.yaml\n", i + 1),
        );
    }
    let t = t.file(
        "p3000.yaml",
        "steps:\n  - id: last\n    action: shell\n    with: {command: [\"true\"]}\n",
    );
    t.run(&["check", "p0.yaml"])
        .code(2)
        .stderr_has("includes nested 32 deep: p0.yaml → p1.yaml → p2.yaml → … → ")
        .stderr_has("help: playbooks may include others at most 32 levels deep");
    t.run(&["run", "p0.yaml"]).code(2);
}

/// A playbook that includes a file that is not one (here a stand-in for
/// /etc/shadow, under sudo) gets its path and the reason, never a byte of
/// what it holds — not a line, not a key. Linked to a `.yaml` name, the
/// same: the file it really is counts.
#[test]
fn including_a_file_that_is_not_a_playbook_shows_none_of_its_content() {
    let hash = "$y$j9T$s3cr3thash";
    let t = Test::new()
        .file("shadow", &format!("root:{hash}:19000:0:99999:7:::\n"))
        .file("pb.yaml", "steps:\n  - id: x\n    playbook: shadow\n")
        .file(
            "linked.yaml",
            "steps:\n  - id: x\n    playbook: looks-like.yaml\n",
        );
    std::os::unix::fs::symlink(t.path().join("shadow"), t.path().join("looks-like.yaml")).unwrap();
    for args in [
        &["check", "pb.yaml"][..],
        &["check", "linked.yaml"],
        &["check", "shadow"],
        &["run", "pb.yaml"],
        &["run", "pb.yaml", "--dry-run"],
    ] {
        let out = t.run(args);
        out.code(2)
            .stderr_has("is not a playbook: reading it as one found");
        assert!(
            !out.stderr.contains("j9T") && !out.stdout.contains("j9T"),
            "{args:?}: {}",
            out.stderr
        );
        assert!(!out.stderr.contains("root"), "{args:?}: {}", out.stderr);
    }
}

/// A secret rendered into a command line is said where it is written, with
/// the way out; the playbook still checks (and runs).
#[test]
fn a_secret_in_a_command_line_is_a_warning_with_its_position() {
    let t = Test::new().file(
        "pb.yaml",
        "vars:\n  token: {secret: true, default: x}\nsteps:\n  - id: call\n    action: shell\n    with: {command: [echo, \"admin:{{ token }}\"]}\n  - id: fine\n    action: shell\n    with:\n      command: [sh, -c, 'echo \"$T\"']\n      env: {T: \"{{ token }}\"}\n",
    );
    t.run(&["check", "pb.yaml"])
        .code(0)
        .stderr_has("warning: pb.yaml:6:28: the secret `token` is put in the command line")
        .stderr_has("help: give it to the program through `env:`");
    let out = t.run(&["check", "pb.yaml"]);
    assert_eq!(out.stderr.matches("warning:").count(), 1, "{}", out.stderr);
    t.run(&["run", "pb.yaml"])
        .code(0)
        .stderr_has("warning: pb.yaml:6:28: the secret `token`");
}

/// A mistyped include gets a did-you-mean among the playbooks beside it;
/// a duplicate id says where the first one is.
#[test]
fn a_mistyped_include_and_a_duplicate_id_say_what_was_meant() {
    let t = Test::new()
        .file(
            "rollback-option-2.yaml",
            "steps:\n  - id: x\n    action: shell\n    with: {command: [\"true\"]}\n",
        )
        .file(
            "pb.yaml",
            "steps:\n  - id: a\n    playbook: rollback-option2.yaml\n  - id: b\n    action: shell\n    with: {command: [\"true\"]}\n  - id: b\n    action: shell\n    with: {command: [\"true\"]}\n",
        );
    t.run(&["check", "pb.yaml"])
        .code(2)
        .stderr_has("error: pb.yaml:3:15: included playbook rollback-option2.yaml does not exist")
        .stderr_has("help: did you mean `rollback-option-2.yaml`?")
        .stderr_has("error: pb.yaml:7:9: duplicate step id `b` (the first is at line 4, column 9)");
}

/// Warnings are said as errors are: a secret in one is `***`, and a
/// playbook included twice warns once.
#[test]
fn warnings_are_redacted_and_said_once_like_errors() {
    let t = Test::new()
        .env("RUNBOOK_SECRET_TOOL", "hunter2-cli")
        .file(
            "inner.yaml",
            "vars:\n  tool: {secret: true}\nsteps:\n  - id: go\n    action: shell\n    with: {command: [\"{{ tool }}\"]}\n",
        )
        .file(
            "outer.yaml",
            "steps:\n  - id: one\n    playbook: inner.yaml\n  - id: two\n    playbook: inner.yaml\n",
        );
    let out = t.run(&["check", "outer.yaml"]);
    out.code(0);
    assert!(!out.stderr.contains("hunter2"), "{}", out.stderr);
    assert_eq!(
        out.stderr.matches("is not on PATH here").count(),
        1,
        "{}",
        out.stderr
    );
}

/// `runbook report` renders with the playbook's own template wherever it is
/// run from: the run records where the template really is.
#[test]
fn report_finds_the_playbooks_template_from_another_directory() {
    let t = Test::new()
        .file("pb.yaml", "report: short.md\nsteps:\n  - id: a\n    action: shell\n    with: {command: [\"true\"]}\n")
        .file("short.md", "short: {{ run.status }}\n")
        .file("elsewhere/.keep", "");
    let out = t.run(&["run", "pb.yaml"]);
    out.code(0);
    let dir = out.run_dir();
    let again = t
        .command(&["report".as_ref(), dir.as_os_str()])
        .current_dir(t.path().join("elsewhere"))
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&again.stdout), "short: succeeded\n");
    assert!(
        again.stderr.is_empty(),
        "{}",
        String::from_utf8_lossy(&again.stderr)
    );
}
