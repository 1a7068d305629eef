//! Secret values given through the environment (`RUNBOOK_SECRET_<NAME>`,
//! the variable `<name>`). As runbook starts, they are taken into its
//! keeping and every `RUNBOOK_*` variable is taken out of its environment,
//! before any thread or child process exists, so no program a step starts
//! (a shell command, sendmail) inherits a secret or runbook's own settings:
//! a step that needs a secret gives it explicitly, through `env:` or
//! `stdin:`.

use std::sync::OnceLock;

/// Prefix of environment variables that hold secret variables.
pub const ENV_PREFIX: &str = "RUNBOOK_SECRET_";

static TAKEN: OnceLock<Vec<(String, String)>> = OnceLock::new();

/// Keeps the `RUNBOOK_SECRET_*` values and removes every `RUNBOOK_*`
/// variable from the process environment. Called once, after the command
/// line (`RUNBOOK_RUNS`) and fault injection have read theirs, while the
/// process has one thread.
pub fn take_environment() {
    let _ = TAKEN.set(in_environment());
    for (key, _) in std::env::vars_os() {
        if key.to_string_lossy().starts_with("RUNBOOK_") {
            std::env::remove_var(&key);
        }
    }
}

/// One secret given through the environment, by its lower-cased name
/// (`smtp_password` for `RUNBOOK_SECRET_SMTP_PASSWORD`): read from what
/// was taken at start, as the environment no longer holds it.
pub fn get(name: &str) -> Option<String> {
    from_environment()
        .into_iter()
        .find(|(n, _)| n == name)
        .map(|(_, value)| value)
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
