//! Maintenance windows: a crew has taken a siren, or every siren of a zone, out of service
//! for a while (who, why, until when). A siren in maintenance does not page, is not sounded
//! by test soundings (a crew may be on its mast) and is reported `in_maintenance` rather than
//! failed; the coverage it costs is shown apart from unexplained loss (docs/operations.md,
//! "Maintenance").
//!
//! Sans-IO: the book of windows, which siren a window covers, and when windows lapse. The HTTP
//! API starts and ends windows, the engine expires them and tells coverage and campaigns.

use jiff::Timestamp;

/// What a window covers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Scope {
    Siren(String),
    /// A zone path and every zone inside it.
    Zone(String),
}

impl Scope {
    /// `siren` or `zone`, as stored.
    pub fn kind(&self) -> &'static str {
        match self {
            Scope::Siren(_) => "siren",
            Scope::Zone(_) => "zone",
        }
    }

    /// The siren id or zone path.
    pub fn target(&self) -> &str {
        match self {
            Scope::Siren(s) | Scope::Zone(s) => s,
        }
    }

    /// From the stored kind and target.
    pub fn from_parts(kind: &str, target: String) -> Option<Self> {
        match kind {
            "siren" => Some(Scope::Siren(target)),
            "zone" => Some(Scope::Zone(target)),
            _ => None,
        }
    }

    /// Whether it covers siren `id` in zone `zone`.
    pub fn covers(&self, id: &str, zone: &str) -> bool {
        match self {
            Scope::Siren(s) => s == id,
            Scope::Zone(z) => crate::coverage::within(zone, z),
        }
    }
}

/// How a window ended before its `until`, or that it lapsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ended {
    pub at: Timestamp,
    /// Who ended it; empty when it lapsed at `until`.
    pub by: String,
    pub note: String,
}

/// One maintenance window.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Window {
    pub id: u32,
    pub scope: Scope,
    pub by: String,
    pub reason: String,
    pub from: Timestamp,
    pub until: Timestamp,
    pub ended: Option<Ended>,
}

impl Window {
    /// Whether it holds at `now`.
    pub fn in_force(&self, now: Timestamp) -> bool {
        self.ended.is_none() && self.from <= now && now < self.until
    }

    /// One line for events, reports and logs: `by crew-n until 2026-12-06T18:00:00Z: mast repair`.
    pub fn summary(&self) -> String {
        format!("{} {} by {} until {}: {}", self.scope.kind(), self.scope.target(), self.by, self.until, self.reason)
    }
}

/// The longest window one request may open: anything longer is a decommissioning, not
/// maintenance, and must not silence a siren's alerts by a typo in a year.
pub const MAX_WINDOW: jiff::SignedDuration = jiff::SignedDuration::from_hours(24 * 31);

/// Why a window was not opened or ended.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refused {
    #[error("until: must be in the future")]
    UntilPast,
    #[error("until: at most 31 days ahead (a longer absence is a change of the fleet file)")]
    TooLong,
    #[error("reason: say why the siren is out of service")]
    NoReason,
    #[error("no maintenance window {0}")]
    Unknown(u32),
    #[error("maintenance window {0} has already ended")]
    AlreadyEnded(u32),
}

/// The windows that hold or will hold, and what changed since the engine last looked.
#[derive(Debug, Clone, Default)]
pub struct Book {
    windows: Vec<Window>,
    next_id: u32,
    /// Moves at every change, so the engine knows when to tell coverage and campaigns.
    version: u64,
}

impl Book {
    /// A book of the windows the store kept open, numbering new ones after `last_id`. Those
    /// that lapsed while the daemon was not running are ended at the next [`Book::expire`].
    pub fn restore(windows: Vec<Window>, last_id: u32) -> Self {
        let windows: Vec<Window> = windows.into_iter().filter(|w| w.ended.is_none()).collect();
        let next_id = windows.iter().map(|w| w.id).max().unwrap_or(0).max(last_id) + 1;
        Self { windows, next_id, version: 1 }
    }

    pub fn version(&self) -> u64 {
        self.version
    }

    /// Windows not ended (some may have lapsed and not been expired yet).
    pub fn open(&self) -> &[Window] {
        &self.windows
    }

    /// Opens a window from `now` to `until`.
    pub fn start(
        &mut self,
        scope: Scope,
        by: &str,
        reason: &str,
        until: Timestamp,
        now: Timestamp,
    ) -> Result<Window, Refused> {
        if reason.trim().is_empty() {
            return Err(Refused::NoReason);
        }
        if until <= now {
            return Err(Refused::UntilPast);
        }
        if until.duration_since(now) > MAX_WINDOW {
            return Err(Refused::TooLong);
        }
        let window = Window {
            id: self.next_id.max(1),
            scope,
            by: by.to_owned(),
            reason: reason.to_owned(),
            from: now,
            until,
            ended: None,
        };
        self.next_id = window.id + 1;
        self.windows.push(window.clone());
        self.version += 1;
        Ok(window)
    }

    /// Ends window `id` now.
    pub fn end(&mut self, id: u32, by: &str, note: &str, now: Timestamp) -> Result<Window, Refused> {
        let Some(at) = self.windows.iter().position(|w| w.id == id) else {
            return Err(if id < self.next_id { Refused::AlreadyEnded(id) } else { Refused::Unknown(id) });
        };
        let mut window = self.windows.remove(at);
        window.ended = Some(Ended { at: now, by: by.to_owned(), note: note.to_owned() });
        self.version += 1;
        Ok(window)
    }

