//! The engine's side of the one-step stop ([`crate::sounding::stop`]): the sirens in scope,
//! a broadcast `STOP` on every serial bus the scope covers whole (one frame silences a bus),
//! then `STOP` to each siren until it answers; the campaigns' targets in scope are stopped so
//! that nothing re-arms or triggers them.

use jiff::Timestamp;
use siren_proto::master::Priority;
use siren_proto::message::Message;

use super::{Engine, Pending};
use crate::sounding::stop::{Sweep, SweepView};
use crate::store::Event;

/// Sweeps kept for `GET /api/stop/{id}` after they are over.
const SWEEPS_KEPT: usize = 20;

/// What an operator asks to stop: sirens in these zones and these sirens; neither: every siren.
#[derive(Debug, Clone, Default)]
pub struct StopScope {
    pub zones: Vec<String>,
    pub sirens: Vec<String>,
}

impl StopScope {
    /// One line for records: `all sirens`, `zones hz/c, hz/e; sirens HZ-1`.
    pub fn describe(&self) -> String {
        match (self.zones.is_empty(), self.sirens.is_empty()) {
            (true, true) => "all sirens".to_owned(),
            (false, true) => format!("zones {}", self.zones.join(", ")),
            (true, false) => format!("sirens {}", self.sirens.join(", ")),
            (false, false) => format!("zones {}; sirens {}", self.zones.join(", "), self.sirens.join(", ")),
        }
    }
}

impl Engine {
    /// Starts a sweep of the sirens in `scope`; answers its first view.
    pub(super) fn start_stop(&mut self, scope: &StopScope, by: &str, reason: &str) -> SweepView {
        let now = Timestamp::now();
        let sirens: Vec<(usize, String)> = {
            let fleet = self.read_fleet();
            let all = scope.zones.is_empty() && scope.sirens.is_empty();
            (0..fleet.sirens().len())
                .map(|i| fleet.siren(i))
                .enumerate()
                .filter(|(_, s)| all || scope.sirens.contains(&s.id) || scope.zones.iter().any(|z| s.zone.is_within(z)))
                .map(|(i, s)| (i, s.id.clone()))
                .collect()
        };
        self.next_sweep += 1;
        let described = scope.describe();
        let sweep = Sweep::new(self.next_sweep, by, reason, &described, sirens.clone(), now);
        tracing::warn!(sweep = sweep.id, by, reason, scope = %described, sirens = sirens.len(), "STOP");
        self.record(
            None,
            "stop_requested",
            format!("stop {}: {described} ({} sirens) by {by}: {reason}", sweep.id, sirens.len()),
        );
        let indices: Vec<usize> = sirens.iter().map(|(i, _)| *i).collect();
        // The broadcasts first: a bus takes one frame at a time, and the campaigns' disarms
        // queued ahead of them would keep its sirens sounding for one exchange each.
        self.broadcast_stops(&indices);
        // Nothing of ours re-arms or triggers them.
        if let Some(runner) = &mut self.soundings {
            // LIVE warnings sounding in scope are marked stopped (the CAP feed says so).
            for id in self.desk.sounding_in(&runner.campaigns_of(&indices)) {
                if let Some(a) = self.desk.stopped(id, format!("{by} at {now}: {reason}")) {
                    if let Err(e) = self.store.queue_activation(&a) {
                        tracing::error!(activation = id, error = %e, "cannot store that the warning was stopped");
                    }
                }
            }
            let fleet = std::sync::Arc::clone(&self.fleet);
            let fleet = fleet.read().unwrap_or_else(std::sync::PoisonError::into_inner);
            let outgoing = runner.stop(&indices, &format!("stopped by {by}: {reason}"), now, &fleet);
            drop(fleet);
            for o in outgoing {
                self.send_sounding(o, false);
            }
        }
        let view = sweep.view();
        self.sweeps.push(sweep);
        self.run_sweeps();
        view
    }

    /// One broadcast `STOP` on every serial bus all of whose sirens are in `indices`.
    fn broadcast_stops(&mut self, indices: &[usize]) {
        let indices: std::collections::HashSet<usize> = indices.iter().copied().collect();
        let links: Vec<_> = self.buses.iter().filter_map(|(l, b)| b.group.map(|g| (*l, g))).collect();
        for (link, group) in links {
            let Some(name) = self.link_names.get(&link).cloned() else { continue };
            let whole = {
                let fleet = self.read_fleet();
                (0..fleet.sirens().len())
                    .filter(|&i| fleet.siren(i).liveness.has_link(&name))
                    .all(|i| indices.contains(&i))
            };
            if whole {
                match self.master.broadcast(group, Message::Stop { campaign: 0 }) {
                    Ok(_) => tracing::info!(link = %name, "STOP broadcast"),
                    Err(e) => tracing::error!(link = %name, error = %e, "cannot broadcast STOP"),
                }
            }
        }
    }

    /// Sends `STOP` to every siren a sweep waits for and is due; records sweeps that ended.
    pub(super) fn run_sweeps(&mut self) {
        let now = Timestamp::now();
        let mut sends = Vec::new();
        for sweep in &mut self.sweeps {
            for index in sweep.due(now) {
                sends.push((sweep.id, index));
            }
        }
        for (sweep, index) in sends {
            let key_id = self.read_fleet().siren(index).key_id;
            match self.master.request(key_id, Message::Stop { campaign: 0 }, Priority::Command) {
                Ok(id) => {
                    self.pending.insert(id, Pending::Stop { sweep, siren: index });
                }
                Err(_) => self.stop_failed(sweep, index),
            }
        }
    }

    /// Siren `index` answered a `STOP` of sweep `sweep`, or said it is idle (`sweep` 0: every
    /// sweep waiting for it).
    pub(super) fn stop_answered(&mut self, sweep: u32, index: usize) {
        let now = Timestamp::now();
        let mut finished = Vec::new();
        for s in self.sweeps.iter_mut().filter(|s| (sweep == 0 || s.id == sweep) && s.waits_for(index)) {
            s.silent(index, now);
            if s.done.is_some() {
                finished.push(s.view());
            }
        }
        for v in finished {
            let ms = v.all_silent_after_ms.unwrap_or_default();
            tracing::warn!(sweep = v.id, sirens = v.sirens.len(), ms, "every siren in scope is silent");
            let detail = format!("stop {}: {} sirens silent {ms} ms after the request", v.id, v.sirens.len());
            let _ = self.store.record(Event { at: now, siren: None, kind: "stop_complete".into(), detail });
        }
        self.forget_old_sweeps(now);
    }

    /// A `STOP` to siren `index` went unanswered: sent again later.
    pub(super) fn stop_failed(&mut self, sweep: u32, index: usize) {
        let now = Timestamp::now();
        if let Some(s) = self.sweeps.iter_mut().find(|s| s.id == sweep) {
            s.failed(index, now);
        }
    }

    fn forget_old_sweeps(&mut self, now: Timestamp) {
        while self.sweeps.len() > SWEEPS_KEPT {
            match self.sweeps.iter().position(|s| s.over(now)) {
                Some(i) => drop(self.sweeps.remove(i)),
                None => break,
            }
        }
    }

    /// Sweep `id` as the API shows it.
    pub(super) fn sweep_view(&self, id: u32) -> Option<SweepView> {
        self.sweeps.iter().find(|s| s.id == id).map(Sweep::view)
    }
}
