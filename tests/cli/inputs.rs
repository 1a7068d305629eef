//! Bad input anywhere is a clear `error:` and exit 2, never a panic.

use crate::support::Test;

#[track_caller]
fn assert_clean_error(stderr: &str) {
    assert!(stderr.starts_with("error: "), "not an error line: {stderr}");
    assert!(!stderr.contains("panicked"), "panic: {stderr}");
    assert!(!stderr.contains("RUST_BACKTRACE"), "debug dump: {stderr}");
}

#[test]
fn a_missing_playbook_file() {
    let t = Test::new();
    let out = t.run(&["run", "nope.yaml"]);
    out.code(2)
        .stderr_has("error: cannot read playbook nope.yaml: No such file or directory");
    assert_clean_error(&out.stderr);
}

#[test]
fn unreadable_yaml() {
    let t = Test::new().file("pb.yaml", "steps:\n  - id: a\n    with: {command: [echo\n");
    let out = t.run(&["check", "pb.yaml"]);
    out.code(2).stderr_has("error: pb.yaml:");
    assert_clean_error(&out.stderr);
}

#[test]
fn a_wrong_type_for_a_key() {
    let t = Test::new().file("pb.yaml", "steps:\n  - id: a\n    retries: many\n    action: shell\n    with: {command: [\"true\"]}\n");
    let out = t.run(&["check", "pb.yaml"]);
    out.code(2)
        .stderr_has("error: pb.yaml:3:14: `retries` must be a whole number from 0 to 1000");
    assert_clean_error(&out.stderr);
}

#[test]
fn steps_that_are_not_a_list() {
    let t = Test::new().file("pb.yaml", "steps: run everything\n");
    let out = t.run(&["check", "pb.yaml"]);
    out.code(2)
        .stderr_has("error: pb.yaml:1:8: `steps` must be a list, found a string");
    assert_clean_error(&out.stderr);
}

#[test]
fn a_var_without_equals() {
    let t = Test::new().file("pb.yaml", "vars:\n  reason: x\nsteps: []\n");
    let out = t.run(&["run", "pb.yaml", "--var", "reason"]);
    out.code(2).stderr_has("`reason` is not KEY=VALUE");
    assert_clean_error(&out.stderr);
}

#[test]
fn a_var_that_no_playbook_declares() {
    let t = Test::new().file("pb.yaml", "vars:\n  severity: minor\nsteps: []\n");
    let out = t.run(&["run", "pb.yaml", "--var", "severty=critical"]);
    out.code(2)
        .stderr_has("error: --var severty: no playbook here declares a variable `severty`")
        .stderr_has("did you mean `severity`?");
    assert_clean_error(&out.stderr);
    assert!(
        !t.path().join(".runbook").exists(),
        "an invalid run made a run directory"
    );
}

#[test]
fn a_required_var_left_out() {
    let t = Test::new().file(
        "pb.yaml",
        "vars:\n  reason: {required: true, description: what went wrong}\nsteps: []\n",
    );
    let out = t.run(&["run", "pb.yaml"]);
    out.code(2)
        .stderr_has("error: pb.yaml:2:3: variable `reason` is required but has no value")
        .stderr_has("pass it with `--var reason=VALUE` (what went wrong)");
    assert_clean_error(&out.stderr);
}

#[test]
fn a_value_outside_its_choices() {
    let t = Test::new().file(
        "pb.yaml",
        "vars:\n  severity: {default: critical, choices: [critical, major, minor]}\nsteps: []\n",
    );
    t.run(&["run", "pb.yaml", "--var", "severity=majr"])
        .code(2)
        .stderr_has("variable `severity` is `majr`, which is not one of: critical, major, minor")
        .stderr_has("did you mean `major`?");
}

#[test]
fn an_unknown_subcommand_is_a_usage_error() {
    let out = Test::new().run(&["rnu"]);
    out.code(2);
    assert_clean_error(&out.stderr);
}

#[test]
fn a_variable_default_may_use_earlier_variables_only() {
    let t = Test::new().file(
        "pb.yaml",
        "vars:\n  db: \"{{ root }}/db_data/main.db\"\n  root: .\nsteps: []\n",
    );
    t.run(&["check", "pb.yaml"])
        .code(2)
        .stderr_has("error: pb.yaml:2:11: undefined variable `root`")
        .stderr_has("declare `root` in `vars` above this one");
}

#[test]
fn a_var_given_on_the_command_line_flows_into_defaults() {
    let t = Test::new().file(
        "pb.yaml",
        "vars:\n  root: .\n  db: \"{{ root }}/db_data/main.db\"\nsteps:\n  - id: s\n    action: shell\n    with: {command: [sh, -c, 'echo $1 > db-path', _, \"{{ db }}\"]}\n",
    );
    t.run(&["run", "pb.yaml", "--var", "root=/srv/cdn"]).code(0);
    assert_eq!(
        std::fs::read_to_string(t.path().join("db-path")).unwrap(),
        "/srv/cdn/db_data/main.db\n"
    );
}
