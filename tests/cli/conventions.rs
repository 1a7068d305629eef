//! The command line keeps its ecosystem's habits: `--json` on every command
//! that prints data, parsed here; subcommands with help of their own; a
//! manual page for every subcommand.

use std::collections::BTreeSet;

use crate::support::Test;

/// The subcommands `--help` lists, nested ones as `backup create`.
fn subcommands(t: &Test, parent: &[&str]) -> Vec<Vec<String>> {
    let mut args: Vec<&str> = parent.to_vec();
    args.push("--help");
    let help = t.run(&args).stdout;
    let mut out = Vec::new();
    let listed = help
        .lines()
        .skip_while(|l| !l.starts_with("Commands:"))
        .skip(1)
        .take_while(|l| l.starts_with("  "))
        .filter_map(|l| l.split_whitespace().next())
        .filter(|name| *name != "help")
        .map(str::to_owned)
        .collect::<Vec<_>>();
    for name in listed {
        let mut path: Vec<String> = parent.iter().map(|s| (*s).to_owned()).collect();
        path.push(name);
        let nested: Vec<&str> = path.iter().map(String::as_str).collect();
        let children = subcommands(t, &nested);
        out.push(path);
        out.extend(children);
    }
    out
}

#[test]
fn every_subcommand_has_a_man_page_with_exit_status_and_environment() {
    let t = Test::new();
    let commands = subcommands(&t, &[]);
    assert!(
        commands.iter().any(|c| c == &["backup", "create"]),
        "{commands:?}"
    );
    t.run(&["man", "--dir", "man1"]).code(0);
    let mut expected: BTreeSet<String> = commands
        .iter()
        .map(|c| format!("runbook-{}.1", c.join("-")))
        .collect();
    expected.insert("runbook.1".into());
    let written: BTreeSet<String> = std::fs::read_dir(t.path().join("man1"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(written, expected);
    for page in &written {
        let text = std::fs::read_to_string(t.path().join("man1").join(page)).unwrap();
        for section in [
            ".SH NAME",
            ".SH SYNOPSIS",
            ".SH \"EXIT STATUS\"",
            ".SH ENVIRONMENT",
            "RUNBOOK_RUNS",
            "\\fB0\\fR",
            "\\fB2\\fR",
        ] {
            assert!(text.contains(section), "{page} has no `{section}`:\n{text}");
        }
        // Every page it refers to exists.
        for (i, _) in text.match_indices("(1)") {
            let start = text[..i]
                .rfind(|c: char| !(c.is_alphanumeric() || c == '-' || c == '\\'))
                .map_or(0, |s| s + 1);
            let name = text[start..i].replace("\\-", "-");
            assert!(
                written.contains(&format!("{name}.1")),
                "{page} refers to {name}(1), which is not generated"
            );
        }
    }
    // One page alone, by the subcommand's words, is the same page.
    let alone = t.run(&["man", "backup", "create"]);
    alone.code(0);
    let file = std::fs::read_to_string(t.path().join("man1/runbook-backup-create.1")).unwrap();
    assert_eq!(alone.stdout, file);
    assert!(file.contains("\\-\\-label"), "{file}");
    t.run(&["man", "backup", "creat"]).code(2);
    // The demo ends as its run does: interrupted too.
    t.run(&["man", "demo"]).code(0).stdout_has("\\fB130\\fR");
}

#[test]
fn each_backup_operation_has_its_own_help() {
    let t = Test::new();
    let create = t.run(&["backup", "create", "--help"]);
    create
        .code(0)
        .stdout_has("Usage: runbook backup create")
        .stdout_has("--label");
    assert!(
        !create.stdout.contains("--app-backups"),
        "{}",
        create.stdout
    );
    let list = t.run(&["backup", "list", "--help"]);
    list.code(0)
        .stdout_has("Usage: runbook backup list")
        .stdout_has("--app-backups");
    assert!(!list.stdout.contains("--label"), "{}", list.stdout);
    // A required argument missing is a usage error naming it.
    t.run(&["backup", "restore", "--db", "x.db"])
        .code(2)
        .stderr_has("--backup <FILE>");
}

/// Every command that prints data prints one JSON document (or one per
/// line for event streams) with `--json`, in the shape docs describe.
#[test]
fn json_output_parses_on_every_command_that_prints_data() {
    let t = Test::new()
        .db("app.db", "CREATE TABLE notes(id INTEGER PRIMARY KEY); INSERT INTO notes VALUES (1), (2);")
        .file(
            "playbooks/count.yaml",
            "description: counts the notes\nsteps:\n  - id: count\n    action: sqlite.query\n    with: {db: app.db, sql: SELECT count(*) AS n FROM notes}\n",
        );
    let parse = |args: &[&str]| -> serde_json::Value {
        let out = t.run(args);
        out.code(0);
        serde_json::from_str(&out.stdout)
            .unwrap_or_else(|e| panic!("{args:?}: not one JSON document ({e}):\n{}", out.stdout))
    };
    let lines = |args: &[&str]| -> Vec<serde_json::Value> {
        let out = t.run(args);
        out.code(0);
        out.stdout
            .lines()
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{args:?}: {e}: {l}")))
            .collect()
    };
    let created = parse(&["backup", "create", "--db", "app.db", "--dir", "b", "--json"]);
    let backup = created["path"].as_str().unwrap().to_owned();
    assert_eq!(created["manifest"]["fingerprint"]["counts"]["notes"], 2);
    let listed = parse(&["backup", "list", "--dir", "b", "--json"]);
    assert_eq!(listed["count"], 1);
    assert_eq!(listed["backups"][0]["path"], backup.as_str());
    // The fingerprint is the document's own, not a Rust enum's wrapping.
    assert_eq!(listed["backups"][0]["fingerprint"]["counts"]["notes"], 2);
    let verified = parse(&["backup", "verify", "--backup", &backup, "--json"]);
    assert_eq!(verified["integrity"], "ok");
    let restored = parse(&[
        "backup", "restore", "--db", "app.db", "--backup", &backup, "--dir", "b", "--force",
        "--json",
    ]);
    assert!(restored["pre_restore_backup"].is_string(), "{restored}");
    let deleted = parse(&["backup", "delete", "--backup", &backup, "--force", "--json"]);
    assert_eq!(deleted["deleted"], backup.as_str());
    let checked = lines(&["check", "playbooks/count.yaml", "--json"]);
    assert_eq!(checked[0]["ok"], true);
    let listed = lines(&["list", "--json"]);
    assert_eq!(listed[0]["valid"], true);
    let events = lines(&["run", "playbooks/count.yaml", "--json"]);
    assert_eq!(events.last().unwrap()["event"], "run_finished");
    let report = parse(&["report", "latest", "--json"]);
    assert_eq!(report["status"], "succeeded");
    assert!(parse(&["schema"]).is_object());
}
