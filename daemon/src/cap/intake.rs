//! What a received CAP alert does, decided once per alert (sans-IO): the same identifier,
//! sender and sent time from several feeds or retries is applied once; `Actual` alerts that a
//! rule matches request a LIVE warning (the two-person rule applies as to a person's request,
//! unless `[[live.waivers]]` waives it for the source and zones); `Exercise` never sounds LIVE;
//! `Update` and `Cancel` act on the activation of the alert they reference.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};

use super::rules::{CapConfig, ExerciseAction};
use super::{Alert, Key, MsgType, Status};

/// One alert as received and what it did (stored, and listed by `GET /api/cap/alerts`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Received {
    pub sender: String,
    pub identifier: String,
    pub sent: String,
    /// The token or feed it came from.
    pub source: String,
    pub received_at: String,
    pub status: String,
    pub msg_type: String,
    /// The `<event>` of its first `<info>`, if any.
    pub event: Option<String>,
    /// The rule that matched.
    pub rule: Option<String>,
    /// What it did, in words.
    pub outcome: String,
    /// The LIVE activation it requested, updated or cancelled.
    pub activation: Option<u32>,
    /// The TEST sounding an exercise became.
    pub sounding: Option<u32>,
}

impl Received {
    pub fn key(&self) -> Key {
        Key { sender: self.sender.clone(), identifier: self.identifier.clone(), sent: self.sent.clone() }
    }
}

/// What to do with an alert.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Applied before (another feed, a retry): nothing more.
    Duplicate(Box<Received>),
    /// Recorded only, and why.
    Record(String),
    /// Request a LIVE warning of `signal` for `info`'s areas.
    Request { rule: String, signal: String, info: usize },
    /// A TEST sounding of `signal` for `info`'s areas (an exercise whose rule says so).
    Exercise { rule: String, signal: String, info: usize },
    /// An update of the alert that caused `activation`: request what it says now.
    Update { activation: u32, rule: String, signal: String, info: usize },
    /// A cancel of the alert that caused `activation`: withdraw or stop it.
    Cancel { activation: u32 },
}

/// The alerts received so far, by key.
#[derive(Debug, Default)]
pub struct Intake {
    received: HashMap<Key, Received>,
}

impl Intake {
    /// From the stored record of alerts received.
    pub fn restore(received: Vec<Received>) -> Self {
        Self { received: received.into_iter().map(|r| (r.key(), r)).collect() }
    }

    /// What `alert` from `source` does.
    pub fn decide(&self, alert: &Alert, source: &str, config: &CapConfig) -> Decision {
        if let Some(r) = self.received.get(&alert.key()) {
            return Decision::Duplicate(Box::new(r.clone()));
        }
        let status = match alert.status {
            Status::System | Status::Draft => {
                return Decision::Record(format!("status {:?}: recorded only", alert.status));
            }
            s => s,
        };
        match alert.msg_type {
            MsgType::Ack | MsgType::Error => {
                return Decision::Record(format!("msgType {:?}: recorded only", alert.msg_type));
            }
            MsgType::Cancel => {
                return match self.activation_referenced(alert) {
                    Some(activation) => Decision::Cancel { activation },
                    None => Decision::Record("cancels no alert that sounded or requested anything here".into()),
                };
            }
            MsgType::Alert | MsgType::Update => {}
        }
        let Some((rule, info)) = config.rule_for(&alert.info, &alert.sender, source) else {
            return Decision::Record("no rule matches: recorded only".into());
        };
        let Some(signal) = rule.signal.clone() else {
            return Decision::Record(format!("rule `{}`: recorded only", rule.name));
        };
        let name = rule.name.clone();
        match status {
            Status::Test => Decision::Record("a Test alert never sounds: recorded only".into()),
            Status::Exercise => match rule.exercise {
                ExerciseAction::Record => {
                    Decision::Record(format!("an Exercise never sounds LIVE (rule `{name}`): recorded only"))
                }
                ExerciseAction::Test => Decision::Exercise { rule: name, signal, info },
            },
            _ => match (alert.msg_type, self.activation_referenced(alert)) {
                (MsgType::Update, Some(activation)) => Decision::Update { activation, rule: name, signal, info },
                // An update of an alert that did nothing here is taken as an alert.
                _ => Decision::Request { rule: name, signal, info },
            },
        }
    }

    /// The activation of the latest referenced alert that has one.
    fn activation_referenced(&self, alert: &Alert) -> Option<u32> {
        let keys = alert.referenced().unwrap_or_default();
        keys.iter().rev().find_map(|k| self.received.get(k).and_then(|r| r.activation))
    }

