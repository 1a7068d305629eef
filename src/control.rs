//! The control channel between a fleet controller and the run it starts on
//! a host, carried by the ssh session's stdin. The first line is the
//! [`Order`]: the playbook with its includes and templates, the variables,
//! the secrets (which so never appear in argv or in a file on the host),
//! and what to do. Later lines are [`Message`]s; the end of the stream (the
//! controller gone, the link dead) is taken as a request to stop, like
//! Ctrl-C: the step under way finishes, the `always` steps run, and the
//! host's journal is left for `resume`. The host answers on stdout with the
//! run's events, one JSON object per line, as `--json` prints them.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// What a controller asks of a host.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Order {
    /// Each file of the playbook's bundle by its path relative to the
    /// bundle (the playbook, its includes, its templates), with its text.
    pub files: BTreeMap<String, String>,
    /// The playbook to run, relative to the bundle.
    pub playbook: String,
    /// `--var` values, host variables included.
    pub vars: Vec<(String, String)>,
    /// Secret variables, by lower-cased name, as `RUNBOOK_SECRET_<NAME>`.
    #[serde(default)]
    pub secrets: Vec<(String, String)>,
    /// Manual confirmations given in advance.
    #[serde(default)]
    pub yes: bool,
    pub mode: Mode,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    /// The preflight: a dry run, refused if another run holds the install.
    DryRun,
    Run,
    /// Continue the run recorded in this run directory on the host.
    Resume(PathBuf),
}

/// What a controller may say after its order.
#[derive(Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Message {
    /// Stop at the next step boundary (the `always` steps run).
    Stop,
}

/// Where runbook keeps what it reuses on a host (shipped binaries and
/// playbook bundles): `$XDG_CACHE_HOME/runbook`, else `~/.cache/runbook`.
pub fn cache_dir() -> Option<PathBuf> {
    base("XDG_CACHE_HOME", ".cache").map(|d| d.join("runbook"))
}

/// Where a run started by a controller keeps its run directory:
/// `$XDG_STATE_HOME/runbook/runs`, else `~/.local/state/runbook/runs`.
pub fn runs_dir() -> Option<PathBuf> {
    base("XDG_STATE_HOME", ".local/state").map(|d| d.join("runbook").join("runs"))
}

fn base(xdg: &str, under_home: &str) -> Option<PathBuf> {
    let absolute = |v: std::ffi::OsString| {
        let p = PathBuf::from(v);
        p.is_absolute().then_some(p)
    };
    std::env::var_os(xdg).and_then(absolute).or_else(|| {
        std::env::var_os("HOME")
            .and_then(absolute)
            .map(|h| h.join(under_home))
    })
}
