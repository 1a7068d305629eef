//! Fuzzing the playbook loader and the template layer: arbitrary text, and
//! random edits of the shipped playbooks. No input may panic, and every
//! rejection must be an error with a position in the file.

use std::path::{Path, PathBuf};

use proptest::prelude::*;
use runbook::analyzer::{analyze_source, Options};

fn cases() -> u32 {
    std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(400)
}

/// The file the text is said to come from: beside the shipped playbooks,
/// so that includes in edited playbooks resolve.
fn path() -> PathBuf {
    Path::new(crate::PLAYBOOKS).join("fuzzed.yaml")
}

fn shipped() -> Vec<String> {
    let mut out: Vec<String> = std::fs::read_dir(crate::PLAYBOOKS)
        .unwrap()
        .map(|e| std::fs::read_to_string(e.unwrap().path()).unwrap())
        .collect();
    out.push(
        std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/examples/first-playbook.yaml"
        ))
        .unwrap(),
    );
    out
}

#[track_caller]
fn check(text: String) {
    let options = Options {
        vars: Vec::new(),
        require_values: false,
    };
    if let Err(problems) = analyze_source(&path(), text.clone(), &options) {
        // Warnings are said with the errors; a rejection has an error.
        assert!(
            problems.errors().next().is_some(),
            "rejected with no reason:\n{text}"
        );
        for d in &problems.0 {
            assert!(
                d.span.is_some(),
                "an error without a position: {}\n--- input:\n{text}",
                d.message
            );
            let rendered = d.to_string();
            let kind = if d.warning { "warning: " } else { "error: " };
            assert!(rendered.starts_with(kind), "{rendered}");
        }
    }
}

const TOKENS: &[&str] = &[
    ":",
    "-",
    " ",
    "\n",
    "\n  ",
    "\n    - ",
    "{{",
    "}}",
    "{%",
    "%}",
    "[",
    "]",
    "{",
    "}",
    "'",
    "\"",
    "#",
    "&a",
    "*a",
    "<<: *a",
    "id: x",
    "action: shell",
    "with:",
    "playbook: verify.yaml",
    "playbook: fuzzed.yaml",
    "steps:",
    "always:",
    "vars:",
    "when: ",
    "require:",
    "verify:",
    "skip_if:",
    "fallback:",
    "retries: 99999999999999999999",
    "timeout: 1h",
    "confirm: true",
    "{{ steps.x.y }}",
    "{{ run.status }}",
    "{{ nope }}",
    "{{ db | words }}",
    "{% for i in range(3) %}",
    "\t",
    "\u{0}",
    "é",
    "🦀",
    "!!binary",
    "!!str",
    "~",
    "null",
    "0x1F",
    "1e999",
    ".inf",
];

fn edit(text: &str, ops: &[(u8, usize, usize)]) -> String {
    let mut chars: Vec<char> = text.chars().collect();
    for (kind, at, arg) in ops {
        let at = if chars.is_empty() {
            0
        } else {
            at % (chars.len() + 1)
        };
        match kind % 3 {
            0 => {
                let end = (at + arg % 40).min(chars.len());
                chars.drain(at..end);
            }
            1 => {
                let token: Vec<char> = TOKENS[arg % TOKENS.len()].chars().collect();
                chars.splice(at..at, token);
            }
            _ => {
                let end = (at + arg % 80).min(chars.len());
                let copy: Vec<char> = chars[at..end].to_vec();
                chars.splice(at..at, copy);
            }
        }
    }
    chars.into_iter().collect()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: cases(), failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_text_never_panics_and_every_error_has_a_position(text in "\\PC{0,300}") {
        check(text);
    }

    #[test]
    fn edited_playbooks_never_panic_and_every_error_has_a_position(
        which in 0usize..16,
        ops in proptest::collection::vec((any::<u8>(), any::<usize>(), any::<usize>()), 1..6),
    ) {
        let all = shipped();
        let base = &all[which % all.len()];
        check(edit(base, &ops));
    }

    #[test]
    fn arbitrary_templates_never_panic(template in "\\PC{0,120}") {
        let text = format!("vars:\n  db: x\nsteps:\n  - id: s\n    action: shell\n    with:\n      command: [echo, {}]\n", serde_json::to_string(&template).unwrap());
        check(text);
    }
}
