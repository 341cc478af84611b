//! LIVE warnings, requested by one person and approved by another (Hawaii, January 2018: one
//! person and one "are you sure?" sent a missile alert by mistake). A request names its
//! targets, a signal and "now" or an instant; a different person (another token and another
//! name) approves it within the approval window, or it expires. Only an approved activation
//! becomes a campaign, of kind `live`, with the protocol's LIVE message types. The
//! configuration may waive the second person for a named source in named zones only (an
//! automated feed for one district), and the daemon says so at start.
//!
//! Sans-IO: the desk of requests and what may happen to each.

use jiff::{SignedDuration, Timestamp};
use serde::{Deserialize, Serialize};

use crate::sounding::sequence::Step;

/// `[live]` in sirend.toml.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LiveConfig {
    /// How long a request waits for its approval.
    #[serde(default = "default_window")]
    pub approval_window_s: u32,
    /// Hazard signals beyond the air-defence ones (`pre-warning`, `air-raid`, `all-clear`).
    #[serde(default)]
    pub signals: Vec<SignalConfig>,
    /// Sources whose requests in some zones need no second person.
    #[serde(default)]
    pub waivers: Vec<Waiver>,
}

impl Default for LiveConfig {
    fn default() -> Self {
        Self { approval_window_s: default_window(), signals: Vec::new(), waivers: Vec::new() }
    }
}

fn default_window() -> u32 {
    120
}

/// A named signal: a sequence of catalogue patterns (typhoon, flood, ...).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SignalConfig {
    pub name: String,
    pub sequence: Vec<Step>,
}

/// The second person waived for requests of token `source` inside `zones`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Waiver {
    pub source: String,
    pub zones: Vec<String>,
}

impl LiveConfig {
    /// The sequence of signal `name`: an air-defence signal, or a configured one.
    pub fn signal(&self, name: &str) -> Option<Vec<Step>> {
        match name {
            "pre-warning" | "air-raid" | "all-clear" => Some(vec![Step::Pattern { pattern: name.to_owned() }]),
            _ => self.signals.iter().find(|s| s.name == name).map(|s| s.sequence.clone()),
        }
    }

    /// Every signal's name.
    pub fn signal_names(&self) -> Vec<String> {
        ["pre-warning", "air-raid", "all-clear"]
            .into_iter()
            .map(str::to_owned)
            .chain(self.signals.iter().map(|s| s.name.clone()))
            .collect()
    }

    /// Whether `source`'s request touching `zones` (empty: the whole fleet) needs no second
    /// person.
    pub fn waived(&self, source: &str, zones: &[String]) -> bool {
        !zones.is_empty()
            && self.waivers.iter().any(|w| {
                w.source == source && zones.iter().all(|z| w.zones.iter().any(|wz| crate::coverage::within(z, wz)))
            })
    }
}

/// Where an activation stands.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum Standing {
    /// Waiting for a second person until `expires`.
    Requested,
    Approved {
        by: String,
        at: String,
        /// The configuration waived the second person for this source and these zones.
        waived: bool,
    },
    Rejected {
        by: String,
        at: String,
        reason: String,
    },
    Expired {
        at: String,
    },
}

/// One LIVE activation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Activation {
    pub id: u32,
    pub requested_by: String,
    pub requested_at: String,
    /// A request not approved by then cannot be.
    pub expires: String,
    /// Target zones and sirens; both empty: the whole fleet.
    pub zones: Vec<String>,
    /// With the sirens that stood inside `area` when it was requested.
    pub sirens: Vec<String>,
    /// The area the request drew (a GeoJSON geometry), if it drew one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub area: Option<serde_json::Value>,
    pub signal: String,
    /// When it sounds (RFC 3339); `None`: at once on approval. (Named apart from the `at` of
    /// its approval, rejection or expiry, which the same object carries.)
    pub sounds_at: Option<String>,
    pub reason: String,
    #[serde(flatten)]
    pub standing: Standing,
    /// The campaign that sounds it, once approved.
    pub campaign: Option<u32>,
    /// Marked a false alarm: who, when, why.
    #[serde(default)]
    pub false_alarm: Option<String>,
    /// Stopped while it sounded (`POST /api/stop`, a CAP cancel): who, when, why.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stopped: Option<String>,
    /// The activation it updates (a CAP `Update`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub updates: Option<u32>,
    /// The CAP alert that requested it (`sender,identifier,sent`; `GET /api/cap/alerts`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cap_alert: Option<String>,
}