    /// Removes and returns the windows that lapsed by `now`.
    pub fn expire(&mut self, now: Timestamp) -> Vec<Window> {
        let (lapsed, kept): (Vec<Window>, Vec<Window>) =
            std::mem::take(&mut self.windows).into_iter().partition(|w| now >= w.until);
        self.windows = kept;
        if !lapsed.is_empty() {
            self.version += 1;
        }
        lapsed
            .into_iter()
            .map(|mut w| {
                w.ended = Some(Ended { at: w.until, by: String::new(), note: "lapsed".to_owned() });
                w
            })
            .collect()
    }

    /// The window that holds siren `id` of `zone` at `now`, if any (a siren's own window before
    /// its zone's: it says more).
    pub fn covering(&self, id: &str, zone: &str, now: Timestamp) -> Option<&Window> {
        let mut holding = self.windows.iter().filter(|w| w.in_force(now) && w.scope.covers(id, zone));
        let first = holding.next()?;
        Some(std::iter::once(first).chain(holding).find(|w| matches!(w.scope, Scope::Siren(_))).unwrap_or(first))
    }

    /// Whether any window holds at `now`.
    pub fn any(&self, now: Timestamp) -> bool {
        self.windows.iter().any(|w| w.in_force(now))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: i64) -> Timestamp {
        Timestamp::from_second(1_800_000_000 + s).unwrap()
    }

    #[test]
    fn a_zone_window_covers_its_zones_and_a_siren_window_one_siren() {
        let mut book = Book::default();
        let zone = book.start(Scope::Zone("hz/c".into()), "crew", "mast work", at(3600), at(0)).unwrap();
        assert!(book.covering("A", "hz/c/t1", at(10)).is_some());
        assert!(book.covering("A", "hz/c", at(10)).is_some());
        assert!(book.covering("A", "hz/cc", at(10)).is_none(), "a sibling zone with the same prefix");
        let own = book.start(Scope::Siren("A".into()), "crew", "battery", at(600), at(0)).unwrap();
        assert_eq!(book.covering("A", "hz/c", at(10)).map(|w| w.id), Some(own.id), "its own window first");
        assert_eq!(book.covering("B", "hz/c", at(10)).map(|w| w.id), Some(zone.id));
        assert!(book.covering("B", "hz/e", at(10)).is_none());
    }

    #[test]
    fn windows_lapse_at_until_and_end_when_ended() {
        let mut book = Book::default();
        let w = book.start(Scope::Siren("A".into()), "crew", "battery", at(600), at(0)).unwrap();
        let v = book.version();
        assert!(book.expire(at(599)).is_empty());
        assert_eq!(book.version(), v, "nothing lapsed");
        assert!(book.covering("A", "z", at(599)).is_some());
        assert!(book.covering("A", "z", at(600)).is_none(), "not in force at until, even before expiry");
        let lapsed = book.expire(at(600));
        assert_eq!(lapsed.len(), 1);
        assert_eq!(lapsed[0].ended.as_ref().map(|e| e.at), Some(at(600)));
        assert!(book.version() > v);
        assert_eq!(book.end(w.id, "x", "", at(700)), Err(Refused::AlreadyEnded(w.id)));
        assert_eq!(book.end(99, "x", "", at(700)), Err(Refused::Unknown(99)));
        let w2 = book.start(Scope::Siren("A".into()), "crew", "again", at(1600), at(700)).unwrap();
        assert!(w2.id > w.id);
        let ended = book.end(w2.id, "duty", "done early", at(800)).unwrap();
        assert_eq!(ended.ended.map(|e| (e.by, e.note)), Some(("duty".into(), "done early".into())));
        assert!(!book.any(at(800)));
    }

    #[test]
    fn bad_windows_are_refused() {
        let mut book = Book::default();
        let scope = || Scope::Siren("A".into());
        assert_eq!(book.start(scope(), "c", " ", at(10), at(0)), Err(Refused::NoReason));
        assert_eq!(book.start(scope(), "c", "r", at(0), at(0)), Err(Refused::UntilPast));
        assert_eq!(book.start(scope(), "c", "r", at(32 * 86_400), at(0)), Err(Refused::TooLong));
        assert!(book.open().is_empty());
    }

    #[test]
    fn a_restored_book_keeps_open_windows_and_numbers_after_every_stored_one() {
        let w = |id, until, ended: bool| Window {
            id,
            scope: Scope::Siren("A".into()),
            by: "c".into(),
            reason: "r".into(),
            from: at(0),
            until: at(until),
            ended: ended.then(|| Ended { at: at(1), by: "c".into(), note: String::new() }),
        };
        let mut book = Book::restore(vec![w(3, 100, false), w(4, 100, true), w(5, 10, false)], 7);
        assert_eq!(book.open().iter().map(|w| w.id).collect::<Vec<_>>(), vec![3, 5]);
        assert_eq!(book.expire(at(50)).iter().map(|w| w.id).collect::<Vec<_>>(), vec![5], "lapsed while stopped");
        assert_eq!(book.start(Scope::Zone("z".into()), "c", "r", at(60), at(50)).unwrap().id, 8);
    }
}
