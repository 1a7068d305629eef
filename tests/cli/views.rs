//! What a run leaves and shows: the run directory, the journal, the
//! report, `--json`, and `list`.

use crate::support::Test;

const PLAYBOOK: &str = r#"
name: two steps
description: |
  Says hello, then fails over.
  A second line that list does not show.
steps:
  - id: hello
    name: Say hello
    action: shell
    with: {command: [echo, hello]}
  - id: flaky
    action: shell
    with: {command: ["false"]}
    fallback:
      - id: steady
        action: shell
        with: {command: ["true"]}
"#;

#[test]
fn a_run_writes_a_journal_of_one_event_per_line() {
    let t = Test::new().file("pb.yaml", PLAYBOOK);
    let out = t.run(&["run", "pb.yaml"]);
    out.code(0);
    // No terminal: plain lines, no colour, no spinner.
    assert!(
        !out.stdout.contains('\u{1b}') && !out.stdout.contains('\r'),
        "{:?}",
        out.stdout
    );
    assert!(
        !out.stderr.contains('\u{1b}') && !out.stderr.contains('\r'),
        "{:?}",
        out.stderr
    );
    let kinds: Vec<String> = out
        .journal()
        .iter()
        .map(|e| {
            let kind = e["event"].as_str().unwrap().to_owned();
            match e["step"].as_str() {
                Some(step) => format!("{kind} {step}"),
                None => kind,
            }
        })
        .collect();
    assert_eq!(
        kinds,
        [
            "run_started",
            "step_started hello",
            "step_finished hello",
            "step_started flaky",
            "fallback_started flaky",
            "step_started steady",
            "step_finished steady",
            "step_finished flaky",
            "run_finished",
        ]
    );
    let dir = out.run_dir();
    let name = dir.file_name().unwrap().to_string_lossy().into_owned();
    assert!(name.ends_with("Z-pb"), "run directory named {name}");
    assert!(dir.join("outbox").is_dir());
    out.stdout_has(&format!("run directory: .runbook/runs/{name}"));
    out.stdout_has(&format!("report: .runbook/runs/{name}/report.md"));
}

#[test]
fn the_report_is_a_timeline_with_outcomes_and_outputs() {
    let t = Test::new().file("pb.yaml", PLAYBOOK);
    let out = t.run(&["run", "pb.yaml"]);
    let report = out.report();
    assert!(report.starts_with("# Run of `two steps`\n"), "{report}");
    assert!(report.contains("- Outcome: **succeeded**"), "{report}");
    assert!(report.contains("| `hello` | Say hello | ok |"), "{report}");
    assert!(
        report.contains("| `flaky` | flaky | recovered by `steady` |"),
        "{report}"
    );
    assert!(report.contains("\"stdout\": \"hello\\n\""), "{report}");
    assert!(
        report.contains(
            "| `flaky` | fallback to `steady` | after `flaky` failed: `false` exited with code 1 |"
        ),
        "{report}"
    );
}

#[test]
fn json_prints_one_event_per_line_and_nothing_else() {
    let t = Test::new().file("pb.yaml", PLAYBOOK);
    let out = t.run(&["run", "pb.yaml", "--json"]);
    out.code(0);
    let events: Vec<serde_json::Value> = out
        .stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON: {l:?}: {e}")))
        .collect();
    assert_eq!(events.first().unwrap()["event"], "run_started");
    assert_eq!(events.last().unwrap()["event"], "run_finished");
    assert_eq!(events.last().unwrap()["status"], "succeeded");
}

#[test]
fn two_runs_in_the_same_second_get_their_own_directories() {
    let t = Test::new().file(
        "pb.yaml",
        "steps:\n  - id: s\n    action: shell\n    with: {command: [\"true\"]}\n",
    );
    t.run(&["run", "pb.yaml"]).code(0);
    t.run(&["run", "pb.yaml"]).code(0);
    t.run(&["run", "pb.yaml"]).code(0);
    let n = std::fs::read_dir(t.path().join(".runbook/runs"))
        .unwrap()
        .count();
    assert_eq!(n, 3);
}

