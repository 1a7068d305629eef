//! The closed registry of actions. Each action is one file: an argument
//! struct (deserialized from a step's rendered `with`, unknown arguments
//! rejected) implementing [`Action`]. Adding an action is a new file and
//! one variant of [`Call`].

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Deserializer};
use serde_json::{Map, Value as Json};

pub mod assert;
pub mod backup;
pub mod confirm;
pub mod fleet;
pub mod http;
pub mod notify;
pub mod shell;
pub mod sqlite;

/// The output by which an action that did its work says it fell short of
/// what its step promises: the step ends as a warning (⚠), with this text.
pub const WARNING: &str = "warning";

/// What an action produced; later steps read it as `steps.<id>.<key>`.
pub type Outputs = Map<String, Json>;

/// A serializable result's fields as a step's outputs.
pub fn outputs(value: impl serde::Serialize) -> Outputs {
    match serde_json::to_value(value) {
        Ok(Json::Object(map)) => map,
        _ => Outputs::new(),
    }
}

/// A program's command line, and what looking its program up found.
#[derive(Debug)]
pub struct CommandLine {
    pub argv: Vec<String>,
    pub program: Lookup,
}

/// Where a program is, or why it is not there.
#[derive(Debug)]
pub enum Lookup {
    Found(PathBuf),
    /// A path (`./stop-app.sh`) with no file at it, taken from the working directory.
    NoFile(PathBuf),
    NotExecutable(PathBuf),
    /// A name no directory of the `PATH` it runs with holds.
    NotOnPath,
}

/// A call of an action with its arguments, as a playbook writes it:
/// `action: NAME` and `with: {…}`.
#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(tag = "action", content = "with", deny_unknown_fields)]
pub enum Call {
    #[serde(rename = "shell")]
    Shell(shell::Shell),
    #[serde(rename = "sqlite.query")]
    SqliteQuery(sqlite::Query),
    #[serde(rename = "sqlite.exec")]
    SqliteExec(sqlite::Exec),
    #[serde(rename = "sqlite.quiescent")]
    SqliteQuiescent(sqlite::Quiescent),
    #[serde(rename = "sqlite.fingerprint")]
    SqliteFingerprint(sqlite::Fingerprint),
    #[serde(rename = "sqlite.compare")]
    SqliteCompare(sqlite::Compare),
    #[serde(rename = "backup.create")]
    BackupCreate(backup::Create),
    #[serde(rename = "backup.list")]
    BackupList(backup::List),
    #[serde(rename = "backup.select")]
    BackupSelect(backup::Select),
    #[serde(rename = "backup.verify")]
    BackupVerify(backup::Verify),
    #[serde(rename = "backup.restore")]
    BackupRestore(backup::Restore),
    #[serde(rename = "backup.delete")]
    BackupDelete(backup::Delete),
    #[serde(rename = "http.get")]
    HttpGet(http::Get),
    #[serde(rename = "notify.email")]
    NotifyEmail(notify::Email),
    #[serde(rename = "assert")]
    Assert(assert::Assert),
    #[serde(rename = "confirm")]
    Confirm(confirm::Confirm),
    #[serde(rename = "fleet")]
    Fleet(fleet::Fleet),
}

/// Every action name, for "did you mean" and for the documentation test.
pub const NAMES: &[&str] = &[
    "shell",
    "sqlite.query",
    "sqlite.exec",
    "sqlite.quiescent",
    "sqlite.fingerprint",
    "sqlite.compare",
    "backup.create",
    "backup.list",
    "backup.select",
    "backup.verify",
    "backup.restore",
    "backup.delete",
    "http.get",
    "notify.email",
    "assert",
    "confirm",
    "fleet",
];

/// `expr` for the action of whichever kind `call` is: one list of the
/// kinds, however the call is borrowed.
macro_rules! each_call {
    ($call:expr, $a:ident => $expr:expr) => {
        match $call {
            Call::Shell($a) => $expr,
            Call::SqliteQuery($a) => $expr,
            Call::SqliteExec($a) => $expr,
            Call::SqliteQuiescent($a) => $expr,
            Call::SqliteFingerprint($a) => $expr,
            Call::SqliteCompare($a) => $expr,
            Call::BackupCreate($a) => $expr,
            Call::BackupList($a) => $expr,
            Call::BackupSelect($a) => $expr,
            Call::BackupVerify($a) => $expr,
            Call::BackupRestore($a) => $expr,
            Call::BackupDelete($a) => $expr,
            Call::HttpGet($a) => $expr,
            Call::NotifyEmail($a) => $expr,
            Call::Assert($a) => $expr,
            Call::Confirm($a) => $expr,
            Call::Fleet($a) => $expr,
        }
    };
}

