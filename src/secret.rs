//! Secret values given through the environment (`RUNBOOK_SECRET_<NAME>`,
//! the variable `<name>`). They are taken out of runbook's own environment
//! as it starts, before any thread or child process exists, so no program
//! a step starts (a shell command, sendmail) inherits them: a step that
//! needs one gives it explicitly, through `env:` or `stdin:`.

use std::sync::OnceLock;

/// Prefix of environment variables that hold secret variables.
pub const ENV_PREFIX: &str = "RUNBOOK_SECRET_";

static TAKEN: OnceLock<Vec<(String, String)>> = OnceLock::new();

/// Moves every `RUNBOOK_SECRET_*` variable out of the process environment
/// into runbook's keeping. Called once, first thing, while the process has
/// one thread.
pub fn take_from_environment() {
    let found = in_environment();
    for (key, _) in std::env::vars_os() {
        if key.to_string_lossy().starts_with(ENV_PREFIX) {
            std::env::remove_var(&key);
        }
    }
    let _ = TAKEN.set(found);
}

/// Takes every other `RUNBOOK_*` variable out of the process environment
/// too, once the command line (`RUNBOOK_RUNS`) has been read. Called while
/// the process has one thread.
pub fn forget_runbook_environment() {
    for (key, _) in std::env::vars_os() {
        if key.to_string_lossy().starts_with("RUNBOOK_") {
            std::env::remove_var(&key);
        }
    }
}

/// The secret variables given through the environment, by lower-cased name.
pub fn from_environment() -> Vec<(String, String)> {
    TAKEN.get().cloned().unwrap_or_else(in_environment)
}

fn in_environment() -> Vec<(String, String)> {
    std::env::vars()
        .filter_map(|(k, v)| {
            k.strip_prefix(ENV_PREFIX)
                .filter(|name| !name.is_empty())
                .map(|name| (name.to_ascii_lowercase(), v))
        })
        .collect()
}
