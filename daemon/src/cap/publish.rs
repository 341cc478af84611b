//! sirend's own LIVE warnings as CAP 1.2, for the other channels (cell broadcast, apps,
//! displays) to follow: each approved warning is an `Alert`, a warning that updates another an
//! `Update` referencing it, a stopped warning or a false alarm a `Cancel` referencing it. The
//! area is one circle per siren, its audible radius. Served as an Atom feed
//! (`GET /api/cap.atom`), each entry's content the CAP document itself.
//!
//! Sans-IO: activations in, documents and the feed's text out.

use std::fmt::Write as _;

use jiff::Timestamp;
use jiff::tz::TimeZone;
use quick_xml::escape::escape;

use super::{Alert, Area, Category, Certainty, Info, MsgType, Scope, Severity, Status, Text, Urgency};
use crate::live::{Activation, Standing};

/// One siren's audible circle: latitude, longitude, radius in kilometres.
pub type SirenCircle = (f64, f64, f64);

/// What the feed is made of.
#[derive(Debug, Clone)]
pub struct Publisher {
    /// `<sender>` of every document.
    pub sender: String,
    /// The time zone the documents write their times in.
    pub timezone: TimeZone,
}

/// One CAP message and when it happened.
#[derive(Debug, Clone)]
pub struct Message {
    pub alert: Alert,
    pub at: Timestamp,
}

impl Publisher {
    fn time(&self, t: Timestamp) -> String {
        t.to_zoned(self.timezone.clone()).strftime("%Y-%m-%dT%H:%M:%S%:z").to_string()
    }

    fn identifier(a: &Activation) -> String {
        format!("sirend-activation-{}", a.id)
    }

    /// The CAP messages of `activations`: `circles(a)` gives the audible circles of `a`'s
    /// sirens.
    pub fn messages(
        &self,
        activations: &[Activation],
        circles: &dyn Fn(&Activation) -> Vec<SirenCircle>,
    ) -> Vec<Message> {
        let mut out = Vec::new();
        for a in activations {
            let Standing::Approved { at, .. } = &a.standing else { continue };
            if a.campaign.is_none() {
                continue;
            }
            let Ok(approved) = at.parse::<Timestamp>() else { continue };
            let reference =
                |b: &Activation, t: Timestamp| format!("{},{},{}", self.sender, Self::identifier(b), self.time(t));
            let updated =
                a.updates.and_then(|id| activations.iter().find(|b| b.id == id)).and_then(|b| match &b.standing {
                    Standing::Approved { at, .. } => at.parse::<Timestamp>().ok().map(|t| (b, t)),
                    _ => None,
                });
            let (msg_type, references) = match updated {
                Some((b, t)) => (MsgType::Update, Some(reference(b, t))),
                None => (MsgType::Alert, None),
            };
            let info = Self::info(a, &circles(a));
            let alert = self.alert(Self::identifier(a), approved, msg_type, references, None, info.clone());
            out.push(Message { alert, at: approved });
            let ended =
                a.false_alarm.as_ref().map(|n| ("false alarm", n)).or(a.stopped.as_ref().map(|n| ("stopped", n)));
            if let Some((what, note)) = ended {
                let when = note_time(note).unwrap_or(approved);
                let id = format!("{}-cancel", Self::identifier(a));
                let note = format!("{what}: {note}");
                let cancel = self.alert(id, when, MsgType::Cancel, Some(reference(a, approved)), Some(note), info);
                out.push(Message { alert: cancel, at: when });
            }
        }
        out.sort_by_key(|m| std::cmp::Reverse(m.at));
        out
    }

    fn alert(
        &self,
        identifier: String,
        sent: Timestamp,
        msg_type: MsgType,
        references: Option<String>,
        note: Option<String>,
        info: Info,
    ) -> Alert {
        Alert {
            xmlns: None,
            identifier,
            sender: self.sender.clone(),
            sent: self.time(sent),
            status: Status::Actual,
            msg_type,
            source: None,
            scope: Scope::Public,
            restriction: None,
            addresses: None,
            code: Vec::new(),
            note,
            references,
            incidents: None,
            info: vec![info],
        }
    }

    fn info(a: &Activation, circles: &[SirenCircle]) -> Info {
        let targets = if a.zones.is_empty() && a.sirens.is_empty() {
            "every siren".to_owned()
        } else {
            let mut t = a.zones.clone();
            if !a.sirens.is_empty() {
                t.push(format!("{} sirens", a.sirens.len()));
            }
            t.join(", ")
        };
        Info {
            language: None,
            category: vec![Text { value: Category::Safety }],
            event: a.signal.clone(),
            response_type: vec!["Shelter".into()],
            urgency: Urgency::Immediate,
            severity: Severity::Extreme,
            certainty: Certainty::Observed,
            audience: None,
            event_code: Vec::new(),
            effective: None,
            onset: None,
            expires: None,
            sender_name: None,
            headline: Some(format!("Sirens sound `{}`: {targets}", a.signal)),
            description: Some(a.reason.clone()),
            instruction: None,
            web: None,
            contact: None,
            parameter: Vec::new(),
            area: vec![Area {
                area_desc: format!("the audible range of the sirens sounding: {targets}"),
                polygon: Vec::new(),
                circle: circles.iter().map(|(lat, lon, km)| format!("{lat},{lon} {km:.3}")).collect(),
                geocode: Vec::new(),
                altitude: None,
                ceiling: None,
            }],
        }
    }
}

