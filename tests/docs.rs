//! Every command README.md and docs/*.md show is run here, in the order a
//! reader would type them, in a sandbox built like theirs; where a block of
//! output follows, the command must print it. `…` in an output block marks
//! what the doc leaves out: a line of its own stands for any lines, one at
//! a line's end for the rest of that line. Times, run names, durations and
//! fingerprints differ between runs and are compared as such.
//!
//! Paths the docs use for a real install (`/srv/go-fast-cdn`, `/tmp/wf`,
//! `/tmp/notes`, `~`) are the sandbox's. A command the sandbox cannot run
//! is listed in `NOT_RUN_HERE` with the place that runs it, so none is
//! skipped silently; one whose exit code is not 0 says so in the doc
//! (`# exits 1`).

use std::path::{Path, PathBuf};
use std::process::Command;

use regex::Regex;

const BIN: &str = env!("CARGO_BIN_EXE_runbook");

/// Commands shown but run elsewhere, and where.
const NOT_RUN_HERE: &[(&str, &str)] = &[
    (
        "cargo install",
        "installs into ~/.cargo/bin; .ci/run builds the same crate",
    ),
    ("cargo test", ".ci/run runs the test suite"),
    (
        "RELIABILITY_SCALE=",
        "the long soak: hours; its results are in docs/RELIABILITY.md",
    ),
    (
        "PROPTEST_CASES=",
        "the long fuzz run: minutes; its results are in docs/RELIABILITY.md",
    ),
    (
        "cargo build --release",
        "the benchmarks' build; docs/PERFORMANCE.md",
    ),
    (
        "python3 benches/",
        "benchmarks: minutes each, on a quiet machine; docs/PERFORMANCE.md",
    ),
    (
        "BENCH_INSTALL=",
        "benchmarks: minutes each, on a quiet machine; docs/PERFORMANCE.md",
    ),
    (
        "runbook run playbooks/fleet_rollback.yaml",
        "needs ssh hosts; tests/cli/fleet.rs runs it against real sshd servers on loopback",
    ),
    (
        "runbook graph playbooks/emergency_rollback.yaml --format dot | dot",
        "needs Graphviz; tests/cli checks the flow picture in docs/flow.md is current",
    ),
];

struct Block {
    lang: String,
    lines: Vec<String>,
    /// The line of the opening fence.
    at: usize,
    /// Only blank lines between this block and the one before it.
    follows_previous: bool,
}

fn blocks(text: &str) -> Vec<Block> {
    let mut out = Vec::new();
    let mut open: Option<Block> = None;
    let mut only_blank = false;
    for (i, line) in text.lines().enumerate() {
        if let Some(fence) = line.strip_prefix("```") {
            match open.take() {
                Some(b) => {
                    out.push(b);
                    only_blank = true;
                }
                None => {
                    open = Some(Block {
                        lang: fence.trim().to_owned(),
                        lines: Vec::new(),
                        at: i + 1,
                        follows_previous: only_blank,
                    });
                }
            }
            continue;
        }
        match &mut open {
            Some(b) => b.lines.push(line.to_owned()),
            None if !line.trim().is_empty() => only_blank = false,
            None => {}
        }
    }
    out
}

/// One command as typed: `\` continuations joined, its expected exit code
/// from a trailing `# exits N`.
struct Typed {
    line: String,
    exit: i32,
    at: usize,
}

fn commands(block: &Block) -> (Vec<Typed>, Option<Vec<String>>) {
    let mut typed: Vec<Typed> = Vec::new();
    let mut output = Vec::new();
    let mut pending = String::new();
    let exits = Regex::new(r"#\s*exits (\d+)").unwrap();
    for (i, line) in block.lines.iter().enumerate() {
        let line = if block.lang == "console" {
            match line.strip_prefix("$ ") {
                Some(cmd) => cmd,
                None => {
                    output.push(line.clone());
                    continue;
                }
            }
        } else {
            line.as_str()
        };
        if line.trim().is_empty() {
            continue;
        }
        if let Some(head) = line.strip_suffix('\\') {
            pending.push_str(head);
            pending.push(' ');
            continue;
        }
        pending.push_str(line);
        let exit = exits
            .captures(&pending)
            .map_or(0, |c| c[1].parse().unwrap());
        typed.push(Typed {
            line: std::mem::take(&mut pending),
            exit,
            at: block.at + i + 1,
        });
    }
    let output = (block.lang == "console").then_some(output);
    (typed, output)
}