/// What a request asks.
#[derive(Debug, Clone)]
pub struct Ask {
    pub zones: Vec<String>,
    /// With the sirens inside `area`, if one was given.
    pub sirens: Vec<String>,
    /// The GeoJSON area the request drew, as given.
    pub area: Option<serde_json::Value>,
    pub signal: String,
    pub at: Option<Timestamp>,
    pub reason: String,
}

/// Why a step on an activation was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refused {
    #[error("no activation {0}")]
    Unknown(u32),
    #[error("activation {0} was requested by `{1}`: a different person must approve it")]
    SamePerson(u32, String),
    #[error("activation {0} expired at {1} without approval: request it again")]
    Expired(u32, String),
    #[error("activation {0} is no longer waiting for approval ({1})")]
    NotPending(u32, &'static str),
}

/// The requests and what became of them.
#[derive(Debug, Default)]
pub struct Desk {
    activations: Vec<Activation>,
    next_id: u32,
    /// When the earliest pending request expires: the engine asks at every tick, and the desk
    /// may hold thousands of past activations.
    next_expiry: Option<Timestamp>,
}

fn parse(t: &str) -> Timestamp {
    t.parse().unwrap_or(Timestamp::UNIX_EPOCH)
}

impl Desk {
    /// A desk of the activations the store kept.
    pub fn restore(activations: Vec<Activation>) -> Self {
        let next_id = activations.iter().map(|a| a.id).max().unwrap_or(0) + 1;
        let mut desk = Self { activations, next_id, next_expiry: None };
        desk.find_next_expiry();
        desk
    }

    /// Files a request by `by` at `now`, waiting `window` for approval (approved at once when
    /// `waived`).
    pub fn request(&mut self, ask: Ask, by: &str, window: SignedDuration, waived: bool, now: Timestamp) -> Activation {
        let id = self.next_id.max(1);
        self.next_id = id + 1;
        let standing = if waived {
            Standing::Approved { by: "waiver".into(), at: now.to_string(), waived: true }
        } else {
            Standing::Requested
        };
        let a = Activation {
            id,
            requested_by: by.to_owned(),
            requested_at: now.to_string(),
            expires: (now + window).to_string(),
            zones: ask.zones,
            sirens: ask.sirens,
            area: ask.area,
            signal: ask.signal,
            sounds_at: ask.at.map(|t| t.to_string()),
            reason: ask.reason,
            standing,
            campaign: None,
            false_alarm: None,
            stopped: None,
            updates: None,
            cap_alert: None,
        };
        self.activations.push(a.clone());
        self.find_next_expiry();
        a
    }

    fn find_next_expiry(&mut self) {
        self.next_expiry =
            self.activations.iter().filter(|a| a.standing == Standing::Requested).map(|a| parse(&a.expires)).min();
    }

    fn pending(&mut self, id: u32, now: Timestamp) -> Result<&mut Activation, Refused> {
        let a = self.activations.iter_mut().find(|a| a.id == id).ok_or(Refused::Unknown(id))?;
        match &a.standing {
            Standing::Requested if now >= parse(&a.expires) => Err(Refused::Expired(id, a.expires.clone())),
            Standing::Requested => Ok(a),
            Standing::Approved { .. } => Err(Refused::NotPending(id, "approved")),
            Standing::Rejected { .. } => Err(Refused::NotPending(id, "rejected")),
            Standing::Expired { .. } => Err(Refused::Expired(id, a.expires.clone())),
        }
    }

