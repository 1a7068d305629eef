//! The control channel between a fleet controller and the run it starts on
//! a host, carried by the ssh session's stdin. The first line is the
//! [`Order`]: the playbook with its includes and templates, the variables,
//! the secrets (which so never appear in argv or in a file on the host),
//! and what to do. Later lines are [`Message`]s; the end of the stream (the
//! controller gone, the link dead) is taken as a request to stop, like
//! Ctrl-C: the step under way finishes, the `always` steps run, and the
//! host's journal is left for `resume`. The host answers on stdout with the
//! run's events, one JSON object per line, as `--json` prints them.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::mpsc;

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
    /// The controller has a terminal: a question a step asks here is put
    /// to the operator there, and answered over this channel.
    #[serde(default)]
    pub can_ask: bool,
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
    /// The operator's answer to the question `id`.
    Answer { id: u64, yes: bool },
}

/// A question a step on the host puts to the operator, written on stdout
/// among the events (`{"question": {…}}`), for the controller to ask.
#[derive(Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct Question {
    pub id: u64,
    /// The step that asks.
    pub asker: String,
    pub question: String,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Said {
    Question(Question),
}

/// The questions waiting for the controller's answer, when there is a
/// controller to ask.
static RELAY: std::sync::OnceLock<Relay> = std::sync::OnceLock::new();

#[derive(Default)]
struct Relay {
    next: std::sync::atomic::AtomicU64,
    waiting: std::sync::Mutex<Option<HashMap<u64, mpsc::Sender<bool>>>>,
}

/// From now on, questions go to the controller.
pub fn relay_questions() {
    let relay = Relay::default();
    if let Ok(mut w) = relay.waiting.lock() {
        *w = Some(HashMap::new());
    }
    let _ = RELAY.set(relay);
}

/// Whether questions go to a controller.
pub fn relaying() -> bool {
    RELAY.get().is_some()
}

/// Asks the controller's operator, and waits for the answer; an error if
/// the controller went away first.
pub fn ask_controller(asker: &str, question: &str) -> Result<bool, String> {
    use std::io::Write as _;
    let relay = RELAY.get().ok_or("no controller to ask")?;
    let id = relay.next.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    let (tx, rx) = mpsc::channel();
    match relay
        .waiting
        .lock()
        .ok()
        .and_then(|mut w| w.as_mut().map(|w| w.insert(id, tx)))
    {
        Some(_) => {}
        None => return Err("the controller went away before the question could be asked".into()),
    }
    let said = Said::Question(Question {
        id,
        asker: asker.to_owned(),
        question: question.to_owned(),
    });
    let line = serde_json::to_string(&said).map_err(|e| e.to_string())?;
    {
        let mut out = std::io::stdout().lock();
        writeln!(out, "{line}")
            .and_then(|()| out.flush())
            .map_err(|e| format!("the question could not be sent: {e}"))?;
    }
    rx.recv()
        .map_err(|_| "the controller went away before the operator answered".to_owned())
}

/// The operator's answer, from the controller.
pub fn answer(id: u64, yes: bool) {
    if let Some(relay) = RELAY.get() {
        if let Some(tx) = relay
            .waiting
            .lock()
            .ok()
            .and_then(|mut w| w.as_mut()?.remove(&id))
        {
            let _ = tx.send(yes);
        }
    }
}

/// The controller is gone: no answer will come to any question.
pub fn no_more_answers() {
    if let Some(relay) = RELAY.get() {
        if let Ok(mut w) = relay.waiting.lock() {
            *w = None;
        }
    }
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
