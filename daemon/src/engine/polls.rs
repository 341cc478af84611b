//! One serial bus's polling, sans-IO: which siren to poll next within the bus's airtime, with
//! back-off for drops that do not answer, broadcast time sets, and campaign requests paced so
//! that they share the line with polls instead of starving them.
//!
//! The engine asks [`BusPoller::next`] whenever the line is idle (nothing queued on it) and
//! tells it how each exchange ended; time comes in as an argument.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::time::{Duration, Instant};

/// How often a bus with a group key gets a broadcast time set.
pub const TIME_SET_EVERY: Duration = Duration::from_secs(600);
/// How soon a time set held back (sirens on the bus are armed) is due again.
pub const TIME_SET_HELD_FOR: Duration = Duration::from_secs(10);
/// Longest back-off between polls of a siren that does not answer, in poll intervals.
const MAX_BACKOFF_INTERVALS: u32 = 8;

/// What the line has shown since its port last opened.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Line {
    /// Nothing answered yet: each member's unanswered polls. Silence on a line that is still
    /// settling (a reopened port, a modem or bus server starting) is not the sirens'.
    Settling(HashMap<usize, u32>),
    /// Every member went unanswered as often as it takes to be `down` and nothing ever
    /// answered: the line carries nothing, which is the line's fault, not each siren's.
    Silent,
    /// Something answered: silence is each siren's own.
    Working,
}

/// What an unanswered poll means.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unanswered {
    /// A miss of the siren's.
    Miss,
    /// Not counted: the line is settling, or is silent.
    NotCounted,
    /// Not counted, and the line is found silent as of now: its sirens are unreachable.
    LineSilent,
}

/// What the bus should carry next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BusAction {
    /// A broadcast `TIME_SET` under the bus's group key.
    TimeSet,
    /// A status poll of the siren with this fleet index.
    Poll(usize),
}

/// The polling state of one serial bus.
#[derive(Debug)]
pub struct BusPoller {
    interval: Duration,
    down_after_misses: u32,
    /// Whether the bus has a group key, and so gets broadcast time sets.
    time_sets: bool,
    due: BinaryHeap<Reverse<(Instant, usize)>>,
    failures: HashMap<usize, u32>,
    next_time_set: Instant,
    soundings_in_flight: usize,
    /// The last finished exchange was a campaign's: a due poll goes next.
    owes_poll: bool,
    line: Line,
}

impl BusPoller {
    /// A bus whose `members` (fleet indices) are polled every `interval`, first spread evenly
    /// over one interval from `now`.
    pub fn new(interval: Duration, down_after_misses: u32, time_sets: bool, members: &[usize], now: Instant) -> Self {
        let n = u32::try_from(members.len().max(1)).unwrap_or(u32::MAX);
        let due = members
            .iter()
            .enumerate()
            .map(|(k, &i)| Reverse((now + interval / n * u32::try_from(k).unwrap_or(0), i)))
            .collect();
        Self {
            interval,
            down_after_misses,
            time_sets,
            due,
            failures: HashMap::new(),
            next_time_set: now,
            soundings_in_flight: 0,
            owes_poll: false,
            line: Line::Working,
        }
    }

    /// What to send now on the idle line, if anything is due. A poll taken must be answered
    /// with [`answered`](Self::answered), [`unanswered`](Self::unanswered) or
    /// [`not_sent`](Self::not_sent).
    pub fn next(&mut self, now: Instant) -> Option<BusAction> {
        if now >= self.next_time_set {
            self.next_time_set = now + TIME_SET_EVERY;
            if self.time_sets {
                return Some(BusAction::TimeSet);
            }
        }
        let Reverse((due, siren)) = *self.due.peek()?;
        if due > now {
            return None;
        }
        self.due.pop();
        Some(BusAction::Poll(siren))
    }

    /// When something next falls due.
    pub fn next_due(&self) -> Option<Instant> {
        let poll = self.due.peek().map(|Reverse((t, _))| *t);
        let time_set = self.time_sets.then_some(self.next_time_set);
        poll.into_iter().chain(time_set).min()
    }

