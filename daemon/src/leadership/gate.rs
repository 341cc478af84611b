//! Whether this daemon may put a command on a link now. The link tasks look before every
//! frame they write; the gate closes by itself at the end of the leader's commanding time,
//! whether or not anything else in the daemon is still running.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

/// Shared by the lease keeper (which opens it) and the link tasks (which look).
#[derive(Debug, Clone)]
pub struct CommandGate(Arc<Inner>);

#[derive(Debug)]
struct Inner {
    base: Instant,
    /// Open until this many µs after `base`; `u64::MAX`: always (a daemon alone).
    until_us: AtomicU64,
}

impl CommandGate {
    /// Open for good: a daemon alone on its store commands whenever it runs.
    pub fn always_open() -> Self {
        Self(Arc::new(Inner { base: Instant::now(), until_us: AtomicU64::new(u64::MAX) }))
    }

    /// Closed until a lease opens it.
    pub fn closed() -> Self {
        Self(Arc::new(Inner { base: Instant::now(), until_us: AtomicU64::new(0) }))
    }

    /// Open until `until`; closed for `None`.
    pub fn open_until(&self, until: Option<Instant>) {
        let us = until.map_or(0, |u| self.micros(u));
        self.0.until_us.store(us, Ordering::SeqCst);
    }

    fn micros(&self, at: Instant) -> u64 {
        u64::try_from(at.saturating_duration_since(self.0.base).as_micros()).unwrap_or(u64::MAX - 1)
    }

    /// Whether a command may go out now.
    pub fn is_open(&self) -> bool {
        let until = self.0.until_us.load(Ordering::SeqCst);
        until == u64::MAX || self.micros(Instant::now()) < until
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn the_gate_closes_by_itself_at_its_deadline() {
        let gate = CommandGate::closed();
        assert!(!gate.is_open());
        gate.open_until(Some(Instant::now() + Duration::from_millis(30)));
        assert!(gate.is_open());
        std::thread::sleep(Duration::from_millis(40));
        assert!(!gate.is_open(), "nobody closed it: its deadline did");
        gate.open_until(Some(Instant::now() + Duration::from_secs(60)));
        gate.open_until(None);
        assert!(!gate.is_open());
        assert!(CommandGate::always_open().is_open());
    }
}
