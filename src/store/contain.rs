//! redb trusts its file: some damaged pages make it panic (an index out of bounds, a failed
//! assertion, invalid UTF-8 in a `&str` key) instead of returning an error, and an uncaught panic
//! ends the node with exit code 101 and a backtrace hint instead of a message saying what to do.
//! Every call into redb that reads the file runs through [`contained`], which turns such a panic
//! into an error the caller reports (naming the file and the way out).

use std::any::Any;
use std::cell::{Cell, RefCell};
use std::panic::{self, AssertUnwindSafe};
use std::sync::Once;

thread_local! {
    /// Set while this thread runs a contained call: its panics are reported by the caller.
    static CONTAINING: Cell<bool> = const { Cell::new(false) };
    /// Where the last contained panic happened, for the error text.
    static LOCATION: RefCell<Option<String>> = const { RefCell::new(None) };
}

static HOOK: Once = Once::new();

/// Wraps the process's panic hook once: a panic inside a contained call is not printed (the
/// caller turns it into an error with a hint), every other panic is reported as before.
fn install_hook() {
    HOOK.call_once(|| {
        let previous = panic::take_hook();
        panic::set_hook(Box::new(move |info| {
            if CONTAINING.with(Cell::get) {
                let at = info.location().map(|l| format!("{}:{}", short(l.file()), l.line()));
                LOCATION.with(|l| *l.borrow_mut() = at);
            } else {
                previous(info)
            }
        }));
    });
}

/// Runs `f`, returning its value, or the panic's message if it panicked. Whatever `f` touched
/// must not be trusted after an `Err` (the callers drop the database).
pub(super) fn contained<T>(f: impl FnOnce() -> T) -> Result<T, String> {
    install_hook();
    let outer = CONTAINING.with(|c| c.replace(true));
    let result = panic::catch_unwind(AssertUnwindSafe(f));
    CONTAINING.with(|c| c.set(outer));
    result.map_err(|payload| {
        let at = LOCATION.with(|l| l.borrow_mut().take()).map_or(String::new(), |at| format!(" at {at}"));
        format!("redb failed on the file's contents ({}{at})", message(payload.as_ref()))
    })
}

/// A dependency's source path from its crate dir on (`redb-4.6.0/src/...`), not the registry's.
fn short(file: &str) -> &str {
    file.rsplit_once("/registry/src/").map_or(file, |(_, rest)| rest.split_once('/').map_or(rest, |(_, r)| r))
}

fn message(payload: &(dyn Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_owned()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "no message".to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_panic_becomes_an_error_with_its_message_and_place() {
        let err = contained(|| -> u8 { panic!("page 7 is not a branch") }).unwrap_err();
        assert!(err.contains("page 7 is not a branch") && err.contains("contain.rs"), "{err}");
        assert_eq!(contained(|| 5), Ok(5));
        // Nested calls restore the outer state.
        assert_eq!(contained(|| contained(|| -> u8 { panic!("inner") }).is_err()), Ok(true));
    }
}
