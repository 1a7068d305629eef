//! Progress of long actions (a backup's bytes, an integrity check, a large
//! transaction), for the terminal view's bar. Actions report; the view, when
//! there is a terminal, listens; otherwise reports go nowhere, at the cost
//! of one atomic load. It is a hook rather than an event because it is for
//! eyes only: the journal and `--json` would only be flooded by it. A
//! question put to the operator takes the screen from the bar for as long
//! as it waits for the answer ([`suspended`]).

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

type FleetHook = Box<dyn Fn(&crate::fleet::News) + Send + Sync>;

static FLEET: OnceLock<FleetHook> = OnceLock::new();

/// Installs the view of a fleet's hosts; the first one stays.
pub fn listen_fleet(hook: FleetHook) {
    let _ = FLEET.set(hook);
}

/// What a fleet's hosts are doing, for the view (from any thread).
pub fn fleet(news: &crate::fleet::News) {
    if let Some(hook) = FLEET.get() {
        hook(news);
    }
}

/// Runs its argument with the bar off the screen.
type Suspender = Box<dyn Fn(&mut dyn FnMut()) + Send + Sync>;

static SUSPEND: OnceLock<Suspender> = OnceLock::new();

/// Installs how the view takes its bar off the screen; the first one stays.
pub fn on_suspend(suspender: Suspender) {
    let _ = SUSPEND.set(suspender);
}

/// Runs `f` — a question and the wait for its answer — with the bar off the
/// screen and kept off until `f` returns, so that nothing draws over it.
pub fn suspended<T>(f: impl FnOnce() -> T) -> T {
    let mut f = Some(f);
    let mut out = None;
    if let Some(suspend) = SUSPEND.get() {
        suspend(&mut || {
            if let Some(f) = f.take() {
                out = Some(f());
            }
        });
    }
    match (out, f) {
        (Some(out), _) => out,
        (None, Some(f)) => f(),
        // The suspender ran it but it returned nothing: it cannot happen,
        // as `out` is set whenever `f` is taken.
        (None, None) => unreachable!("the suspended function ran without a result"),
    }
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
