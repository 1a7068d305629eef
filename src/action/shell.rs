//! `shell`: runs a program with arguments, never through a shell unless the
//! playbook itself writes `sh -c`. Each argument reaches the program as one
//! argv element, whatever characters it holds. Output is captured; a
//! timeout kills the program's whole process group, so a `sleep` started
//! by a wrapper script dies with it.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::Deserialize;

use super::{Action, CommandLine, Context, Failure, Lookup, Outputs, Text};

#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "ShellArgs")]
pub struct Shell {
    /// The program and its arguments.
    command: Command,
    /// Extra environment variables for the program: the way to give it a
    /// secret, which it does not inherit and which must not be in its
    /// command line (any local user can read that in /proc).
    #[serde(default)]
    env: BTreeMap<String, Text>,
    /// Text written to the program's standard input (default: none).
    #[serde(default)]
    stdin: Option<Text>,
    /// Working directory (default: runbook's own).
    #[serde(default)]
    cwd: Option<PathBuf>,
    /// Exit codes that count as success (default: 0 only).
    #[serde(default = "default_ok_codes")]
    ok_codes: Vec<i32>,
    /// The author's promise that the command changes nothing, so that dry
    /// runs and checks may run it (e.g. a status probe).
    #[serde(default)]
    read_only: bool,
}

/// Programs found on a `PATH`: (name, `PATH`, working directory) → path.
type Found = std::collections::HashMap<(String, Option<std::ffi::OsString>, PathBuf), PathBuf>;
static FOUND: std::sync::LazyLock<std::sync::Mutex<Found>> =
    std::sync::LazyLock::new(Default::default);

/// A file that some user may execute.
fn executable(meta: &std::fs::Metadata) -> bool {
    use std::os::unix::fs::PermissionsExt;
    meta.is_file() && meta.permissions().mode() & 0o111 != 0
}

fn default_ok_codes() -> Vec<i32> {
    vec![0]
}

/// A list is one argument per item; a string is split into words like a
/// command line, but without a shell: no expansion, no redirection.
#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(untagged)]
enum Command {
    Argv(Vec<Argument>),
    Line(String),
}

/// One list item: text, or a list (from `{{ var | words }}`) spliced in.
#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(untagged)]
enum Argument {
    One(Text),
    Many(Vec<Text>),
}

impl Shell {
    fn argv(&self) -> Result<Vec<String>, Failure> {
        let argv = match &self.command {
            Command::Line(line) => shell_words::split(line).map_err(|err| {
                Failure::failed(format!("cannot split command `{line}` into words: {err}"))
            })?,
            Command::Argv(items) => items
                .iter()
                .flat_map(|a| match a {
                    Argument::One(t) => vec![t.0.clone()],
                    Argument::Many(ts) => ts.iter().map(|t| t.0.clone()).collect(),
                })
                .collect(),
        };
        if argv.is_empty() {
            return Err(Failure::failed("the command is empty"));
        }
        Ok(argv)
    }

    /// The program's path, found in the `PATH` it will run with. Given a
    /// path rather than a name, the standard library starts it with
    /// posix_spawn (vfork) where it would otherwise fork runbook and try
    /// each `PATH` entry with execvp: about 0.8 ms less a step here. A name
    /// not found is left as it is, so starting it fails with the usual error.
    fn program(&self, name: &str) -> std::ffi::OsString {
        if name.contains('/') {
            return name.into();
        }
        self.search(name).map_or_else(|| name.into(), Into::into)
    }