impl Call {
    /// Builds a call from an action name and its (rendered) arguments.
    pub fn new(action: &str, with: Json) -> Result<Call, ArgumentError> {
        let mut tagged = Map::new();
        tagged.insert("action".into(), Json::String(action.to_owned()));
        // An action without arguments may omit `with`.
        let with = if with.is_null() {
            Json::Object(Map::new())
        } else {
            with
        };
        tagged.insert("with".into(), with);
        serde_path_to_error::deserialize(Json::Object(tagged)).map_err(|err| {
            let path = err
                .path()
                .iter()
                .skip(1) // the `with` segment
                .map(|seg| match seg {
                    serde_path_to_error::Segment::Seq { index } => {
                        crate::node::PathSegment::Index(*index)
                    }
                    serde_path_to_error::Segment::Map { key } => {
                        crate::node::PathSegment::Key(key.clone())
                    }
                    serde_path_to_error::Segment::Enum { variant } => {
                        crate::node::PathSegment::Key(variant.clone())
                    }
                    serde_path_to_error::Segment::Unknown => {
                        crate::node::PathSegment::Key(String::new())
                    }
                })
                .collect();
            ArgumentError {
                path,
                message: err.into_inner().to_string(),
            }
        })
    }

    pub fn action_mut(&mut self) -> &mut dyn Action {
        each_call!(self, a => a)
    }

    pub fn action(&self) -> &dyn Action {
        each_call!(self, a => a)
    }
}

/// An argument that does not fit the action, with where in `with` it is.
pub struct ArgumentError {
    pub path: Vec<crate::node::PathSegment>,
    pub message: String,
}

/// What every action can do.
pub trait Action: fmt::Debug {
    /// Whether running it can change anything outside the run directory.
    /// Only actions that cannot are run by a dry run and allowed as checks.
    fn mutates(&self) -> bool;

    /// Whether, once it has run, what checks read may differ from what a dry
    /// run sees before it. Commands, questions and e-mails are taken not to
    /// change the databases the checks read: a dry run marks commands as
    /// unpredictable instead, and goes on predicting from the state it sees.
    fn invalidates_reads(&self) -> bool {
        self.mutates()
    }

    /// One line saying what it would do, arguments resolved: the dry run's view.
    fn describe(&self) -> String;

    /// Expressions among the arguments that are evaluated at run time
    /// (rather than rendered beforehand); analysis checks their variables.
    fn expressions(&self) -> Vec<&str> {
        Vec::new()
    }

    /// Template files among the arguments (relative to the playbook's
    /// directory); analysis compiles them and checks their variables.
    fn template_files(&self) -> Vec<&std::path::Path> {
        Vec::new()
    }

    /// What is wrong with its arguments that their types cannot say (one of
    /// two arguments required), found by `check` as well as by the run.
    fn invalid(&self) -> Option<String> {
        None
    }

    /// Every file and directory it reads or writes (besides the run
    /// directory), to be pointed elsewhere: a dry run runs a change for
    /// real only when it can point each of them at a throwaway copy.
    fn files_mut(&mut self) -> Vec<&mut PathBuf> {
        Vec::new()
    }

    /// What it will fall short of, known before it runs (an e-mail that
    /// will only be written to the outbox): a dry run predicts the ⚠.
    fn foreseen_warning(&self) -> Option<&'static str> {
        None
    }

    /// The program it starts and where that program is, found the way the
    /// run will look for it: `check` reports one that is not there, and a
    /// dry run knows which files a command it does not run names.
    fn command(&self) -> Option<CommandLine> {
        None
    }

    /// What a dry run shows for a mutating action: by default its
    /// description; an action may render more (an e-mail, its body).
    fn preview(&self, ctx: &Context<'_>) -> Result<String, Failure> {
        let _ = ctx;
        Ok(self.describe())
    }

    fn run(&self, ctx: &Context<'_>) -> Result<Outputs, Failure>;
}