#[test]
fn secret_values_are_masked_in_the_journal_report_and_output() {
    let t = Test::new()
        .env("RUNBOOK_SECRET_TOKEN", "hunter2-s3cret")
        .file(
            "pb.yaml",
            "vars:\n  token: \"\"\n  password: {secret: true, default: pa55word}\nsteps:\n  - id: use\n    action: shell\n    with: {command: [echo, \"{{ token }} {{ password }}\"]}\n",
        );
    let out = t.run(&["run", "pb.yaml"]);
    out.code(0);
    let dir = out.run_dir();
    for file in ["journal.jsonl", "report.md"] {
        let text = std::fs::read_to_string(dir.join(file)).unwrap();
        assert!(
            !text.contains("hunter2-s3cret") && !text.contains("pa55word"),
            "{file} leaks a secret:\n{text}"
        );
        assert!(
            text.contains("*** ***"),
            "{file} lacks the masked output:\n{text}"
        );
    }
    assert!(!out.stdout.contains("hunter2-s3cret") && !out.stderr.contains("hunter2-s3cret"));
}

#[test]
fn list_shows_playbooks_with_the_first_line_of_their_description() {
    let t = Test::new()
        .file("playbooks/b.yaml", PLAYBOOK)
        .file("playbooks/a.yml", "description: The first one\nsteps: []\n")
        .file("playbooks/broken.yaml", "steps: [\n")
        .file("playbooks/notes.txt", "not a playbook");
    let out = t.run(&["list"]);
    out.code(0);
    assert_eq!(
        out.stdout,
        "playbooks/a.yml        The first one\nplaybooks/b.yaml       Says hello, then fails over.\nplaybooks/broken.yaml  (invalid: 1 problem(s); run `runbook check playbooks/broken.yaml`)\n"
    );
}

#[test]
fn graph_draws_steps_includes_fallbacks_and_always_steps() {
    let pb = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/playbooks/emergency_rollback.yaml"
    );
    let t = Test::new();
    let out = t.run(&["graph", pb]);
    out.code(0).stdout_has("flowchart TD\n");
    out.stdout_has(
        "subgraph g_s_option_1[\"option-1: Option 1: built-in rollback (rollback-option-1.yaml)\"]",
    )
    .stdout_has("s_option_1_no_marker_row -. fails .-> s_option_2_in")
    .stdout_has("s_option_2_after -. fails .-> s_option_3_in")
    .stdout_has("s_option_3_compare --> s_verify_in")
    .stdout_has("s_probe == always ==> s_report_in");
    let dot = t.run(&["graph", pb, "--format", "dot"]);
    dot.code(0)
        .stdout_has("digraph runbook {")
        .stdout_has("subgraph cluster_g_s_option_2 {");
    // The committed picture is of the playbook as it is now.
    let committed =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/flow.md")).unwrap();
    assert!(
        committed.contains(out.stdout.trim_end()),
        "docs/flow.md is out of date: regenerate it with runbook graph"
    );
}

#[test]
fn completions_and_the_man_page_come_from_the_command_line_definition() {
    let t = Test::new();
    // The script hands each TAB to runbook; runbook answers from its definition.
    t.run(&["completions", "bash"])
        .code(0)
        .stdout_has("_clap_complete_runbook()")
        .stdout_has("RUNBOOK_COMPLETE=\"bash\"");
    t.run(&["completions", "zsh"])
        .code(0)
        .stdout_has("#compdef runbook");
    let asked = Test::new()
        .env("RUNBOOK_COMPLETE", "bash")
        .env("_CLAP_COMPLETE_INDEX", "2")
        .run(&["--", "runbook", "run", "--expect"]);
    asked.code(0).stdout_has("--expect-plan");
    // Another tool's `COMPLETE` in the environment changes nothing.
    let stray = Test::new().env("COMPLETE", "1").run(&["schema"]);
    stray.code(0).stdout_has("\"$schema\"");
    let man = t.run(&["man"]);
    man.code(0).stdout_has(".TH runbook 1").stdout_has("resume");
}

#[test]
fn every_event_kind_is_documented_and_every_emitted_event_is_a_known_kind() {
    let docs =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/events.md")).unwrap();
    for kind in runbook::event::KINDS {
        assert!(
            docs.contains(&format!("## `{kind}`")),
            "docs/events.md has no section for `{kind}`"
        );
    }
    let t = Test::new().file(
        "pb.yaml",
        "steps:\n  - id: a\n    retries: 1\n    retry_delay: 1ms\n    action: shell\n    with: {command: [\"false\"]}\n    fallback:\n      - id: b\n        require: [\"true\"]\n        action: shell\n        with: {command: [\"true\"]}\nalways:\n  - id: c\n    action: shell\n    with: {command: [\"true\"]}\n",
    );
    let out = t.run(&["run", "pb.yaml", "--json"]);
    out.code(0);
    let kinds: std::collections::BTreeSet<String> = out
        .stdout
        .lines()
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(l).unwrap()["event"]
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect();
    let known: std::collections::BTreeSet<String> = runbook::event::KINDS
        .iter()
        .map(|k| (*k).to_owned())
        .collect();
    assert_eq!(
        kinds, known,
        "this run should emit every kind, and only known ones"
    );
}

