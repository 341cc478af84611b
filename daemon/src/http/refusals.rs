//! How refused API calls reach the audit log: the first refusal of an actor's action in a
//! window is recorded, the rest of the window's are counted and reported with the next row
//! recorded for the same actor and action. Every refusal still counts in
//! `sirend_api_refused_total`. An unauthenticated client sending thousands of writes a second
//! must not be able to fill the disk with audit rows (it did: 5,500 rows a second).

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// How long refusals of one actor's action are summarised after one is recorded.
const WINDOW: Duration = Duration::from_secs(60);

/// The refusals recorded and left out, by actor and action.
#[derive(Debug, Default)]
pub struct RefusalLog {
    windows: Mutex<HashMap<(String, String), Window>>,
}

#[derive(Debug)]
struct Window {
    started: Instant,
    left_out: u64,
}

impl RefusalLog {
    /// Whether to record a refusal of `actor`'s `action` at `now`: `Some(n)` with the number
    /// of refusals left out since the last one recorded, or `None` to leave this one out.
    /// Actors are token names, `anonymous` or `invalid-token`, and actions a fixed set, so the
    /// table stays small.
    pub fn admit(&self, actor: &str, action: &str, now: Instant) -> Option<u64> {
        let mut windows = self.windows.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        match windows.get_mut(&(actor.to_owned(), action.to_owned())) {
            Some(w) if now.duration_since(w.started) < WINDOW => {
                w.left_out += 1;
                None
            }
            Some(w) => {
                let left_out = std::mem::take(&mut w.left_out);
                w.started = now;
                Some(left_out)
            }
            None => {
                windows.insert((actor.to_owned(), action.to_owned()), Window { started: now, left_out: 0 });
                Some(0)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_refusal_per_actor_and_action_per_window_is_recorded_with_the_count_left_out() {
        let t0 = Instant::now();
        let log = RefusalLog::default();
        assert_eq!(log.admit("anonymous", "acknowledge", t0), Some(0));
        for i in 1..=999 {
            assert_eq!(log.admit("anonymous", "acknowledge", t0 + Duration::from_millis(i)), None);
        }
        assert_eq!(log.admit("anonymous", "cancel", t0), Some(0), "another action has its own window");
        assert_eq!(log.admit("watch", "acknowledge", t0), Some(0), "another actor too");
        assert_eq!(log.admit("anonymous", "acknowledge", t0 + WINDOW), Some(999));
        assert_eq!(log.admit("anonymous", "acknowledge", t0 + WINDOW * 2), Some(0));
    }
}
