//! Fault injection, for the reliability suite: a process told to by its
//! environment kills itself at an exact point of a run, so that a test can
//! stop runbook at every journal event rather than at random moments.
//!
//! - `RUNBOOK_FAULT_AT=N`: right after this process's N-th journal event
//!   (counted from 1) is written, send itself `RUNBOOK_FAULT_SIGNAL`
//!   (`KILL`, the default, or `INT`, as Ctrl-C would).
//! - `RUNBOOK_FAULT_DELAY_MS=D`: send it D milliseconds later instead, from
//!   another thread, while the run goes on (a kill inside a commit).
//!
//! Unset, each journal event costs one comparison.

use std::sync::OnceLock;
use std::time::Duration;

struct Fault {
    at: u64,
    signal: libc::c_int,
    delay: Option<Duration>,
}

fn configured() -> Option<&'static Fault> {
    static FAULT: OnceLock<Option<Fault>> = OnceLock::new();
    FAULT
        .get_or_init(|| {
            let at = std::env::var("RUNBOOK_FAULT_AT").ok()?.parse().ok()?;
            let signal = match std::env::var("RUNBOOK_FAULT_SIGNAL").as_deref() {
                Ok("INT") => libc::SIGINT,
                _ => libc::SIGKILL,
            };
            let delay = std::env::var("RUNBOOK_FAULT_DELAY_MS")
                .ok()
                .and_then(|d| d.parse().ok())
                .map(Duration::from_millis);
            Some(Fault { at, signal, delay })
        })
        .as_ref()
}

/// Reads the configuration from the environment now, before runbook takes
/// its own variables out of it.
pub fn configure() {
    let _ = configured();
}

/// Called after the `n`-th journal event of this process is written.
pub fn journal_event(n: u64) {
    let Some(fault) = configured() else {
        return;
    };
    if n != fault.at {
        return;
    }
    let signal = fault.signal;
    let raise = move || {
        // SAFETY: raise has no preconditions; the signal is KILL or INT,
        // whose disposition (death, or the Ctrl-C handler) is the point.
        unsafe {
            libc::raise(signal);
        }
    };
    match fault.delay {
        None => raise(),
        Some(delay) => {
            std::thread::spawn(move || {
                std::thread::sleep(delay);
                raise();
            });
        }
    }
}
