//! A gate that holds requests until a test opens it: the way to make two
//! copies race in a chosen order without timing (a copy held at its blob
//! GETs cannot reach its tag PUT until the test says so).

use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

#[derive(Clone, Default, Debug)]
pub struct Gate {
    inner: Arc<(Mutex<GateState>, Condvar)>,
}

#[derive(Default, Debug)]
struct GateState {
    open: bool,
    /// Requests that arrived while the gate was shut.
    held: u64,
}

impl Gate {
    pub fn new() -> Gate {
        Gate::default()
    }

    /// Lets every held and later request through.
    pub fn open(&self) {
        let (state, changed) = &*self.inner;
        state.lock().unwrap().open = true;
        changed.notify_all();
    }

    /// How many requests have been held so far.
    pub fn held(&self) -> u64 {
        self.inner.0.lock().unwrap().held
    }

    /// Waits until at least `n` requests are held (or `limit` passes).
    pub fn wait_held(&self, n: u64, limit: Duration) -> bool {
        let (state, changed) = &*self.inner;
        let guard = state.lock().unwrap();
        let (guard, _) = changed
            .wait_timeout_while(guard, limit, |s| s.held < n)
            .unwrap();
        guard.held >= n
    }

    /// Called by the proxy: returns once the gate is open.
    pub(crate) fn pass(&self) {
        let (state, changed) = &*self.inner;
        let mut guard = state.lock().unwrap();
        if guard.open {
            return;
        }
        guard.held += 1;
        changed.notify_all();
        while !guard.open {
            guard = changed.wait(guard).unwrap();
        }
    }
}
