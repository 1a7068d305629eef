//! A small builder for integration tests: a temporary directory with
//! playbooks, files and SQLite databases in it; the real `runbook` binary run
//! inside it; and assertions on the exit code, the output and the files.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use tempfile::TempDir;

/// The database of an install built under `app/` (see gofastcdn.rs).
pub const APP_DB: &str = "app/db_data/main.db";

/// The shipped emergency rollback.
pub const EMERGENCY: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/playbooks/emergency_rollback.yaml"
);

/// `run EMERGENCY` on the install under `app/`, with nothing to stop, start
/// or probe, for `reason`; then `extra`.
pub fn emergency_args(reason: &str, extra: &[&str]) -> Vec<String> {
    let mut args: Vec<String> = vec!["run".into(), EMERGENCY.into()];
    for var in [
        "root=app",
        &format!("reason={reason}"),
        "stop_command=true",
        "start_command=true",
        "probe=off",
    ] {
        args.push("--var".into());
        args.push(var.to_owned());
    }
    args.extend(extra.iter().map(|s| (*s).to_owned()));
    args
}

pub struct Test {
    dir: TempDir,
    env: Vec<(String, String)>,
}

pub struct Output {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
    pub dir: PathBuf,
}

impl Test {
    pub fn new() -> Test {
        Test {
            dir: tempfile::tempdir().expect("temp dir"),
            env: Vec::new(),
        }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    #[track_caller]
    pub fn file(self, name: &str, content: &str) -> Test {
        let path = self.dir.path().join(name);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).expect("mkdir");
        }
        std::fs::write(path, content).expect("write file");
        self
    }

    /// A SQLite database made by running `sql` on a new file.
    #[track_caller]
    pub fn db(self, name: &str, sql: &str) -> Test {
        let conn = rusqlite::Connection::open(self.dir.path().join(name)).expect("open db");
        conn.execute_batch(sql).expect("seed db");
        self
    }

    pub fn env(mut self, key: &str, value: &str) -> Test {
        self.env.push((key.into(), value.into()));
        self
    }

    /// `runbook ARGS` to start in the test directory, with no terminal,
    /// empty stdin, and none of the environment of whoever runs the tests
    /// (their `RUNBOOK_RUNS`) but the test's own.
    pub fn command<S: AsRef<std::ffi::OsStr>>(&self, args: &[S]) -> Command {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_runbook"));
        cmd.args(args)
            .current_dir(self.dir.path())
            .env_remove("RUNBOOK_RUNS")
            .env("NO_COLOR", "1")
            .stdin(Stdio::null());
        for (k, v) in &self.env {
            cmd.env(k, v);
        }
        cmd
    }

    /// Runs `runbook ARGS` in the test directory, with no terminal and empty stdin.
    #[track_caller]
    pub fn run(&self, args: &[&str]) -> Output {
        let out = self.command(args).output().expect("run runbook");
        Output {
            code: out.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
            dir: self.dir.path().to_path_buf(),
        }
    }

    /// `runbook backup create --json` of the install's database (`app/`); its answer.
    #[track_caller]
    pub fn backup_create(&self) -> serde_json::Value {
        let out = self.run(&["backup", "create", "--db", APP_DB, "--json"]);
        out.code(0);
        serde_json::from_str(out.stdout.trim()).expect("backup create --json")
    }

    /// `runbook backup restore --force` of the install's database from `backup`.
    #[track_caller]
    pub fn backup_restore(&self, backup: &str) -> Output {
        self.run(&[
            "backup", "restore", "--db", APP_DB, "--backup", backup, "--force",
        ])
    }

    /// Runs `command` (a shell line) on a real terminal, as `script` gives
    /// one, with `input` typed at it; `None` where `script` is not installed.
    pub fn run_on_terminal(&self, command: &str, input: &str) -> Option<std::process::Output> {
        Command::new("script").arg("--version").output().ok()?;
        let line = format!(
            "printf '%s' {} | script -qec {} /dev/null",
            shell_words::quote(input),
            shell_words::quote(command)
        );
        Some(
            Command::new("sh")
                .arg("-c")
                .arg(line)
                .current_dir(self.dir.path())
                .env("NO_COLOR", "1")
                .env_remove("RUNBOOK_RUNS")
                .output()
                .expect("run script"),
        )
    }

    /// Every file below the test directory with its content, to prove a
    /// command changed nothing.
    pub fn snapshot(&self) -> BTreeMap<PathBuf, Vec<u8>> {
        fn walk(dir: &Path, root: &Path, out: &mut BTreeMap<PathBuf, Vec<u8>>) {
            for entry in std::fs::read_dir(dir).expect("read dir") {
                let path = entry.expect("entry").path();
                let rel = path.strip_prefix(root).expect("prefix").to_path_buf();
                if path.is_dir() {
                    out.insert(rel.join(""), Vec::new());
                    walk(&path, root, out);
                } else {
                    out.insert(rel, std::fs::read(&path).expect("read"));
                }
            }
        }
        let mut out = BTreeMap::new();
        walk(self.dir.path(), self.dir.path(), &mut out);
        out
    }

    /// Rows of a query on a database in the test directory, as text.
    #[track_caller]
    pub fn query(&self, db: &str, sql: &str) -> Vec<Vec<String>> {
        let conn = rusqlite::Connection::open(self.dir.path().join(db)).expect("open db");
        let mut stmt = conn.prepare(sql).expect("prepare");
        let n = stmt.column_count();
        stmt.query_map([], |row| {
            (0..n)
                .map(|i| {
                    let v: rusqlite::types::Value = row.get(i)?;
                    Ok(match v {
                        rusqlite::types::Value::Null => "NULL".into(),
                        rusqlite::types::Value::Integer(i) => i.to_string(),
                        rusqlite::types::Value::Real(x) => x.to_string(),
                        rusqlite::types::Value::Text(t) => t,
                        rusqlite::types::Value::Blob(b) => format!("{b:?}"),
                    })
                })
                .collect()
        })
        .expect("query")
        .collect::<Result<_, _>>()
        .expect("rows")
    }
}