/// What the executor lends an action for one attempt.
pub struct Context<'a> {
    /// The step's full id, for what the operator is shown.
    pub step: &'a str,
    pub dry_run: bool,
    /// `--yes`: manual confirmations are given in advance.
    pub yes: bool,
    pub timeout: Option<Duration>,
    /// The run directory, for files an action leaves as evidence (none in a dry run).
    pub run_dir: Option<PathBuf>,
    /// The directory of the playbook the step is written in: relative
    /// files an argument names are found from it.
    pub base: &'a std::path::Path,
    /// How a fleet reaches its hosts, as the operator said at the run.
    pub remote: &'a crate::cli::RemoteArgs,
    /// Evaluates an expression in the step's scope.
    pub eval: &'a dyn Fn(&str) -> Result<Json, String>,
    /// Renders a template file named by an argument, in the step's scope.
    pub render_file: &'a dyn Fn(&std::path::Path) -> Result<String, String>,
    /// Replaces secret values by `***` in text about to leave runbook.
    pub redact: &'a dyn Fn(&str) -> String,
}

/// How an action can fail.
#[derive(Debug, thiserror::Error)]
pub enum Failure {
    #[error("{0}")]
    Failed(String),
    #[error("timed out after {}", humantime::format_duration(*.0))]
    TimedOut(Duration),
    /// The operator said no: the run stops, no fallback is tried.
    #[error("{0}")]
    Declined(String),
    /// Failed, with outputs that say what it did before it failed (a
    /// fleet's report): recorded as the failed step's outputs.
    #[error("{0}")]
    Reported(String, Outputs),
    /// A dry run's preview found that the step would fail (a fleet whose
    /// hosts cannot be reached): the dry run predicts the failure.
    #[error("{0}")]
    Foreseen(String),
}

impl Failure {
    pub fn failed(message: impl fmt::Display) -> Failure {
        Failure::Failed(message.to_string())
    }
}

/// A text argument that also takes numbers and booleans, since a `{{ expr }}`
/// keeps its native value and `port: "{{ port }}"` should still be text.
#[derive(Clone, Debug, PartialEq)]
pub struct Text(pub String);

impl schemars::JsonSchema for Text {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "Text".into()
    }

    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "description": "text (a number or boolean is taken as its text)",
            "type": ["string", "number", "boolean"]
        })
    }
}

impl<'de> Deserialize<'de> for Text {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Text, D::Error> {
        match Json::deserialize(d)? {
            Json::String(s) => Ok(Text(s)),
            Json::Number(n) => Ok(Text(n.to_string())),
            Json::Bool(b) => Ok(Text(b.to_string())),
            other => Err(serde::de::Error::custom(format!(
                "expected text, found {}",
                json_kind(&other)
            ))),
        }
    }
}

impl fmt::Display for Text {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

pub fn json_kind(v: &Json) -> &'static str {
    match v {
        Json::Null => "null",
        Json::Bool(_) => "a boolean",
        Json::Number(_) => "a number",
        Json::String(_) => "a string",
        Json::Array(_) => "a list",
        Json::Object(_) => "a mapping",
    }
}

/// Duration arguments (`5s`, `1h 30m`), shared by the actions that take one.
pub(crate) mod duration_opt {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer};

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
        let s = String::deserialize(d)?;
        humantime::parse_duration(&s)
            .map(Some)
            .map_err(|err| serde::de::Error::custom(format!("`{s}` is not a duration: {err}")))
    }
}

/// Shortens a long value for one-line descriptions.
pub fn ellipsize(s: &str, max: usize) -> String {
    let one_line = s.split_whitespace().collect::<Vec<_>>().join(" ");
    if one_line.chars().count() <= max {
        one_line
    } else {
        let cut: String = one_line.chars().take(max.saturating_sub(1)).collect();
        format!("{cut}…")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_listed_name_is_an_action_and_unknown_names_are_not() {
        for name in NAMES {
            if let Err(e) = Call::new(name, Json::Null) {
                assert!(
                    !e.message.contains("unknown variant"),
                    "{name}: {}",
                    e.message
                );
            }
        }
        let err = Call::new("no.such", Json::Null).err().map(|e| e.message);
        assert!(err.is_some_and(|m| m.contains("unknown variant")));
    }
}