/// The text with what differs between runs replaced by its kind.
fn normal(text: &str, sandbox: &Path) -> String {
    let mut s = text.replace(&sandbox.join("wf").display().to_string(), "/tmp/wf");
    s = s.replace(&sandbox.join("notes").display().to_string(), "/tmp/notes");
    s = s.replace(&sandbox.join("au").display().to_string(), "/tmp/au");
    s = s.replace(&sandbox.display().to_string(), "/tmp");
    for (pattern, kind) in [
        (r"runbook-demo-[A-Za-z0-9]+", "runbook-demo-<TMP>"),
        (r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z", "<TIME>"),
        (r"\d{8}T\d{6}Z", "<STAMP>"),
        (r"\b\d\d:\d\d:\d\d\.\d{3}\b", "<CLOCK>"),
        (r"\b\d+(\.\d+)?s\b", "<DURATION>"),
        (r"\[\d+m left\]", "[<LEFT>]"),
        (r"\b[0-9a-f]{12}\b", "<FP>"),
        (r"\b[0-9a-f]{64}\b", "<SHA256>"),
    ] {
        s = Regex::new(pattern)
            .unwrap()
            .replace_all(&s, kind)
            .into_owned();
    }
    s
}

/// Whether `actual` shows `expected`, `…` taken as the doc's elisions.
fn shows(expected: &[String], actual: &[&str]) -> Result<(), String> {
    fn go(e: &[String], a: &[&str]) -> bool {
        match e.first() {
            None => a.is_empty(),
            Some(line) if line.trim() == "…" => (0..=a.len()).any(|skip| go(&e[1..], &a[skip..])),
            Some(line) => {
                let Some(first) = a.first() else { return false };
                let matches = match line.strip_suffix('…') {
                    Some(prefix) if *first != line.as_str() => first.starts_with(prefix),
                    _ => *first == line.as_str(),
                };
                matches && go(&e[1..], &a[1..])
            }
        }
    }
    if go(expected, actual) {
        return Ok(());
    }
    // Where they part: the first expected line that no actual line shows.
    let missing = expected
        .iter()
        .find(|l| {
            l.trim() != "…"
                && !actual
                    .iter()
                    .any(|a| a == l || l.strip_suffix('…').is_some_and(|p| a.starts_with(p)))
        })
        .cloned()
        .unwrap_or_default();
    Err(format!("first line not shown: {missing:?}"))
}

/// A shell in the sandbox: `runbook` on PATH, HOME of its own, the app's
/// service manager a script that records what it was asked.
fn sandbox() -> (tempfile::TempDir, Vec<(String, String)>) {
    let dir = tempfile::tempdir().unwrap();
    let bin = dir.path().join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    std::fs::create_dir_all(dir.path().join("home")).unwrap();
    let systemctl = bin.join("systemctl");
    std::fs::write(
        &systemctl,
        "#!/bin/sh\necho \"$@\" >> \"$HOME/systemctl.log\"\n",
    )
    .unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&systemctl, std::fs::Permissions::from_mode(0o755)).unwrap();
    let runbook_dir = Path::new(BIN).parent().unwrap();
    let path = format!(
        "{}:{}:{}",
        bin.display(),
        runbook_dir.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let env = vec![
        ("PATH".to_owned(), path),
        (
            "HOME".to_owned(),
            dir.path().join("home").display().to_string(),
        ),
        ("NO_COLOR".to_owned(), "1".to_owned()),
        ("TMPDIR".to_owned(), dir.path().display().to_string()),
    ];
    (dir, env)
}

/// Runs one document's commands in order, in one shell, and checks each
/// against its exit code and the output block after it.
fn run_document(doc: &str) -> Vec<String> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(root.join(doc)).unwrap();
    let (sandbox, env) = sandbox();
    let s = sandbox.path();
    // The checkout, as the reader has it: the docs' commands run from it.
    let checkout = s.join("checkout");
    copy_dir(root, &checkout, &["target", ".git", ".runbook"]);
    std::fs::create_dir_all(checkout.join("target")).unwrap();
    // The install the README's production commands name.
    let demo = Command::new(BIN)
        .args(["demo", "--build-only"])
        .arg(s.join("srv"))
        .output()
        .unwrap();
    assert!(
        demo.status.success(),
        "{}",
        String::from_utf8_lossy(&demo.stderr)
    );
    let all = blocks(&text);
    let reviewed = Regex::new(r"--expect-plan [0-9a-f]{12}").unwrap();
    let mut problems = Vec::new();
    let mut script = String::from("set -u\n");
    let mut checks: Vec<(Typed, Option<Vec<String>>, PathBuf)> = Vec::new();
    for (n, block) in all.iter().enumerate() {
        // An edit the reader makes by hand, shown as a patch: applied as is.
        if block.lang == "diff" && block.lines.first().is_some_and(|l| l.starts_with("--- a/")) {
            let patch = s.join(format!("edit-{n}.diff"));
            std::fs::write(&patch, block.lines.join("\n") + "\n").unwrap();
            let out = s.join(format!("out-{}", checks.len()));
            script.push_str(&format!(
                "{{ git apply '{}'\n}} > '{o}' 2>&1 < /dev/null; echo $? > '{o}.rc'\n",
                patch.display(),
                o = out.display()
            ));
            let t = Typed {
                line: format!("(the edit at line {})", block.at),
                exit: 0,
                at: block.at,
            };
            checks.push((t, None, out));
            continue;
        }
        if !["sh", "console"].contains(&block.lang.as_str()) {
            continue;
        }
        let (typed, inline) = commands(block);
        // A block that names the checkout's files (`examples/…`) is typed
        // in the checkout, as the doc says, wherever an earlier `cd` went.
        if typed.first().is_some_and(|t| t.line.contains(" examples/")) {
            script.push_str(&format!("cd '{}'\n", checkout.display()));
        }
        let after = all
            .get(n + 1)
            .filter(|b| b.follows_previous && ["", "text"].contains(&b.lang.as_str()))
            .map(|b| b.lines.clone());
        let last = typed.len().saturating_sub(1);
        for (i, t) in typed.into_iter().enumerate() {
            if let Some((_, why)) = NOT_RUN_HERE
                .iter()
                .find(|(p, _)| t.line.trim_start().starts_with(p))
            {
                eprintln!("{doc}:{}: not run here ({why}): {}", t.at, t.line);
                continue;
            }
            let line = t
                .line
                .replace("cargo run --release -- ", "runbook ")
                .replace("/srv/go-fast-cdn", &s.join("srv/app").display().to_string())
                .replace("/tmp/wf", &s.join("wf").display().to_string())
                .replace("/tmp/notes", &s.join("notes").display().to_string())
                .replace("/tmp/au", &s.join("au").display().to_string());
            // The fingerprint a reviewed run is held to is the one the
            // review printed here, as a reader would copy it.
            let line = reviewed
                .replace_all(&line, regex::NoExpand("--expect-plan $REVIEWED"))
                .into_owned();
            let out = s.join(format!("out-{}", checks.len()));
            script.push_str(&format!(
                "{{ {line}\n}} > '{o}' 2>&1 < /dev/null; echo $? > '{o}.rc'\n\
                 fp=$(sed -n 's/^plan fingerprint: \\([0-9a-f]\\{{12\\}}\\).*/\\1/p' '{o}' | tail -n 1)\n\
                 [ -z \"$fp\" ] || REVIEWED=$fp\n",
                o = out.display()
            ));
            // Run directories are named by the second: two runs in one get
            // a `-2` no reader would see.
            if line.contains("runbook run ") && !line.contains("--dry-run") {
                script.push_str("sleep 1\n");
            }
            let expected = if i == last {
                inline.clone().or_else(|| after.clone())
            } else {
                None
            };
            checks.push((t, expected, out));
        }
    }
    let status = Command::new("bash")
        .arg("-c")
        .arg(&script)
        .current_dir(&checkout)
        .env_remove("RUNBOOK_RUNS")
        .envs(env)
        .status()
        .unwrap();
    assert!(status.success() || status.code().is_some());
    for (t, expected, out) in checks {
        let output = std::fs::read_to_string(&out).unwrap_or_default();
        let rc: i32 = std::fs::read_to_string(format!("{}.rc", out.display()))
            .ok()
            .and_then(|c| c.trim().parse().ok())
            .unwrap_or(-1);
        if rc != t.exit {
            problems.push(format!(
                "{doc}:{}: `{}` exited with {rc}, the doc says {}:\n{output}",
                t.at, t.line, t.exit
            ));
            continue;
        }
        if let Some(expected) = expected {
            let actual = normal(&output, s);
            let actual: Vec<&str> = actual.lines().collect();
            let expected: Vec<String> = expected.iter().map(|l| normal(l, s)).collect();
            if let Err(why) = shows(&expected, &actual) {
                problems.push(format!(
                    "{doc}:{}: `{}` does not print what the doc shows ({why}); it printed:\n{}",
                    t.at,
                    t.line,
                    actual.join("\n")
                ));
            }
        }
    }
    problems
}