impl Output {
    #[track_caller]
    pub fn code(&self, expected: i32) -> &Output {
        assert_eq!(
            self.code, expected,
            "exit code\n--- stdout:\n{}\n--- stderr:\n{}",
            self.stdout, self.stderr
        );
        self
    }

    #[track_caller]
    pub fn stdout_has(&self, needle: &str) -> &Output {
        assert!(
            self.stdout.contains(needle),
            "stdout lacks {needle:?}\n--- stdout:\n{}\n--- stderr:\n{}",
            self.stdout,
            self.stderr
        );
        self
    }

    #[track_caller]
    pub fn stderr_has(&self, needle: &str) -> &Output {
        assert!(
            self.stderr.contains(needle),
            "stderr lacks {needle:?}\n--- stderr:\n{}",
            self.stderr
        );
        self
    }

    #[track_caller]
    pub fn stderr_is(&self, expected: &str) -> &Output {
        assert_eq!(self.stderr, expected, "stderr differs");
        self
    }

    /// The run directory this run printed (or, with --json, announced).
    #[track_caller]
    pub fn run_dir(&self) -> PathBuf {
        let printed = self
            .stdout
            .lines()
            .find_map(|l| l.trim().strip_prefix("run directory: ").map(str::to_owned))
            .or_else(|| {
                let first: serde_json::Value =
                    serde_json::from_str(self.stdout.lines().next()?).ok()?;
                first["run_dir"].as_str().map(str::to_owned)
            })
            .unwrap_or_else(|| panic!("the run printed no run directory:\n{}", self.stdout));
        self.dir.join(printed)
    }

    /// The journal's events, parsed.
    #[track_caller]
    pub fn journal(&self) -> Vec<serde_json::Value> {
        let text = std::fs::read_to_string(self.run_dir().join("journal.jsonl")).expect("journal");
        text.lines()
            .map(|l| {
                serde_json::from_str(l).unwrap_or_else(|e| panic!("bad journal line {l:?}: {e}"))
            })
            .collect()
    }

    /// The `step_finished` event of a step.
    #[track_caller]
    pub fn finished(&self, step: &str) -> serde_json::Value {
        self.journal()
            .into_iter()
            .rev()
            .find(|e| e["event"] == "step_finished" && e["step"] == step)
            .unwrap_or_else(|| panic!("no step_finished for {step}"))
    }

    #[track_caller]
    pub fn report(&self) -> String {
        std::fs::read_to_string(self.run_dir().join("report.md")).expect("report.md")
    }
}

/// A real server (SMTP, HTTP) started by a test on a free loopback port,
/// and stopped when the test ends.
pub struct LoopbackServer {
    child: std::process::Child,
    pub port: u16,
}

impl LoopbackServer {
    /// Starts the command `make(port)` builds and waits until the port answers.
    #[track_caller]
    pub fn start(what: &str, make: impl FnOnce(u16) -> Command) -> LoopbackServer {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let child = make(port)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {what}: {e}"));
        let server = LoopbackServer { child, port };
        for _ in 0..100 {
            if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                return server;
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        panic!("{what} did not start on port {port}");
    }
}

impl Drop for LoopbackServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The messages in a run's outbox, parsed, in the order written.
pub fn outbox(out: &Output) -> Vec<(String, String, Vec<u8>)> {
    let dir = out.run_dir().join("outbox");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    files
        .into_iter()
        .map(|f| {
            let raw = std::fs::read(&f).unwrap();
            let parsed = mailparse::parse_mail(&raw)
                .unwrap_or_else(|e| panic!("{} is not an e-mail: {e}", f.display()));
            let subject = parsed
                .headers
                .iter()
                .find(|h| h.get_key() == "Subject")
                .unwrap()
                .get_value();
            (subject, body_text(&parsed), raw)
        })
        .collect()
}

pub fn body_text(mail: &mailparse::ParsedMail<'_>) -> String {
    if mail.subparts.is_empty() {
        mail.get_body().unwrap()
    } else {
        body_text(&mail.subparts[0])
    }
}

/// Says, where the person running the tests sees it (libtest captures
/// `eprintln!` of passing tests, not the stderr handle), that a test could
/// not run here.
/// Where everything a test needs is installed (`.ci/run` sets
/// `RUNBOOK_TEST_NO_SKIP`), a skip is a failure.
pub fn skipped(why: &str) {
    use std::io::Write;
    assert!(
        std::env::var_os("RUNBOOK_TEST_NO_SKIP").is_none(),
        "not skipped where everything is installed: {why}"
    );
    let _ = writeln!(std::io::stderr(), "SKIPPED: {why}");
}

/// Whether runbook, started by these tests, may look at every process:
/// CAP_SYS_PTRACE and a DAC capability, as root has. Without them its look
/// for processes holding a database is a warning of the run
/// (docs/actions.md, `sqlite.quiescent`): the emergency plan then has two
/// more, `quiescent` and option 1's check of it, and option 1 ends as a
/// warning though it rolled back.
pub fn sees_every_process() -> bool {
    runbook::holders::sees_every_process()
}

/// The warnings the emergency plan adds when it may not look at every
/// process.
pub fn unseen_warnings() -> usize {
    if sees_every_process() {
        0
    } else {
        2
    }
}

/// The status of an option that rolled back: `ok`, or `warning` in a run
/// that may not look at every process.
pub fn rolled_back() -> &'static str {
    if sees_every_process() {
        "ok"
    } else {
        "warning"
    }
}
