//! Ctrl-C. The first press asks the running command to stop after the token it is on: it then
//! prints what it has (and its stats) and the process exits with code 130, as a shell expects
//! of an interrupted program. A second press ends the process at once.

use std::sync::atomic::{AtomicBool, Ordering};

static REQUESTED: AtomicBool = AtomicBool::new(false);

/// Exit code of an interrupted command (128 + SIGINT).
pub(crate) const EXIT_CODE: i32 = 130;

/// Installs the handler (once, at start-up). Without one (e.g. no signal support), Ctrl-C keeps
/// its default effect.
pub(crate) fn install() {
    let _ = ctrlc::set_handler(|| {
        if REQUESTED.swap(true, Ordering::SeqCst) {
            std::process::exit(EXIT_CODE);
        }
    });
}

/// Whether Ctrl-C was pressed.
pub(crate) fn requested() -> bool {
    REQUESTED.load(Ordering::Relaxed)
}