    /// `name` in the directories of the `PATH` the program runs with.
    /// Remembered, as a shell's command hash remembers it: a step that runs
    /// the same program as the one before does not search `PATH` again
    /// (55 µs a step here), and a remembered program that is no longer
    /// there is searched for again.
    fn search(&self, name: &str) -> Option<PathBuf> {
        let path = match self.env.get("PATH") {
            Some(p) => Some(std::ffi::OsString::from(&p.0)),
            None => std::env::var_os("PATH"),
        };
        let cwd = self.cwd().ok()?;
        let key = (name.to_owned(), path.clone(), cwd.clone());
        let mut found = FOUND.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(program) = found
            .get(&key)
            .filter(|p| std::fs::metadata(p).is_ok_and(|m| executable(&m)))
        {
            return Some(program.clone());
        }
        let program = which::which_in(name, path, cwd).ok()?;
        found.insert(key, program.clone());
        Some(program)
    }

    /// The directory it runs in.
    fn cwd(&self) -> std::io::Result<PathBuf> {
        let here = std::env::current_dir()?;
        Ok(match &self.cwd {
            Some(dir) => here.join(dir),
            None => here,
        })
    }
}

impl Action for Shell {
    fn invalidates_reads(&self) -> bool {
        false
    }

    fn mutates(&self) -> bool {
        !self.read_only
    }

    fn command(&self) -> Option<CommandLine> {
        let argv = self.argv().ok()?;
        let name = &argv[0];
        let program = if name.contains('/') {
            let at = self
                .cwd()
                .map_or_else(|_| PathBuf::from(name), |cwd| cwd.join(name));
            let at = std::path::absolute(&at).unwrap_or(at);
            match std::fs::metadata(&at) {
                Err(_) => Lookup::NoFile(at),
                Ok(meta) if !executable(&meta) => Lookup::NotExecutable(at),
                Ok(_) => Lookup::Found(at),
            }
        } else {
            self.search(name).map_or(Lookup::NotOnPath, Lookup::Found)
        };
        Some(CommandLine { argv, program })
    }

    fn describe(&self) -> String {
        let argv = match self.argv() {
            Ok(argv) => shell_words::join(argv),
            Err(err) => format!("<{err}>"),
        };
        let mut d = format!("run `{argv}`");
        if let Some(cwd) = &self.cwd {
            d.push_str(&format!(" in {}", cwd.display()));
        }
        if !self.read_only {
            d.push_str(" (its effect cannot be predicted)");
        }
        d
    }

    fn run(&self, ctx: &Context<'_>) -> Result<Outputs, Failure> {
        let argv = self.argv()?;
        let mut cmd = std::process::Command::new(self.program(&argv[0]));
        cmd.args(&argv[1..]);
        for (k, v) in &self.env {
            cmd.env(k, &v.0);
        }
        if let Some(cwd) = &self.cwd {
            cmd.current_dir(cwd);
        }
        let stdin = self.stdin.as_ref().map(|t| t.0.as_bytes());
        let output = match crate::child::run(cmd, stdin, ctx.timeout) {
            Ok(output) => output,
            Err(crate::child::Error::TimedOut) => {
                return Err(Failure::TimedOut(ctx.timeout.unwrap_or_default()))
            }
            Err(crate::child::Error::Start(err)) => {
                return Err(Failure::failed(format!(
                    "cannot start `{}`: {err}",
                    argv[0]
                )))
            }
            Err(crate::child::Error::Wait(err)) => {
                return Err(Failure::failed(format!("waiting for `{}`: {err}", argv[0])))
            }
        };

        let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
        let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
        let code = output.status.code();
        let mut out = Outputs::new();
        out.insert("stdout".into(), stdout.clone().into());
        out.insert("stderr".into(), stderr.clone().into());
        out.insert("code".into(), code.into());
        match code {
            Some(c) if self.ok_codes.contains(&c) => Ok(out),
            Some(c) => Err(Failure::failed(format!(
                "`{}` exited with code {c}{}",
                argv[0],
                last_line(&stderr)
                    .map(|l| format!(": {l}"))
                    .unwrap_or_default()
            ))),
            None => Err(Failure::failed(format!(
                "`{}` was killed by a signal",
                argv[0]
            ))),
        }
    }
}

fn last_line(s: &str) -> Option<&str> {
    s.lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .map(str::trim)
}
