//! The leader's lease, sans IO: from the outcomes of its attempts to take or renew the lease
//! in the database, when this daemon leads, until when it may command, and when it must stop.
//!
//! The timing argument (docs/operations.md, "Two control rooms"): a renewal sent at local
//! instant `s` that succeeds makes the lease run until `c + lease` on the database's clock,
//! where `c`, the commit, comes after `s`. The leader commands only until `s + lease - guard`
//! on its own monotonic clock, so it has stopped `guard` before the earliest moment another
//! daemon may take the lease, however long the reply took or whether it came at all.

use std::time::{Duration, Instant};

use jiff::Timestamp;

/// The lease's timing, all from its length.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timing {
    /// How long a lease lasts on the database's clock without renewal.
    pub lease: Duration,
}

impl Timing {
    /// How often the leader renews, and a standby tries to take the lease.
    pub fn renew_every(&self) -> Duration {
        self.lease / 6
    }

    /// The margin between the end of a leader's commanding and the earliest takeover: it
    /// covers a command on its way to a device and the two clocks' disagreement on how
    /// long a lease is.
    pub fn guard(&self) -> Duration {
        self.lease / 3
    }

    /// How long after sending a renewal that succeeded the leader may command.
    pub fn commands_for(&self) -> Duration {
        self.lease.saturating_sub(self.guard())
    }

    /// How long after a leader's death a standby has taken over at the latest: the lease
    /// runs out, and the standby's next attempt comes within one renewal period.
    pub fn takeover_within(&self) -> Duration {
        self.lease + self.renew_every()
    }
}

/// The daemon that holds the lease, as the database says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Holder {
    pub name: String,
    /// Where its API is (writes are forwarded there).
    pub url: String,
    pub epoch: i64,
    pub since: Timestamp,
}

/// What one attempt to take or renew the lease found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// This daemon holds the lease, in term `epoch`.
    Held { epoch: i64, since: Timestamp },
    /// Another daemon holds a lease that has not run out.
    HeldBy(Holder),
    /// The database could not be asked (unreachable, timeout, error).
    Failed(String),
}

/// What the daemon must do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// Nothing changes.
    None,
    /// Start leading in term `epoch` (stopping first whatever a previous term started).
    Lead { epoch: i64 },
    /// Stop commanding at once: the lease is or may be lost.
    StepDown { why: String },
}

/// A term this daemon leads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Term {
    epoch: i64,
    since: Timestamp,
    /// The end of its commanding, on the monotonic clock.
    until: Instant,
}

/// The lease as this daemon knows it.
#[derive(Debug, Clone)]
pub struct Lease {
    timing: Timing,
    term: Option<Term>,
    /// The other daemon that leads, when one does.
    leader: Option<Holder>,
    /// The highest epoch seen.
    epoch: i64,
}

impl Lease {
    pub fn new(timing: Timing) -> Self {
        Self { timing, term: None, leader: None, epoch: 0 }
    }

    pub fn timing(&self) -> Timing {
        self.timing
    }

    /// The outcome of an attempt sent at `sent`, learnt at `now`.
    pub fn attempted(&mut self, sent: Instant, outcome: Outcome, now: Instant) -> Change {
        let expired = self.tick(now);
        match outcome {
            Outcome::Held { epoch, since } => {
                self.leader = None;
                self.epoch = self.epoch.max(epoch);
                let until = sent + self.timing.commands_for();
                match &mut self.term {
                    Some(t) if t.epoch == epoch => {
                        t.until = t.until.max(until);
                        Change::None
                    }
                    // An answer that came back too late to command on: no term starts; the
                    // next renewal, sooner answered, starts it.
                    _ if until <= now => expired,
                    term => {
                        *term = Some(Term { epoch, since, until });
                        Change::Lead { epoch }
                    }
                }
            }
            Outcome::HeldBy(holder) => {
                self.epoch = self.epoch.max(holder.epoch);
                let lost = self.term.take().map(|t| format!("daemon {} leads (epoch {})", holder.name, t.epoch));
                self.leader = Some(holder);
                match lost {
                    Some(why) => Change::StepDown { why },
                    None => expired,
                }
            }
            Outcome::Failed(_) => expired,
        }
    }

