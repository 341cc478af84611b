//! The engine's side of LIVE warnings ([`crate::live`]): requests, approvals and rejections on
//! the desk, each stored before it is answered; an approved activation becomes a `live`
//! campaign at once; a false alarm is stopped.

use jiff::{SignedDuration, Timestamp};
use serde::Serialize;
use tokio::sync::oneshot;

use super::Engine;
use super::stops::StopScope;
use crate::live::{Activation, Ask, Refused, Standing};
use crate::sounding::campaign::{Campaign, TargetStep};
use crate::sounding::sequence::{self, Kind};
use crate::sounding::verdict::Verdict;

/// What the API asks about LIVE warnings.
#[derive(Debug)]
pub enum LiveInput {
    Request { ask: Ask, by: String, reply: oneshot::Sender<Result<Activation, LiveError>> },
    Approve { id: u32, by: String, reply: oneshot::Sender<Result<Activation, LiveError>> },
    Reject { id: u32, by: String, reason: String, reply: oneshot::Sender<Result<Activation, LiveError>> },
    FalseAlarm { id: u32, by: String, reason: String, reply: oneshot::Sender<Result<Activation, LiveError>> },
    Get { id: u32, reply: oneshot::Sender<Option<LiveView>> },
    List { reply: oneshot::Sender<Vec<Activation>> },
}

/// Why a LIVE request or step was refused.
#[derive(Debug, thiserror::Error)]
pub enum LiveError {
    #[error(transparent)]
    Refused(#[from] Refused),
    #[error("{message}")]
    Invalid { field: &'static str, message: String },
    #[error("the store failed: {0}; nothing was done")]
    Store(#[from] crate::store::StoreError),
    #[error("{0}")]
    Campaign(String),
    /// The source may not act where the request would.
    #[error("{0}")]
    Forbidden(String),
}

/// An activation with how each of its sirens is doing.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct LiveView {
    #[serde(flatten)]
    pub activation: Activation,
    /// Sirens by where they are: `pending`, `armed`, `sounding`, `sounded` (reported, not yet
    /// judged), `done`, `failed`, `stopped`.
    pub counts: std::collections::BTreeMap<&'static str, usize>,
    pub sirens: Vec<LiveSiren>,
}

/// One siren of a LIVE warning.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct LiveSiren {
    pub siren: String,
    pub zone: String,
    pub state: &'static str,
    /// From the approval to the siren's reported start of sound, ms.
    pub latency_ms: Option<i64>,
}

/// Where a target of a LIVE campaign is at `now`.
fn siren_state(c: &Campaign, i: usize, now: Timestamp) -> &'static str {
    let t = &c.targets[i];
    match (t.verdict, &t.report) {
        (Some(Verdict::Pass), _) => "done",
        (Some(Verdict::Stopped), _) => "stopped",
        (Some(_), _) => "failed",
        // Its report came; the verdict waits for the clock measurement after the sounding.
        (None, Some(_)) => "sounded",
        (None, None) if t.stopped.is_some() => "stopped",
        (None, None) => match t.step {
            TargetStep::Triggered => "sounding",
            TargetStep::Armed if now >= c.instant => "sounding",
            TargetStep::Armed => "armed",
            TargetStep::Idle => "failed",
            _ => "pending",
        },
    }
}

/// The view of `c`'s sirens for its activation.
pub fn live_sirens(c: &Campaign, now: Timestamp) -> Vec<LiveSiren> {
    (0..c.targets.len())
        .map(|i| {
            let t = &c.targets[i];
            let latency_ms = c.approved_at.zip(t.skew_us).map(|(approved, skew)| {
                (c.instant.as_microsecond() + skew - approved.as_microsecond()).div_euclid(1000)
            });
            LiveSiren { siren: t.siren.clone(), zone: t.zone.clone(), state: siren_state(c, i, now), latency_ms }
        })
        .collect()
}

impl Engine {
    pub(super) fn handle_live(&mut self, input: LiveInput) {
        match input {
            LiveInput::Request { ask, by, reply } => {
                let _ = reply.send(self.live_request(ask, &by));
            }
            LiveInput::Approve { id, by, reply } => {
                let now = Timestamp::now();
                let result = self.desk.approve(id, &by, now).map_err(LiveError::from).and_then(|a| {
                    self.store.save_activation(&a)?;
                    self.record(None, "live_approved", format!("activation {id} approved by {by}"));
                    self.start_live(a, now)
                });
                let _ = reply.send(result);
            }
            LiveInput::Reject { id, by, reason, reply } => {
                let result =
                    self.desk.reject(id, &by, &reason, Timestamp::now()).map_err(LiveError::from).and_then(|a| {
                        // Recorded first: the save waits for the commit that carries both.
                        self.record(None, "live_rejected", format!("activation {id} rejected by {by}: {reason}"));
                        self.store.save_activation(&a)?;
                        Ok(a)
                    });
                let _ = reply.send(result);
            }
            LiveInput::FalseAlarm { id, by, reason, reply } => {
                let _ = reply.send(self.live_false_alarm(id, &by, &reason));
            }
            LiveInput::Get { id, reply } => {
                let _ = reply.send(self.live_view(id));
            }
            LiveInput::List { reply } => {
                let _ = reply.send(self.desk.latest(100));
            }
        }
    }

