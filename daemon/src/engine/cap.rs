//! The engine's side of CAP alerts ([`crate::cap`]): each alert is decided once, applied
//! through the same paths as a person's request (a LIVE request under the two-person rule, a
//! stop, a test sounding), and stored with what it did before it is answered.

use std::fmt::Write as _;

use jiff::Timestamp;
use tokio::sync::oneshot;

use super::Engine;
use super::live::LiveError;
use super::stops::StopScope;
use crate::cap::intake::{Decision, Received};
use crate::cap::{Alert, Info};
use crate::live::{Ask, Standing};
use crate::sounding::runner::AdHoc;
use crate::sounding::sequence::Kind;

/// What the API asks about CAP alerts.
#[derive(Debug)]
pub enum CapInput {
    /// A checked alert from `source` (a token's name, or a feed's), which acts in `zones`
    /// only (empty: everywhere).
    Submit {
        alert: Box<Alert>,
        source: String,
        zones: Vec<String>,
        reply: oneshot::Sender<Result<Received, LiveError>>,
    },
    List {
        reply: oneshot::Sender<Vec<Received>>,
    },
    /// The Atom feed of this daemon's LIVE warnings as CAP, its self link `url`.
    Feed {
        url: String,
        reply: oneshot::Sender<String>,
    },
}

/// What publishing CAP needs besides the activations.
#[derive(Debug, Clone)]
pub struct Publishing {
    pub publisher: crate::cap::publish::Publisher,
    /// For each siren's audible radius.
    pub coverage: crate::config::Coverage,
}

impl Engine {
    pub(super) fn handle_cap(&mut self, input: CapInput) {
        match input {
            CapInput::Submit { alert, source, zones, reply } => {
                let result = self.cap_submit(&alert, &source, &zones);
                if result.is_err() {
                    self.metrics.cap_alert(&source, "refused");
                }
                let _ = reply.send(result);
            }
            CapInput::List { reply } => {
                let _ = reply.send(self.intake.latest(100));
            }
            CapInput::Feed { url, reply } => {
                let _ = reply.send(self.cap_feed(&url));
            }
        }
    }

    fn cap_submit(&mut self, alert: &Alert, source: &str, allowed: &[String]) -> Result<Received, LiveError> {
        let now = Timestamp::now();
        let decision = self.intake.decide(alert, source, &self.cap_config);
        if let Decision::Duplicate(first) = decision {
            self.metrics.cap_alert(source, "duplicate");
            return Ok(*first);
        }
        let mut r = Received {
            sender: alert.sender.clone(),
            identifier: alert.identifier.clone(),
            sent: alert.sent.clone(),
            source: source.to_owned(),
            received_at: now.to_string(),
            status: format!("{:?}", alert.status),
            msg_type: format!("{:?}", alert.msg_type),
            event: alert.info.first().map(|i| i.event.clone()),
            rule: None,
            outcome: String::new(),
            activation: None,
            sounding: None,
        };
        let kind = match decision {
            Decision::Duplicate(_) => unreachable!("answered above"),
            Decision::Record(why) => {
                // The rule that matched, if one did, though the alert's status or type kept it
                // from acting.
                r.rule =
                    self.cap_config.rule_for(&alert.info, &alert.sender, source).map(|(rule, _)| rule.name.clone());
                r.outcome = why;
                "recorded"
            }
            Decision::Request { rule, signal, info } => {
                r.rule = Some(rule);
                self.check_zones(&alert.info[info], source, allowed)?;
                self.cap_request(alert, &alert.info[info], &signal, source, None, &mut r)?
            }
            Decision::Update { activation, rule, signal, info } => {
                let activation = self.desk.current(activation);
                r.rule = Some(rule);
                self.check_zones(&alert.info[info], source, allowed)?;
                self.cap_request(alert, &alert.info[info], &signal, source, Some(activation), &mut r)?
            }
            Decision::Cancel { activation } => {
                let activation = self.desk.current(activation);
                self.cap_cancel(alert, activation, source, &mut r)?
            }
            Decision::Exercise { rule, signal, info } => {
                r.rule = Some(rule);
                self.check_zones(&alert.info[info], source, allowed)?;
                self.cap_exercise(&alert.info[info], &signal, source, &mut r)
            }
        };
        self.store.save_cap_alert(&r)?;
        self.intake.record(r.clone());
        self.metrics.cap_alert(source, kind);
        tracing::info!(source, sender = %r.sender, identifier = %r.identifier, outcome = %r.outcome, "CAP alert");
        self.record(None, "cap_alert", format!("{} from {source}: {}", alert.key(), r.outcome));
        Ok(r)
    }

