//! Hand-written broken playbooks in tests/corpus/, each with the exact
//! messages `runbook check` must print for it (`NAME.expected`): every
//! error and warning with its position, and every hint. A case whose
//! mistake is on the command line gives its arguments in `NAME.command`.

use std::path::Path;

#[test]
fn every_broken_playbook_gets_its_expected_messages() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/corpus");
    let mut checked = 0;
    let mut entries: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    entries.sort();
    for path in entries
        .iter()
        .filter(|p| p.extension().is_some_and(|x| x == "yaml"))
    {
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        let expected = std::fs::read_to_string(path.with_extension("expected"))
            .unwrap_or_else(|_| panic!("{name} has no .expected file"));
        let args = match std::fs::read_to_string(path.with_extension("command")) {
            Ok(line) => line.split_whitespace().map(str::to_owned).collect(),
            Err(_) => vec!["check".to_owned(), name.clone()],
        };
        let out = std::process::Command::new(crate::BIN)
            .args(&args)
            .current_dir(&dir)
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2), "{name} was accepted");
        // Absolute paths differ between machines: the corpus is `$CORPUS`.
        let stderr =
            String::from_utf8_lossy(&out.stderr).replace(&dir.display().to_string(), "$CORPUS");
        let errors: Vec<&str> = stderr
            .lines()
            .filter(|l| {
                ["error: ", "warning: ", "  help: "]
                    .iter()
                    .any(|p| l.starts_with(p))
            })
            .collect();
        let wanted: Vec<&str> = expected.lines().filter(|l| !l.is_empty()).collect();
        assert_eq!(errors, wanted, "{name}:\n{stderr}");
        checked += 1;
    }
    assert!(
        checked >= 10,
        "only {checked} broken playbooks in the corpus"
    );
}
