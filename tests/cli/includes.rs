//! `playbook:` steps: another playbook's steps inlined, in their own scope.

use crate::support::Test;

#[test]
fn an_include_cycle_is_reported_with_the_chain() {
    let t = Test::new()
        .file("a.yaml", "steps:\n  - id: to-b\n    playbook: sub/b.yaml\n")
        .file(
            "sub/b.yaml",
            "steps:\n  - id: back-to-a\n    playbook: ../a.yaml\n",
        );
    t.run(&["check", "a.yaml"])
        .code(2)
        .stderr_has("error: sub/b.yaml:3:15: include cycle: a.yaml → b.yaml → a.yaml");
}

#[test]
fn an_included_playbook_gets_its_vars_and_its_steps_are_named_under_the_include() {
    let t = Test::new()
        .file(
            "main.yaml",
            r#"
vars:
  root: install
steps:
  - id: inner
    playbook: lib/write.yaml
    vars:
      what: "hello from {{ root }}"
  - id: after
    action: assert
    with: {that: "steps.inner.steps.write.code == 0"}
"#,
        )
        .file(
            "lib/write.yaml",
            r#"
vars:
  root: default-root
  what: nothing
steps:
  - id: write
    action: shell
    with: {command: [sh, -c, 'echo "$1 $2" > written', _, "{{ what }}", "{{ root }}"]}
"#,
        );
    let out = t.run(&["run", "main.yaml"]);
    out.code(0);
    // `what` is passed by the include; `root` is inherited from the including playbook.
    assert_eq!(
        std::fs::read_to_string(t.path().join("written")).unwrap(),
        "hello from install install\n"
    );
    assert_eq!(out.finished("inner.write")["status"], "ok");
}

#[test]
fn a_missing_include_is_an_error_at_its_position() {
    let t = Test::new().file(
        "main.yaml",
        "steps:\n  - id: x\n    playbook: nowhere.yaml\n",
    );
    t.run(&["check", "main.yaml"])
        .code(2)
        .stderr_has("error: main.yaml:3:15: included playbook nowhere.yaml does not exist");
}

#[test]
fn passing_a_variable_the_included_playbook_does_not_declare_is_an_error() {
    let t = Test::new()
        .file("main.yaml", "steps:\n  - id: x\n    playbook: b.yaml\n    vars:\n      colour: red\n")
        .file("b.yaml", "vars:\n  color: blue\nsteps:\n  - id: y\n    action: shell\n    with: {command: [echo, \"{{ color }}\"]}\n");
    t.run(&["check", "main.yaml"])
        .code(2)
        .stderr_has("error: main.yaml:5:7: b.yaml declares no variable `colour`")
        .stderr_has("did you mean `color`?");
}

#[test]
fn a_failure_inside_an_include_fails_the_include_step_and_can_fall_back() {
    let t = Test::new()
        .file(
            "main.yaml",
            "steps:\n  - id: try\n    playbook: bad.yaml\n    fallback:\n      - id: plan-b\n        action: shell\n        with: {command: [touch, plan-b]}\n",
        )
        .file("bad.yaml", "steps:\n  - id: boom\n    action: shell\n    with: {command: [\"false\"]}\n");
    let out = t.run(&["run", "main.yaml"]);
    out.code(0);
    assert!(t.path().join("plan-b").exists());
    assert_eq!(out.finished("try.boom")["status"], "failed");
    assert_eq!(out.finished("try")["status"], "recovered");
}