    fn cap_feed(&self, url: &str) -> String {
        let Some(p) = &self.publishing else { return String::new() };
        let mut activations = self.desk.latest(100);
        activations.reverse();
        let circles = |a: &crate::live::Activation| {
            let fleet = self.read_fleet();
            let all = a.zones.is_empty() && a.sirens.is_empty();
            let named: std::collections::HashSet<&str> = a.sirens.iter().map(String::as_str).collect();
            fleet
                .sirens()
                .iter()
                .filter(|s| all || named.contains(s.id.as_str()) || a.zones.iter().any(|z| s.zone.is_within(z)))
                .map(|s| {
                    let acoustics = crate::coverage::layout::zone_acoustics(&p.coverage, s.zone.as_str());
                    (s.latitude, s.longitude, acoustics.audible_radius_m(s.rating_db) / 1000.0)
                })
                .collect()
        };
        let messages = p.publisher.messages(&activations, &circles);
        crate::cap::publish::atom(&messages, &p.publisher.sender, url)
    }

    /// Refuses (and applies nothing of) an alert whose areas reach beyond the zones its
    /// source acts in.
    fn check_zones(&self, info: &Info, source: &str, allowed: &[String]) -> Result<(), LiveError> {
        if allowed.is_empty() {
            return Ok(());
        }
        let (mut zones, sirens) = self.cap_targets(info);
        {
            let fleet = self.read_fleet();
            zones.extend(sirens.iter().filter_map(|id| fleet.get(id).map(|s| s.zone.to_string())));
        }
        match zones.iter().find(|z| !allowed.iter().any(|a| crate::coverage::within(z, a))) {
            Some(z) => Err(LiveError::Forbidden(format!(
                "source `{source}` acts in {} only; the alert's area reaches `{z}`",
                allowed.join(", ")
            ))),
            None => Ok(()),
        }
    }

    /// The sirens inside `info`'s polygons and circles, and the zones its geocodes name.
    fn cap_targets(&self, info: &Info) -> (Vec<String>, Vec<String>) {
        let fleet = self.read_fleet();
        let mut sirens = Vec::new();
        for area in &info.area {
            // Checked when the alert was read.
            if let Ok(shapes) = area.shapes("area") {
                sirens.extend(shapes.sirens_inside(&fleet));
            }
        }
        sirens.sort_unstable();
        sirens.dedup();
        (self.cap_config.zones_of(info), sirens)
    }