    /// Ends a term whose commanding time is over: a step down, once.
    pub fn tick(&mut self, now: Instant) -> Change {
        match self.term {
            Some(t) if t.until <= now => {
                self.term = None;
                Change::StepDown { why: format!("the lease (epoch {}) could not be renewed in time", t.epoch) }
            }
            _ => Change::None,
        }
    }

    /// Until when this daemon may command; `None` when it does not lead.
    pub fn commanding_until(&self) -> Option<Instant> {
        self.term.map(|t| t.until)
    }

    /// The term this daemon leads: its epoch and since when.
    pub fn leading(&self) -> Option<(i64, Timestamp)> {
        self.term.map(|t| (t.epoch, t.since))
    }

    /// The daemon that leads when this one does not, as last seen.
    pub fn leader(&self) -> Option<&Holder> {
        self.leader.as_ref()
    }

    /// The highest epoch seen.
    pub fn epoch(&self) -> i64 {
        self.epoch
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const T: Timing = Timing { lease: Duration::from_secs(6) };

    fn held(epoch: i64) -> Outcome {
        Outcome::Held { epoch, since: Timestamp::UNIX_EPOCH }
    }

    fn other(epoch: i64) -> Outcome {
        Outcome::HeldBy(Holder { name: "b".into(), url: "http://b".into(), epoch, since: Timestamp::UNIX_EPOCH })
    }

    #[test]
    fn a_leader_commands_until_its_guard_before_the_lease_ends_counted_from_sending() {
        let t0 = Instant::now();
        let mut lease = Lease::new(T);
        // The reply took 1.5 s: the window still counts from the sending.
        assert_eq!(lease.attempted(t0, held(3), t0 + Duration::from_millis(1500)), Change::Lead { epoch: 3 });
        assert_eq!(lease.commanding_until(), Some(t0 + Duration::from_secs(4)));
        let t1 = t0 + Duration::from_secs(1);
        assert_eq!(lease.attempted(t1, held(3), t1), Change::None);
        assert_eq!(lease.commanding_until(), Some(t1 + Duration::from_secs(4)));
        // Renewals fail from here on: the leader stops at t1 + 4 s, 2 s before any takeover.
        for s in 2..5 {
            let at = t0 + Duration::from_secs(s);
            assert_eq!(lease.attempted(at, Outcome::Failed("cut".into()), at), Change::None);
        }
        assert_eq!(lease.tick(t1 + Duration::from_millis(3999)), Change::None);
        assert!(matches!(lease.tick(t1 + Duration::from_secs(4)), Change::StepDown { .. }));
        assert_eq!(lease.commanding_until(), None);
        assert_eq!(lease.tick(t1 + Duration::from_secs(5)), Change::None, "once");
        assert!(t1 + Duration::from_secs(4) + T.guard() <= t1 + T.lease);
    }

    #[test]
    fn another_holder_ends_the_term_and_a_new_epoch_starts_a_new_one() {
        let t0 = Instant::now();
        let mut lease = Lease::new(T);
        assert_eq!(lease.attempted(t0, held(1), t0), Change::Lead { epoch: 1 });
        assert!(matches!(lease.attempted(t0, other(2), t0), Change::StepDown { .. }));
        assert_eq!(lease.leader().map(|h| h.epoch), Some(2));
        assert_eq!(lease.attempted(t0, other(2), t0), Change::None, "a standby stays one");
        assert_eq!(lease.attempted(t0, held(3), t0), Change::Lead { epoch: 3 });
        assert_eq!(lease.attempted(t0, held(4), t0), Change::Lead { epoch: 4 }, "a new term restarts");
        assert_eq!(lease.epoch(), 4);
    }

    #[test]
    fn an_answer_too_late_to_command_on_starts_no_term() {
        let t0 = Instant::now();
        let mut lease = Lease::new(T);
        assert_eq!(lease.attempted(t0, held(1), t0 + Duration::from_secs(5)), Change::None);
        assert_eq!(lease.commanding_until(), None);
    }
}
