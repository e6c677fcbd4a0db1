//! Ctrl-C. The first press asks the conversion to stop before its next tensor: the run then
//! returns [`Error::Interrupted`], whose unwinding removes the temporary file, and the process
//! exits with 130. A second press (a tensor taking long) removes the temporary file from the
//! handler and exits at once. Either way no file is left that looks like a model.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;

use crate::error::{Error, Result};

static REQUESTED: AtomicBool = AtomicBool::new(false);
/// The temporary file being written, for the second press to remove.
static TEMP_FILE: Mutex<Option<PathBuf>> = Mutex::new(None);

/// Installs the handler (once, at start-up). Without one (no signal support), Ctrl-C keeps its
/// default effect, and the temporary file is left (its name says what it is).
pub fn install() {
    let _ = ctrlc::set_handler(|| {
        if REQUESTED.swap(true, Ordering::SeqCst) {
            // try_lock: the main thread may hold it for a moment; never wait in the handler.
            if let Ok(Some(tmp)) = TEMP_FILE.try_lock().as_deref() {
                let _ = std::fs::remove_file(tmp);
            }
            std::process::exit(Error::Interrupted.exit_code());
        }
    });
}

/// Records (or, with `None`, forgets) the temporary file a second press must remove.
pub fn set_temp_file(path: Option<PathBuf>) {
    if let Ok(mut slot) = TEMP_FILE.lock() {
        *slot = path;
    }
}

/// `Err(Interrupted)` once Ctrl-C was pressed: called between tensors.
pub fn check() -> Result<()> {
    if REQUESTED.load(Ordering::Relaxed) {
        Err(Error::Interrupted)
    } else {
        Ok(())
    }
}