#[test]
fn check_and_list_speak_json_for_tools() {
    let t = Test::new()
        .file("playbooks/good.yaml", "name: good\ndescription: Fine\nsteps:\n  - id: s\n    action: shell\n    with: {command: [\"true\"]}\n")
        .file("playbooks/bad.yaml", "steps:\n  - id: s\n    actoin: shell\n");
    let out = t.run(&[
        "check",
        "--json",
        "playbooks/good.yaml",
        "playbooks/bad.yaml",
    ]);
    out.code(2);
    let lines: Vec<serde_json::Value> = out
        .stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines[0]["ok"], true);
    assert_eq!(lines[0]["steps"], 1);
    assert_eq!(lines[1]["ok"], false);
    assert_eq!(lines[1]["problems"][0]["line"], 3);
    assert_eq!(lines[1]["problems"][0]["column"], 5);
    assert_eq!(
        lines[1]["problems"][0]["message"],
        "unknown key `actoin` in a step"
    );
    let list = t.run(&["list", "--json"]);
    list.code(0);
    let rows: Vec<serde_json::Value> = list
        .stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(rows[0]["file"], "playbooks/bad.yaml");
    assert_eq!(rows[0]["valid"], false);
    assert_eq!(
        rows[0]["problems"],
        lines[1]["problems"].as_array().unwrap().len(),
        "list and check count differently"
    );
    assert_eq!(rows[1]["name"], "good");
    assert_eq!(rows[1]["description"], "Fine");

    // A playbook that parses but that check rejects (an undefined
    // variable) is invalid in the list too.
    let t = t.file(
        "playbooks/undefined.yaml",
        "description: Looks fine\nsteps:\n  - id: s\n    action: shell\n    with: {command: [echo, \"{{ nope }}\"]}\n",
    );
    let checked = t.run(&["check", "--json", "playbooks/undefined.yaml"]);
    let checked: serde_json::Value = serde_json::from_str(checked.stdout.trim()).unwrap();
    assert_eq!(checked["ok"], false);
    let list = t.run(&["list", "--json"]);
    let row = list
        .stdout
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .find(|r| r["file"] == "playbooks/undefined.yaml")
        .unwrap();
    assert_eq!(row["valid"], false, "{row}");
    assert_eq!(
        row["problems"],
        checked["problems"].as_array().unwrap().len()
    );
}