fn copy_dir(from: &Path, to: &Path, skip: &[&str]) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let name = entry.file_name();
        if skip.iter().any(|s| name == *s) {
            continue;
        }
        let path = entry.path();
        if path.is_dir() {
            copy_dir(&path, &to.join(&name), &[]);
        } else {
            std::fs::copy(&path, to.join(&name)).unwrap();
        }
    }
}

fn documents() -> Vec<String> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut docs = vec!["README.md".to_owned()];
    let mut more: Vec<String> = std::fs::read_dir(root.join("docs"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".md"))
        .map(|n| format!("docs/{n}"))
        .collect();
    more.sort();
    docs.extend(more);
    docs
}

#[test]
fn every_command_in_the_docs_does_what_the_docs_say() {
    let mut problems = Vec::new();
    for doc in documents() {
        problems.extend(run_document(&doc));
    }
    assert!(problems.is_empty(), "{}", problems.join("\n\n"));
}

/// The README's first playbook is the file it links to, word for word.
#[test]
fn the_readme_lists_the_first_playbook_as_it_is() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let readme = std::fs::read_to_string(root.join("README.md")).unwrap();
    let file = std::fs::read_to_string(root.join("examples/first-playbook.yaml")).unwrap();
    let from = readme
        .find("](examples/first-playbook.yaml):")
        .expect("the link");
    let listing = blocks(&readme[from..])
        .into_iter()
        .next()
        .expect("a listing");
    assert_eq!(listing.lang, "yaml");
    assert_eq!(listing.lines.join("\n") + "\n", file);
}