/// The time a `who at <time>: why` note names.
fn note_time(note: &str) -> Option<Timestamp> {
    note.split_once(" at ")?.1.split(": ").next()?.parse().ok()
}

/// The Atom feed of `messages` (newest first), its id and self link `url`.
pub fn atom(messages: &[Message], sender: &str, url: &str) -> String {
    let updated = messages.first().map_or(Timestamp::UNIX_EPOCH, |m| m.at);
    let mut out = format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<feed xmlns=\"http://www.w3.org/2005/Atom\">\n\
         <id>urn:sirend:cap:{}</id>\n<title>LIVE warnings of {}</title>\n<updated>{updated}</updated>\n\
         <link rel=\"self\" href=\"{}\"/>\n",
        escape(sender),
        escape(sender),
        escape(url)
    );
    for m in messages {
        let a = &m.alert;
        let Ok(xml) = a.to_xml() else { continue };
        let body = xml.split_once("?>\n").map_or(xml.as_str(), |(_, b)| b);
        let title = a.info.first().and_then(|i| i.headline.clone()).unwrap_or_default();
        let _ = write!(
            out,
            "<entry>\n<id>urn:sirend:cap:{}:{}</id>\n<title>{:?}: {}</title>\n<updated>{}</updated>\n\
             <author><name>{}</name></author>\n<content type=\"application/cap+xml\">{body}</content>\n</entry>\n",
            escape(&a.sender),
            escape(&a.identifier),
            a.msg_type,
            escape(&title),
            m.at,
            escape(&a.sender),
        );
    }
    out.push_str("</feed>\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn activation(id: u32, approved: &str) -> Activation {
        Activation {
            id,
            requested_by: "ops".into(),
            requested_at: approved.into(),
            expires: approved.into(),
            zones: vec!["hz/w".into()],
            sirens: vec![],
            area: None,
            signal: "air-raid".into(),
            sounds_at: None,
            reason: "missile warning".into(),
            standing: Standing::Approved { by: "second".into(), at: approved.into(), waived: false },
            campaign: Some(id),
            false_alarm: None,
            stopped: None,
            updates: None,
            cap_alert: None,
        }
    }

    #[test]
    fn warnings_become_alerts_updates_and_cancels_with_references() {
        let p = Publisher { sender: "sirend@hz.example".into(), timezone: TimeZone::fixed(jiff::tz::offset(8)) };
        let first = activation(1, "2026-09-17T00:00:00Z");
        let mut second = activation(2, "2026-09-17T00:05:00Z");
        second.updates = Some(1);
        second.false_alarm = Some("ops at 2026-09-17T00:09:00Z: wrong district".into());
        let mut rejected = activation(3, "2026-09-17T00:06:00Z");
        rejected.standing = Standing::Rejected { by: "b".into(), at: "x".into(), reason: "no".into() };
        let circles = |_: &Activation| vec![(30.25, 120.1, 1.5)];
        let m = p.messages(&[first, second, rejected], &circles);
        let kinds: Vec<(MsgType, &str)> = m.iter().map(|m| (m.alert.msg_type, m.alert.identifier.as_str())).collect();
        assert_eq!(
            kinds,
            [
                (MsgType::Cancel, "sirend-activation-2-cancel"),
                (MsgType::Update, "sirend-activation-2"),
                (MsgType::Alert, "sirend-activation-1"),
            ]
        );
        assert_eq!(
            m[0].alert.references.as_deref(),
            Some("sirend@hz.example,sirend-activation-2,2026-09-17T08:05:00+08:00")
        );
        assert!(m[0].alert.note.as_deref().unwrap().starts_with("false alarm: "));
        assert_eq!(m[0].alert.sent, "2026-09-17T08:09:00+08:00", "the cancel is sent when the false alarm was marked");
        assert_eq!(
            m[1].alert.references.as_deref(),
            Some("sirend@hz.example,sirend-activation-1,2026-09-17T08:00:00+08:00")
        );
        assert_eq!(m[2].alert.info[0].area[0].circle, ["30.25,120.1 1.500"]);
        // Each is a document sirend itself reads back as valid CAP 1.2.
        for message in &m {
            let xml = message.alert.to_xml().unwrap();
            assert_eq!(crate::cap::Alert::parse(&xml).unwrap().identifier, message.alert.identifier);
        }
        let feed = atom(&m, "sirend@hz.example", "http://x/api/cap.atom");
        assert_eq!(feed.matches("<entry>").count(), 3);
    }
}