    /// Records what an alert did.
    pub fn record(&mut self, received: Received) {
        self.received.insert(received.key(), received);
    }

    /// The latest `limit` alerts received, newest first.
    pub fn latest(&self, limit: usize) -> Vec<Received> {
        let mut all: Vec<&Received> = self.received.values().collect();
        all.sort_by(|a, b| b.received_at.cmp(&a.received_at));
        all.into_iter().take(limit).cloned().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TYPHOON: &str = r#"<alert xmlns="urn:oasis:names:tc:emergency:cap:1.2">
  <identifier>TY-1</identifier><sender>typhoon@hz.example</sender><sent>2026-09-17T08:00:00+08:00</sent>
  <status>STATUS</status><msgType>MSGTYPE</msgType><scope>Public</scope>REFS
  <info><category>Met</category><event>Typhoon</event><urgency>Immediate</urgency>
    <severity>Extreme</severity><certainty>Observed</certainty>
    <area><areaDesc>West Lake</areaDesc><polygon>30.2,120.0 30.3,120.0 30.3,120.2 30.2,120.0</polygon></area>
  </info></alert>"#;

    fn alert(status: &str, msg_type: &str, identifier: &str, references: Option<&str>) -> Alert {
        let refs = references.map(|r| format!("<references>{r}</references>")).unwrap_or_default();
        let text = TYPHOON.replace("TY-1", identifier).replace("STATUS", status).replace("MSGTYPE", msg_type);
        let text = text.replace("REFS", &refs);
        Alert::parse(&text).unwrap()
    }

    fn config() -> CapConfig {
        toml::from_str(
            r#"
            [[rules]]
            name = "typhoon"
            event = "typhoon"
            severity = ["Severe", "Extreme"]
            signal = "typhoon"
            exercise = "test"
            "#,
        )
        .unwrap()
    }

    fn received(a: &Alert, activation: Option<u32>) -> Received {
        Received {
            sender: a.sender.clone(),
            identifier: a.identifier.clone(),
            sent: a.sent.clone(),
            source: "feed".into(),
            received_at: "2026-09-17T00:00:00Z".into(),
            status: "Actual".into(),
            msg_type: "Alert".into(),
            event: None,
            rule: None,
            outcome: String::new(),
            activation,
            sounding: None,
        }
    }

    #[test]
    fn an_actual_alert_requests_its_update_and_cancel_act_on_the_same_activation() {
        let mut intake = Intake::default();
        let first = alert("Actual", "Alert", "TY-1", None);
        assert_eq!(
            intake.decide(&first, "feed", &config()),
            Decision::Request { rule: "typhoon".into(), signal: "typhoon".into(), info: 0 }
        );
        intake.record(received(&first, Some(7)));
        assert!(matches!(intake.decide(&first, "other-feed", &config()), Decision::Duplicate(_)), "applied once");
        let r = "typhoon@hz.example,TY-1,2026-09-17T08:00:00+08:00";
        let update = alert("Actual", "Update", "TY-2", Some(r));
        assert!(matches!(intake.decide(&update, "feed", &config()), Decision::Update { activation: 7, .. }));
        let cancel = alert("Actual", "Cancel", "TY-3", Some(r));
        assert_eq!(intake.decide(&cancel, "feed", &config()), Decision::Cancel { activation: 7 });
        let unknown = alert("Actual", "Cancel", "TY-4", Some("x@y,nothing,2026-09-17T08:00:00+08:00"));
        assert!(matches!(intake.decide(&unknown, "feed", &config()), Decision::Record(_)));
    }

    #[test]
    fn exercises_tests_system_and_unmatched_alerts_never_sound_live() {
        let intake = Intake::default();
        let c = config();
        assert!(matches!(intake.decide(&alert("Exercise", "Alert", "E", None), "feed", &c), Decision::Exercise { .. }));
        let mut record_only = c.clone();
        record_only.rules[0].exercise = ExerciseAction::Record;
        for (status, config) in [("Exercise", &record_only), ("Test", &c), ("System", &c), ("Draft", &c)] {
            let d = intake.decide(&alert(status, "Alert", "E", None), "feed", config);
            assert!(matches!(d, Decision::Record(_)), "{status}: {d:?}");
        }
        let mut minor = c.clone();
        minor.rules[0].severity = vec![super::super::Severity::Minor];
        assert_eq!(
            intake.decide(&alert("Actual", "Alert", "M", None), "feed", &minor),
            Decision::Record("no rule matches: recorded only".into())
        );
    }
}