    /// The siren answered its poll. Returns whether the line was silent until now (its sirens
    /// are reachable again).
    pub fn answered(&mut self, siren: usize, now: Instant) -> bool {
        self.owes_poll = false;
        let was_silent = self.line == Line::Silent;
        self.line = Line::Working;
        self.failures.insert(siren, 0);
        self.schedule(siren, 1, now);
        was_silent
    }

    /// The siren did not answer its poll, retries included. While the line settles after its
    /// port opened nothing counts, until a siren answers or every siren on it has gone
    /// unanswered as often as it takes to be `down`: then the line is silent, a fault of the
    /// line (its sirens `unreachable`), polled every interval until something answers.
    pub fn unanswered(&mut self, siren: usize, now: Instant) -> Unanswered {
        self.owes_poll = false;
        match &mut self.line {
            Line::Settling(misses) => {
                let m = misses.entry(siren).or_default();
                *m = m.saturating_add(1);
                let silent = misses.values().all(|&m| m >= self.down_after_misses);
                self.schedule(siren, 1, now);
                if silent {
                    self.line = Line::Silent;
                    return Unanswered::LineSilent;
                }
                return Unanswered::NotCounted;
            }
            Line::Silent => {
                self.schedule(siren, 1, now);
                return Unanswered::NotCounted;
            }
            Line::Working => {}
        }
        let failures = self.failures.entry(siren).or_default();
        *failures = failures.saturating_add(1);
        // Until it is down, a silent siren keeps its interval (detection stays within the
        // misses plus one interval); after, a dead drop is polled less and less often so it
        // does not eat the line.
        let beyond = failures.saturating_sub(self.down_after_misses.saturating_sub(1));
        let factor = 1u32 << beyond.min(MAX_BACKOFF_INTERVALS.trailing_zeros());
        self.schedule(siren, factor, now);
        Unanswered::Miss
    }

    /// The poll taken could not be sent: it is due again an interval later, no miss counted.
    pub fn not_sent(&mut self, siren: usize, now: Instant) {
        self.schedule(siren, 1, now);
    }

    /// The time set [`next`](Self::next) returned was not sent (sirens on the bus are armed
    /// and a step of their clocks would move their start): it is due again shortly.
    pub fn time_set_held(&mut self, now: Instant) {
        self.next_time_set = now + TIME_SET_HELD_FOR;
    }

    /// The bus's port opened (`up`) or closed. A time set is due as soon as it is up, and
    /// every siren is polled at once, its back-off forgotten (the sirens were not silent, the
    /// port was gone), while the line settles (see [`unanswered`](Self::unanswered)).
    pub fn link_changed(&mut self, up: bool, now: Instant) {
        self.next_time_set = now;
        if !up {
            return;
        }
        let mut members: Vec<usize> = self.due.drain().map(|Reverse((_, siren))| siren).collect();
        members.sort_unstable();
        members.dedup();
        self.line = Line::Settling(members.iter().map(|&siren| (siren, 0)).collect());
        self.due.extend(members.into_iter().map(|siren| Reverse((now, siren))));
        self.failures.clear();
    }

    /// Whether a campaign's request may go on the line now. One at a time; after a
    /// campaign's exchange a due poll goes first, except for a trigger, which is due at an
    /// instant and never waits.
    pub fn may_send_sounding(&self, trigger: bool, now: Instant) -> bool {
        if self.soundings_in_flight >= 1 {
            return false;
        }
        trigger || !self.owes_poll || !self.poll_due(now)
    }

    /// A campaign's request went on the line.
    pub fn sounding_sent(&mut self) {
        self.soundings_in_flight += 1;
    }

    /// A campaign's request was answered or failed.
    pub fn sounding_done(&mut self) {
        self.soundings_in_flight = self.soundings_in_flight.saturating_sub(1);
        self.owes_poll = true;
    }

    fn poll_due(&self, now: Instant) -> bool {
        self.due.peek().is_some_and(|Reverse((due, _))| *due <= now)
    }