    pub(super) fn live_request(&mut self, ask: Ask, by: &str) -> Result<Activation, LiveError> {
        let Some(steps) = self.live_config.signal(&ask.signal) else {
            let known = self.live_config.signal_names().join(", ");
            return Err(LiveError::Invalid {
                field: "signal",
                message: format!("no signal `{}` (known: {known})", ask.signal),
            });
        };
        sequence::segments(Kind::Live, &steps)
            .map_err(|e| LiveError::Invalid { field: "signal", message: format!("signal `{}`: {e}", ask.signal) })?;
        let now = Timestamp::now();
        let zones: Vec<String> = {
            let fleet = self.read_fleet();
            let mut zones = ask.zones.clone();
            for id in &ask.sirens {
                let s = fleet
                    .get(id)
                    .ok_or_else(|| LiveError::Invalid { field: "sirens", message: format!("no siren `{id}`") })?;
                zones.push(s.zone.to_string());
            }
            zones.sort_unstable();
            zones.dedup();
            for z in &ask.zones {
                if !fleet.sirens().iter().any(|s| s.zone.is_within(z)) {
                    return Err(LiveError::Invalid { field: "zones", message: format!("no siren is in zone `{z}`") });
                }
            }
            zones
        };
        let waived = self.live_config.waived(by, &zones);
        let window = SignedDuration::from_secs(i64::from(self.live_config.approval_window_s));
        let a = self.desk.request(ask, by, window, waived, now);
        self.store.save_activation(&a)?;
        let targets = if zones.is_empty() { "every siren".to_owned() } else { zones.join(", ") };
        tracing::warn!(activation = a.id, by, signal = %a.signal, targets, waived, "LIVE warning requested");
        self.record(
            None,
            "live_requested",
            format!("activation {}: {} on {targets} by {by}: {}", a.id, a.signal, a.reason),
        );
        if waived {
            self.record(None, "live_approved", format!("activation {}: second person waived for {by}", a.id));
            return self.start_live(a, now);
        }
        Ok(a)
    }

    /// Starts the campaign of approved activation `a`.
    fn start_live(&mut self, a: Activation, approved_at: Timestamp) -> Result<Activation, LiveError> {
        let steps = self.live_config.signal(&a.signal).unwrap_or_default();
        let at = a.sounds_at.as_deref().and_then(|t| t.parse().ok());
        let Some(runner) = self.soundings.as_mut() else {
            return Err(LiveError::Campaign("soundings are not running".into()));
        };
        let fleet = std::sync::Arc::clone(&self.fleet);
        let fleet = fleet.read().unwrap_or_else(std::sync::PoisonError::into_inner);
        let (campaign, outgoing) = runner
            .start_live(a.id, (&a.zones, &a.sirens), &steps, at, approved_at, &self.store, &fleet)
            .map_err(|e| LiveError::Campaign(e.to_string()))?;
        drop(fleet);
        for o in outgoing {
            self.send_sounding(o, false);
        }
        let started = self.desk.started(a.id, campaign).unwrap_or(a);
        self.store.save_activation(&started)?;
        tracing::warn!(activation = started.id, campaign, "LIVE warning started");
        self.record(None, "live_started", format!("activation {}: campaign {campaign}", started.id));
        Ok(started)
    }

    fn live_false_alarm(&mut self, id: u32, by: &str, reason: &str) -> Result<Activation, LiveError> {
        let now = Timestamp::now();
        let a = self.desk.false_alarm(id, format!("{by} at {now}: {reason}"))?;
        tracing::warn!(activation = id, by, reason, "LIVE warning marked a false alarm");
        // Recorded first: the save waits for the commit that carries both.
        self.record(None, "live_false_alarm", format!("activation {id} marked a false alarm by {by}: {reason}"));
        self.store.save_activation(&a)?;
        // Whatever of it still sounds is stopped.
        if matches!(a.standing, Standing::Approved { .. }) {
            let scope = StopScope { zones: a.zones.clone(), sirens: a.sirens.clone() };
            let _ = self.start_stop(&scope, by, &format!("activation {id} is a false alarm: {reason}"));
        }
        Ok(a)
    }

    fn live_view(&self, id: u32) -> Option<LiveView> {
        let activation = self.desk.get(id)?.clone();
        let now = Timestamp::now();
        let campaign = activation.campaign.and_then(|c| {
            self.soundings
                .as_ref()
                .and_then(|r| r.open().find(|o| o.id == c).cloned())
                .or_else(|| self.store.campaign(c).ok().flatten())
        });
        let sirens = campaign.as_ref().map(|c| live_sirens(c, now)).unwrap_or_default();
        let mut counts = std::collections::BTreeMap::new();
        for s in &sirens {
            *counts.entry(s.state).or_insert(0) += 1;
        }
        Some(LiveView { activation, counts, sirens })
    }

    /// Sets `sirend_live_sirens` for every LIVE campaign still open (called about once a second).
    pub(super) fn live_metrics(&mut self) {
        let Some(runner) = &mut self.soundings else { return };
        let now = Timestamp::now();
        let ended = runner.take_ended_live();
        for c in runner.open().filter(|c| c.kind == Kind::Live).chain(ended.iter()) {
            let Some(activation) = c.schedule.strip_prefix("live-").and_then(|n| n.parse().ok()) else { continue };
            let mut counts = std::collections::BTreeMap::new();
            for s in live_sirens(c, now) {
                *counts.entry(s.state).or_insert(0) += 1;
            }
            self.metrics.live_sirens(activation, &counts);
        }
    }

    /// Expires the requests whose window passed.
    pub(super) fn expire_live(&mut self) {
        let now = Timestamp::now();
        if self.desk.next_expiry().is_none_or(|t| t > now) {
            return;
        }
        for a in self.desk.expire(now) {
            let _ = self.store.save_activation(&a);
            tracing::warn!(activation = a.id, "LIVE request expired without approval");
            self.record(None, "live_expired", format!("activation {} expired without approval", a.id));
        }
    }
}