    /// `by` approves request `id` at `now`: never its requester.
    pub fn approve(&mut self, id: u32, by: &str, now: Timestamp) -> Result<Activation, Refused> {
        let a = self.pending(id, now)?;
        if a.requested_by == by {
            return Err(Refused::SamePerson(id, a.requested_by.clone()));
        }
        a.standing = Standing::Approved { by: by.to_owned(), at: now.to_string(), waived: false };
        let a = a.clone();
        self.find_next_expiry();
        Ok(a)
    }

    /// `by` rejects (or its requester withdraws) request `id`.
    pub fn reject(&mut self, id: u32, by: &str, reason: &str, now: Timestamp) -> Result<Activation, Refused> {
        let a = self.pending(id, now)?;
        a.standing = Standing::Rejected { by: by.to_owned(), at: now.to_string(), reason: reason.to_owned() };
        let a = a.clone();
        self.find_next_expiry();
        Ok(a)
    }

    /// Requests whose window passed by `now`, now expired.
    pub fn expire(&mut self, now: Timestamp) -> Vec<Activation> {
        let mut out = Vec::new();
        for a in &mut self.activations {
            if a.standing == Standing::Requested && now >= parse(&a.expires) {
                a.standing = Standing::Expired { at: a.expires.clone() };
                out.push(a.clone());
            }
        }
        self.find_next_expiry();
        out
    }

    /// Records the campaign that sounds activation `id`.
    pub fn started(&mut self, id: u32, campaign: u32) -> Option<Activation> {
        let a = self.activations.iter_mut().find(|a| a.id == id)?;
        a.campaign = Some(campaign);
        Some(a.clone())
    }

    /// Records that CAP alert `alert` requested activation `id`, updating activation `old`.
    pub fn from_cap(&mut self, id: u32, alert: String, old: Option<u32>) -> Option<Activation> {
        let a = self.activations.iter_mut().find(|a| a.id == id)?;
        a.cap_alert = Some(alert);
        a.updates = old;
        Some(a.clone())
    }

    /// The newest activation in `id`'s chain of updates (`id` itself when none updates it): a
    /// CAP cancel or update of the first alert acts on what its updates made of it.
    pub fn current(&self, id: u32) -> u32 {
        let mut id = id;
        while let Some(next) = self.activations.iter().filter(|a| a.updates == Some(id)).map(|a| a.id).max() {
            if next <= id {
                break;
            }
            id = next;
        }
        id
    }

    /// Marks activation `id` stopped (the first stop counts).
    pub fn stopped(&mut self, id: u32, note: String) -> Option<Activation> {
        let a = self.activations.iter_mut().find(|a| a.id == id && a.stopped.is_none())?;
        a.stopped = Some(note);
        Some(a.clone())
    }

    /// The activations approved and started whose campaign is one of `campaigns`.
    pub fn sounding_in(&self, campaigns: &[u32]) -> Vec<u32> {
        self.activations.iter().filter(|a| a.campaign.is_some_and(|c| campaigns.contains(&c))).map(|a| a.id).collect()
    }

    /// Marks activation `id` a false alarm.
    pub fn false_alarm(&mut self, id: u32, note: String) -> Result<Activation, Refused> {
        let a = self.activations.iter_mut().find(|a| a.id == id).ok_or(Refused::Unknown(id))?;
        a.false_alarm = Some(note);
        Ok(a.clone())
    }

    pub fn get(&self, id: u32) -> Option<&Activation> {
        self.activations.iter().find(|a| a.id == id)
    }

    /// The latest `n`, newest first.
    pub fn latest(&self, n: usize) -> Vec<Activation> {
        self.activations.iter().rev().take(n).cloned().collect()
    }

    /// The instant the earliest pending request expires, for the engine's wake-up.
    pub fn next_expiry(&self) -> Option<Timestamp> {
        self.next_expiry
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: i64) -> Timestamp {
        Timestamp::from_second(1_800_000_000 + s).unwrap()
    }