    fn schedule(&mut self, siren: usize, intervals: u32, now: Instant) {
        self.due.push(Reverse((now + self.interval * intervals, siren)));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECOND: Duration = Duration::from_secs(1);

    /// Takes every poll due at `now`, skipping a time set.
    fn polls(bus: &mut BusPoller, now: Instant) -> Vec<usize> {
        std::iter::from_fn(|| bus.next(now))
            .filter_map(|a| if let BusAction::Poll(i) = a { Some(i) } else { None })
            .collect()
    }

    #[test]
    fn first_polls_are_spread_over_one_interval() {
        let t0 = Instant::now();
        let mut bus = BusPoller::new(10 * SECOND, 3, false, &[7, 8, 9, 10, 11], t0);
        assert_eq!(polls(&mut bus, t0), [7]);
        assert_eq!(bus.next_due(), Some(t0 + 2 * SECOND));
        assert_eq!(polls(&mut bus, t0 + 5 * SECOND), [8, 9]);
        assert_eq!(polls(&mut bus, t0 + 9 * SECOND), [10, 11]);
        assert_eq!(bus.next(t0 + 9 * SECOND), None);
    }

    #[test]
    fn when_the_port_comes_back_every_siren_is_polled_at_once_and_misses_wait_for_the_line() {
        let t0 = Instant::now();
        let mut bus = BusPoller::new(SECOND, 3, false, &[1, 2, 3], t0);
        let mut now = t0;
        // Siren 1 went silent long ago and is backed off; the port then closes.
        for _ in 0..6 {
            for siren in polls(&mut bus, now) {
                if siren == 1 {
                    bus.unanswered(1, now);
                } else {
                    bus.answered(siren, now);
                }
            }
            now += 8 * SECOND;
        }
        bus.link_changed(false, now);
        now += 30 * SECOND;
        bus.link_changed(true, now);
        assert_eq!(polls(&mut bus, now), [1, 2, 3], "all at once, none left backed off");
        // Nothing answers yet: no misses counted, each asked again an interval later.
        for k in 0..2 {
            for siren in [1, 2, 3] {
                assert_eq!(bus.unanswered(siren, now), Unanswered::NotCounted, "round {k}: the line settles");
            }
            now += SECOND;
            assert_eq!(polls(&mut bus, now), [1, 2, 3]);
        }
        // One answer proves the line: silence is the sirens' own again.
        assert!(!bus.answered(2, now));
        assert_eq!(bus.unanswered(1, now), Unanswered::Miss);
        bus.not_sent(3, now);

        // A line on which nothing answers is found silent after a round of the misses, is
        // polled every interval, and works again at the first answer.
        bus.link_changed(true, now);
        let mut verdicts = Vec::new();
        for _ in 0..4 {
            for siren in polls(&mut bus, now) {
                verdicts.push(bus.unanswered(siren, now));
            }
            now += SECOND;
        }
        assert_eq!(verdicts.iter().filter(|v| **v == Unanswered::LineSilent).count(), 1, "{verdicts:?}");
        assert!(!verdicts.contains(&Unanswered::Miss));
        assert_eq!(polls(&mut bus, now), [1, 2, 3], "still polled every interval");
        assert!(bus.answered(3, now), "the silent line answers again");
    }

    #[test]
    fn an_answered_siren_is_polled_again_one_interval_later() {
        let t0 = Instant::now();
        let mut bus = BusPoller::new(10 * SECOND, 3, false, &[1], t0);
        assert_eq!(polls(&mut bus, t0), [1]);
        bus.answered(1, t0 + SECOND);
        assert_eq!(bus.next(t0 + 10 * SECOND), None);
        assert_eq!(bus.next(t0 + 11 * SECOND), Some(BusAction::Poll(1)));
    }

    #[test]
    fn a_silent_siren_keeps_its_interval_until_down_then_backs_off_to_eight() {
        let t0 = Instant::now();
        let mut bus = BusPoller::new(SECOND, 3, false, &[1], t0);
        let mut now = t0;
        let mut gaps = Vec::new();
        for _ in 0..8 {
            assert_eq!(polls(&mut bus, now), [1]);
            bus.unanswered(1, now);
            let next = bus.next_due().unwrap();
            gaps.push((next - now).as_secs());
            now = next;
        }
        assert_eq!(gaps, [1, 1, 2, 4, 8, 8, 8, 8]);
        // An answer ends the back-off.
        assert_eq!(polls(&mut bus, now), [1]);
        bus.answered(1, now);
        assert_eq!(bus.next_due(), Some(now + SECOND));
    }

    #[test]
    fn a_poll_not_sent_comes_back_without_a_miss() {
        let t0 = Instant::now();
        let mut bus = BusPoller::new(SECOND, 1, false, &[1], t0);
        assert_eq!(polls(&mut bus, t0), [1]);
        bus.not_sent(1, t0);
        assert_eq!(bus.next_due(), Some(t0 + SECOND));
        assert_eq!(polls(&mut bus, t0 + SECOND), [1]);
        bus.unanswered(1, t0 + SECOND);
        // The first real miss (down after one) starts the back-off at two intervals.
        assert_eq!(bus.next_due(), Some(t0 + 3 * SECOND));
    }

    #[test]
    fn a_bus_with_a_group_key_gets_a_time_set_first_and_every_ten_minutes() {
        let t0 = Instant::now();
        let mut bus = BusPoller::new(SECOND, 3, true, &[1], t0);
        assert_eq!(bus.next(t0), Some(BusAction::TimeSet));
        assert_eq!(bus.next(t0), Some(BusAction::Poll(1)));
        bus.answered(1, t0);
        assert_eq!(bus.next_due(), Some(t0 + SECOND));
        let later = t0 + TIME_SET_EVERY;
        assert_eq!(bus.next(later), Some(BusAction::TimeSet));
        assert_eq!(bus.next(later), Some(BusAction::Poll(1)));
        // A port that reopens gets one at once.
        bus.link_changed(true, later + SECOND);
        assert_eq!(bus.next(later + SECOND), Some(BusAction::TimeSet));
    }

    #[test]
    fn a_time_set_held_back_is_due_again_shortly_and_polls_go_on_meanwhile() {
        let t0 = Instant::now();
        let mut bus = BusPoller::new(SECOND, 3, true, &[1], t0);
        assert_eq!(bus.next(t0), Some(BusAction::TimeSet));
        bus.time_set_held(t0);
        assert_eq!(bus.next(t0), Some(BusAction::Poll(1)));
        bus.answered(1, t0);
        assert_eq!(bus.next(t0 + 9 * SECOND), Some(BusAction::Poll(1)));
        bus.answered(1, t0 + 9 * SECOND);
        assert_eq!(bus.next(t0 + TIME_SET_HELD_FOR), Some(BusAction::TimeSet));
    }

    #[test]
    fn a_bus_without_a_group_key_never_gets_a_time_set() {
        let t0 = Instant::now();
        let mut bus = BusPoller::new(SECOND, 3, false, &[1], t0);
        assert_eq!(bus.next(t0), Some(BusAction::Poll(1)));
        assert_eq!(bus.next_due(), None);
    }

    #[test]
    fn campaign_requests_go_one_at_a_time_and_let_a_due_poll_go_first() {
        let t0 = Instant::now();
        let mut bus = BusPoller::new(SECOND, 3, false, &[1], t0);
        assert!(bus.may_send_sounding(false, t0));
        bus.sounding_sent();
        assert!(!bus.may_send_sounding(false, t0), "a second request while one is on the line");
        assert!(!bus.may_send_sounding(true, t0), "even a trigger waits for the line");
        bus.sounding_done();
        // The poll of siren 1 is due: it goes before the next campaign request...
        assert!(!bus.may_send_sounding(false, t0));
        // ...except a trigger.
        assert!(bus.may_send_sounding(true, t0));
        assert_eq!(polls(&mut bus, t0), [1]);
        bus.answered(1, t0);
        assert!(bus.may_send_sounding(false, t0));
        // Owing a poll when none is due holds nothing back.
        bus.sounding_sent();
        bus.sounding_done();
        assert!(bus.may_send_sounding(false, t0));
    }
}
