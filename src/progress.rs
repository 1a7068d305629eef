//! Progress of long actions (a backup's bytes, an integrity check, a large
//! transaction), for the terminal view's bar. Actions report; the view, when
//! there is a terminal, listens; otherwise reports go nowhere, at the cost
//! of one atomic load. It is a hook rather than an event because it is for
//! eyes only: the journal and `--json` would only be flooded by it.

use std::sync::OnceLock;

/// How far an action has got.
#[derive(Clone, Copy, Debug)]
pub struct Update {
    /// What is being done, for the bar's label.
    pub what: &'static str,
    pub done: u64,
    /// Known for byte counts; unknown for SQLite's opaque steps.
    pub total: Option<u64>,
}

type Hook = Box<dyn Fn(Update) + Send + Sync>;

static HOOK: OnceLock<Hook> = OnceLock::new();

/// Installs the listener (the terminal view); the first one stays.
pub fn listen(hook: Hook) {
    let _ = HOOK.set(hook);
}

thread_local! {
    static SILENT: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

pub fn report(what: &'static str, done: u64, total: Option<u64>) {
    if let Some(hook) = HOOK.get() {
        if !SILENT.get() {
            hook(Update { what, done, total });
        }
    }
}

/// Runs `f` with this thread's reports dropped, when `silent`: work that
/// runs beside other work whose progress is the one shown, as one bar.
pub fn silently<T>(silent: bool, f: impl FnOnce() -> T) -> T {
    let was = SILENT.replace(silent);
    let out = f();
    SILENT.set(was);
    out
}

/// Whether this thread's reports are dropped: a thread it starts to share
/// its work should do as it does.
pub fn is_silent() -> bool {
    SILENT.get()
}

/// Reports SQLite's progress on a connection every so many virtual-machine
/// steps while a long statement runs (an integrity check, a big insert).
pub fn watch_sqlite(conn: &mut rusqlite::Connection, what: &'static str) {
    if HOOK.get().is_none() || SILENT.get() {
        return;
    }
    let mut ticks = 0u64;
    // Without the hook there is no bar to feed; a failure to install it
    // costs only the bar.
    let _ = conn.progress_handler(
        1_000_000,
        Some(move || {
            ticks += 1;
            report(what, ticks, None);
            false
        }),
    );
}