    fn ask() -> Ask {
        Ask {
            zones: vec!["hz/w".into()],
            sirens: vec![],
            area: None,
            signal: "air-raid".into(),
            at: None,
            reason: "drill".into(),
        }
    }

    const WINDOW: SignedDuration = SignedDuration::from_secs(120);

    #[test]
    fn an_update_chain_leads_to_its_newest_activation() {
        let mut d = Desk::default();
        let ids: Vec<u32> = (0..3).map(|i| d.request(ask(), "cap-feed", WINDOW, false, at(i)).id).collect();
        d.from_cap(ids[1], "s,TY-2,t".into(), Some(ids[0]));
        d.from_cap(ids[2], "s,TY-3,t".into(), Some(ids[1]));
        assert_eq!(d.current(ids[0]), ids[2]);
        assert_eq!(d.current(ids[1]), ids[2]);
        assert_eq!(d.current(ids[2]), ids[2]);
        assert_eq!(d.get(ids[2]).unwrap().cap_alert.as_deref(), Some("s,TY-3,t"));
    }

    #[test]
    fn a_different_person_approves_within_the_window() {
        let mut d = Desk::default();
        let a = d.request(ask(), "alice", WINDOW, false, at(0));
        assert_eq!(a.standing, Standing::Requested);
        assert_eq!(d.approve(a.id, "alice", at(10)), Err(Refused::SamePerson(a.id, "alice".into())));
        let approved = d.approve(a.id, "bob", at(20)).unwrap();
        let json = serde_json::to_string(&approved).unwrap();
        assert_eq!(json.matches("\"at\":").count(), 1, "one key each: {json}");
        assert!(matches!(approved.standing, Standing::Approved { ref by, waived: false, .. } if by == "bob"));
        assert_eq!(d.approve(a.id, "carol", at(21)), Err(Refused::NotPending(a.id, "approved")));
        assert_eq!(d.reject(a.id, "carol", "no", at(21)), Err(Refused::NotPending(a.id, "approved")));
    }

    #[test]
    fn an_expired_request_cannot_be_approved() {
        let mut d = Desk::default();
        let a = d.request(ask(), "alice", WINDOW, false, at(0));
        assert_eq!(d.next_expiry(), Some(at(120)));
        assert!(matches!(d.approve(a.id, "bob", at(120)), Err(Refused::Expired(..))), "at the expiry, too late");
        assert_eq!(d.expire(at(119)).len(), 0);
        assert_eq!(d.expire(at(121)).len(), 1);
        assert!(matches!(d.approve(a.id, "bob", at(60)), Err(Refused::Expired(..))), "expired stays expired");
        let b = d.request(ask(), "alice", WINDOW, false, at(200));
        let rejected = d.reject(b.id, "bob", "wrong district", at(210)).unwrap();
        assert!(matches!(rejected.standing, Standing::Rejected { .. }));
        assert_eq!(d.approve(99, "bob", at(0)), Err(Refused::Unknown(99)));
    }

    #[test]
    fn a_waiver_holds_only_for_its_source_inside_its_zones() {
        let c = LiveConfig {
            approval_window_s: 120,
            signals: vec![SignalConfig {
                name: "typhoon".into(),
                sequence: vec![Step::Pattern { pattern: "pre-warning".into() }],
            }],
            waivers: vec![Waiver { source: "cap-xihu".into(), zones: vec!["hz/w".into()] }],
        };
        assert!(c.waived("cap-xihu", &["hz/w/t1".into()]));
        assert!(!c.waived("cap-xihu", &["hz/w".into(), "hz/e".into()]), "one zone outside");
        assert!(!c.waived("cap-xihu", &[]), "the whole fleet is never waived");
        assert!(!c.waived("alice", &["hz/w".into()]));
        assert!(c.signal("typhoon").is_some() && c.signal("air-raid").is_some() && c.signal("storm").is_none());
        let mut d = Desk::default();
        let a = d.request(ask(), "cap-xihu", WINDOW, true, at(0));
        assert!(matches!(a.standing, Standing::Approved { waived: true, .. }));
    }
}
