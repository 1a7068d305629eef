//! The one request to stop at the next step boundary, whoever makes it:
//! Ctrl-C on this terminal, or, for a run a fleet controller started over
//! ssh, the controller saying so on the control channel or going away
//! (EOF). The step under way finishes (a transaction commits or rolls back
//! whole), the `always` steps run, and the run ends as interrupted.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};

static FLAG: OnceLock<Arc<AtomicBool>> = OnceLock::new();

/// The process's flag, with the Ctrl-C handler installed the first time.
pub fn flag() -> Arc<AtomicBool> {
    Arc::clone(FLAG.get_or_init(|| {
        let flag = Arc::new(AtomicBool::new(false));
        let set = Arc::clone(&flag);
        // One handler per process: a second run in the same process keeps it.
        let _ = ctrlc::set_handler(move || {
            set.store(true, Ordering::SeqCst);
            eprintln!("interrupted: stopping after the step under way; the always steps will run");
        });
        flag
    }))
}

/// Asks the run to stop at its next step boundary, as Ctrl-C would.
pub fn request() {
    flag().store(true, Ordering::SeqCst);
}

/// Whether a stop has been asked for.
pub fn requested() -> bool {
    FLAG.get().is_some_and(|f| f.load(Ordering::SeqCst))
}