#[test]
fn the_committed_schema_is_current_and_every_shipped_playbook_validates_against_it() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let committed = std::fs::read_to_string(root.join("docs/playbook.schema.json")).unwrap();
    let t = Test::new();
    let out = t.run(&["schema"]);
    out.code(0);
    assert_eq!(
        out.stdout, committed,
        "docs/playbook.schema.json is out of date: runbook schema > docs/playbook.schema.json"
    );
    let schema: serde_json::Value = serde_json::from_str(&committed).unwrap();
    // The schema and the parser know the same keys.
    for (part, keys) in runbook::schema::parser_keys() {
        let props = match part {
            "playbook" => &schema["properties"],
            "check" => &schema["definitions"]["check"]["anyOf"][1]["properties"],
            "variable" => &schema["definitions"]["variable"]["anyOf"][1]["properties"],
            _ => &schema["definitions"]["step"]["properties"],
        };
        let mut in_schema: Vec<&str> = props
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect();
        let mut in_parser = keys.to_vec();
        in_schema.sort_unstable();
        in_parser.sort_unstable();
        assert_eq!(
            in_schema, in_parser,
            "the {part} keys differ between the schema and the parser"
        );
    }
    let validator = jsonschema::draft7::new(&schema).expect("a valid draft-07 schema");
    let mut files: Vec<std::path::PathBuf> = std::fs::read_dir(root.join("playbooks"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.push(root.join("examples/first-playbook.yaml"));
    for file in files {
        let text = std::fs::read_to_string(&file).unwrap();
        assert!(
            text.starts_with("# yaml-language-server: $schema=../docs/playbook.schema.json\n"),
            "{} lacks the schema comment",
            file.display()
        );
        let doc: serde_json::Value = serde_saphyr::from_str(&text).unwrap();
        let errors: Vec<String> = validator
            .iter_errors(&doc)
            .map(|e| format!("{e} at {}", e.instance_path()))
            .collect();
        assert!(errors.is_empty(), "{}: {errors:#?}", file.display());
    }
    // And it catches what the parser catches.
    let bad: serde_json::Value = serde_json::json!({"steps": [{"id": "a", "actoin": "shell"}]});
    assert!(!validator.is_valid(&bad));
    let bad_args: serde_json::Value =
        serde_json::json!({"steps": [{"id": "a", "action": "shell", "with": {"comand": ["x"]}}]});
    assert!(!validator.is_valid(&bad_args));
}

/// On a terminal (`script` gives the child one) a long copy draws a bar.
#[test]
fn a_backup_copy_draws_a_progress_bar_on_a_terminal() {
    let t = Test::new().file(
        "pb.yaml",
        "steps:\n  - id: b\n    action: backup.create\n    with: {db: big.db, dir: backups}\n",
    );
    {
        let conn = rusqlite::Connection::open(t.path().join("big.db")).unwrap();
        conn.execute_batch("CREATE TABLE t(x); WITH RECURSIVE s(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM s WHERE i < 20000) INSERT INTO t SELECT randomblob(1000) FROM s;").unwrap();
    }
    let bin = env!("CARGO_BIN_EXE_runbook");
    let Some(out) = t.run_on_terminal(&format!("{bin} run pb.yaml"), "") else {
        crate::support::skipped("util-linux `script` is not installed, so no terminal test ran");
        return;
    };
    let screen = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{screen}");
    assert!(
        screen.contains("copying and hashing"),
        "no progress bar drawn:\n{screen}"
    );
}

/// Without -v a run shows its top-level steps, each line within 100
/// columns, the failing options named on their own lines; -v shows every
/// included step and every condition.
#[test]
fn the_run_view_is_collapsed_and_fits_100_columns_unless_verbose() {
    let t = Test::new();
    let app = crate::gofastcdn::Install::new(&t.path().join("app"), 10, 10);
    app.migrate().unwrap();
    // images lost and no backup: every option fails, with long errors.
    app.conn().execute_batch("DROP TABLE images").unwrap();
    let args = crate::support::emergency_args(
        "a reason long enough to make the lines of this run wider than they should be",
        &["--yes"],
    );
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let out = t.run(&args);
    out.code(1)
        .stdout_has("✗ option-1 failed: require failed: images and docs tables present")
        .stdout_has("↳ falling back to option-2")
        .stdout_has("✗ option-2 failed: there are no backups in app/backups");
    assert!(!out.stdout.contains("option-1.before"), "{}", out.stdout);
    for line in out.stdout.lines() {
        let path_line = ["▶ ", "  run directory: ", "report: ", "outbox: "]
            .iter()
            .any(|p| line.starts_with(p));
        assert!(
            path_line || console::measure_text_width(line) <= 100,
            "{} columns: {line}",
            console::measure_text_width(line)
        );
    }
    let mut verbose = args.to_vec();
    verbose.push("-v");
    t.run(&verbose)
        .code(1)
        .stdout_has("✓ option-1.before Read the database's state")
        .stdout_has("- alert.initiated E-mail: rollback initiated: when: `notify_to and ");
}

/// A playbook with an error and a warning: `check --json` keeps them apart,
/// as it does for a playbook that checks, and `list` counts what `check`
/// counts as problems.
#[test]
fn check_and_list_count_errors_alike_and_keep_warnings_apart() {
    let t = Test::new().file(
        "playbooks/pb.yaml",
        "steps:\n  - id: a\n    action: shell\n    with: {command: [no-such-program-here]}\n  - id: b\n    action: shel\n",
    );
    let out = t.run(&["check", "playbooks/pb.yaml", "--json"]);
    out.code(2);
    let checked: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!(
        checked["problems"].as_array().unwrap().len(),
        1,
        "{checked}"
    );
    assert_eq!(
        checked["warnings"].as_array().unwrap().len(),
        1,
        "{checked}"
    );
    let listed: serde_json::Value =
        serde_json::from_str(&t.run(&["list", "--json"]).stdout).unwrap();
    assert_eq!(listed["problems"], 1);
}