    /// A LIVE request for `info`'s areas (superseding `update`'s request if it still waits).
    fn cap_request(
        &mut self,
        alert: &Alert,
        info: &Info,
        signal: &str,
        source: &str,
        update: Option<u32>,
        r: &mut Received,
    ) -> Result<&'static str, LiveError> {
        let (zones, sirens) = self.cap_targets(info);
        if zones.is_empty() && sirens.is_empty() {
            r.outcome = "its areas hold no siren and no geocode names a zone: recorded only".into();
            return Ok("recorded");
        }
        let old = update.and_then(|id| self.desk.get(id).cloned());
        if let Some(old) = &old {
            if old.signal == signal && old.zones == zones && old.sirens == sirens && old.standing != Standing::Requested
            {
                r.activation = Some(old.id);
                r.outcome = format!("update of activation {}: what sounds is unchanged", old.id);
                return Ok("recorded");
            }
        }
        let headline = info.headline.as_deref().unwrap_or(&info.event);
        let mut reason = format!("CAP {} from {}: {headline}", alert.identifier, alert.sender);
        if let Some(old) = &old {
            let _ = write!(reason, " (update of activation {})", old.id);
        }
        let ask = Ask { zones, sirens, area: None, signal: signal.to_owned(), at: None, reason };
        let mut a = self.live_request(ask, source)?;
        if let Some(linked) = self.desk.from_cap(a.id, alert.key().to_string(), old.as_ref().map(|o| o.id)) {
            self.store.save_activation(&linked)?;
            a = linked;
        }
        // The request it supersedes is withdrawn only once the new one stands.
        if let Some(old) = old.as_ref().filter(|o| o.standing == Standing::Requested) {
            let why = format!("superseded by CAP update {} (activation {})", alert.key(), a.id);
            if let Ok(w) = self.desk.reject(old.id, source, &why, Timestamp::now()) {
                self.store.save_activation(&w)?;
                self.record(None, "live_rejected", format!("activation {} rejected by {source}: {why}", w.id));
            }
        }
        r.activation = Some(a.id);
        r.outcome = match (&old, &a.standing) {
            (_, Standing::Approved { .. }) => format!("LIVE activation {} sounding (second person waived)", a.id),
            (Some(o), _) => format!("LIVE activation {} requested, updating activation {}", a.id, o.id),
            (None, _) => format!("LIVE activation {} requested: a second person must approve it", a.id),
        };
        Ok(if old.is_some() { "updated" } else { "requested" })
    }

    /// Withdraws a request still waiting, or stops an approved warning.
    fn cap_cancel(
        &mut self,
        alert: &Alert,
        id: u32,
        source: &str,
        r: &mut Received,
    ) -> Result<&'static str, LiveError> {
        r.activation = Some(id);
        let why = format!("cancelled by CAP {}", alert.key());
        let Some(a) = self.desk.get(id).cloned() else {
            r.outcome = format!("activation {id} is unknown: recorded only");
            return Ok("recorded");
        };
        match a.standing {
            Standing::Requested => {
                let a = self.desk.reject(id, source, &why, Timestamp::now())?;
                self.store.save_activation(&a)?;
                self.record(None, "live_rejected", format!("activation {id} rejected by {source}: {why}"));
                r.outcome = format!("activation {id} withdrawn before approval");
            }
            Standing::Approved { .. } => {
                let scope = StopScope { zones: a.zones.clone(), sirens: a.sirens.clone() };
                let sweep = self.start_stop(&scope, source, &why);
                r.outcome = format!("activation {id} stopped (stop {})", sweep.id);
            }
            Standing::Rejected { .. } | Standing::Expired { .. } => {
                r.outcome = format!("activation {id} had not sounded: nothing to stop");
                return Ok("recorded");
            }
        }
        Ok("cancelled")
    }

    /// A TEST sounding of `signal` on the zones `info`'s areas touch (tests target zones).
    fn cap_exercise(&mut self, info: &Info, signal: &str, source: &str, r: &mut Received) -> &'static str {
        let (mut zones, sirens) = self.cap_targets(info);
        {
            let fleet = self.read_fleet();
            zones.extend(sirens.iter().filter_map(|id| fleet.get(id).map(|s| s.zone.to_string())));
        }
        zones.sort_unstable();
        zones.dedup();
        let Some(sequence) = self.live_config.signal(signal) else {
            r.outcome = format!("no signal `{signal}`: recorded only");
            return "recorded";
        };
        if zones.is_empty() {
            r.outcome = "exercise: its areas hold no siren: recorded only".into();
            return "recorded";
        }
        let now = Timestamp::now();
        let fleet = std::sync::Arc::clone(&self.fleet);
        let fleet = fleet.read().unwrap_or_else(std::sync::PoisonError::into_inner);
        let Some(runner) = self.soundings.as_mut() else {
            r.outcome = "exercise: soundings are not running: recorded only".into();
            return "recorded";
        };
        let at = runner.earliest_ad_hoc(now) + jiff::SignedDuration::from_secs(20);
        let request = AdHoc { at, kind: Kind::Test, zones, sequence };
        match runner.schedule_ad_hoc(&request, &format!("cap:{source}"), now, &self.store, &fleet) {
            Ok(campaign) => {
                r.sounding = Some(campaign);
                r.outcome = format!("exercise: TEST sounding {campaign} at {at}, never LIVE");
                "exercise"
            }
            Err(e) => {
                r.outcome = format!("exercise: the TEST sounding was refused ({e}): recorded only");
                "recorded"
            }
        }
    }
}
