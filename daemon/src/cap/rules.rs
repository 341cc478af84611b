//! `[cap]` in sirend.toml: which alerts sound which signal, and which CAP geocodes are which
//! zones. The first rule that matches an `<info>` of the alert decides; no rule: recorded only.

use serde::Deserialize;

use super::{Certainty, Info, Severity, Urgency};

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CapConfig {
    /// The `<sender>` of the CAP documents sirend publishes (`GET /api/cap.atom`): unique to
    /// this office, for example `sirend@hangzhou.example`.
    #[serde(default)]
    pub sender: Option<String>,
    #[serde(default)]
    pub rules: Vec<Rule>,
    #[serde(default)]
    pub geocodes: Vec<Geocode>,
    /// Feeds polled for alerts.
    #[serde(default)]
    pub feeds: Vec<Feed>,
}

/// A CAP feed: an Atom or RSS index whose entries link to CAP documents.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Feed {
    /// The source its alerts come from (for rules, waivers and the record).
    pub name: String,
    pub url: String,
    /// Between two polls, s.
    #[serde(default = "default_interval")]
    pub interval_s: u32,
    /// For each request, s.
    #[serde(default = "default_timeout")]
    pub timeout_s: u32,
    /// The longest wait after failures (the wait doubles from the interval), s.
    #[serde(default = "default_max_backoff")]
    pub max_backoff_s: u32,
    /// The zones its alerts may reach; empty: every zone.
    #[serde(default)]
    pub zones: Vec<String>,
}

fn default_interval() -> u32 {
    60
}

fn default_timeout() -> u32 {
    10
}

fn default_max_backoff() -> u32 {
    900
}

/// One rule. Every criterion given must hold (a list: any of its values); none given matches
/// every alert.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rule {
    pub name: String,
    /// `<event>`, ignoring case.
    #[serde(default)]
    pub event: Option<String>,
    /// An `<eventCode>` as `valueName=value`.
    #[serde(default)]
    pub event_code: Option<String>,
    #[serde(default)]
    pub severity: Vec<Severity>,
    #[serde(default)]
    pub urgency: Vec<Urgency>,
    #[serde(default)]
    pub certainty: Vec<Certainty>,
    /// `<sender>`.
    #[serde(default)]
    pub sender: Option<String>,
    /// The source it came from: the name of the token that posted it, or of the feed.
    #[serde(default)]
    pub source: Option<String>,
    /// The LIVE signal an `Actual` alert requests (`[live]` signals); absent: recorded only.
    #[serde(default)]
    pub signal: Option<String>,
    /// What an `Exercise` does: recorded only (the default), or `test`: a TEST sounding of
    /// the signal on the same sirens, never LIVE.
    #[serde(default)]
    pub exercise: ExerciseAction,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ExerciseAction {
    #[default]
    Record,
    Test,
}

/// A `<geocode>` that names a zone.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Geocode {
    pub value_name: String,
    pub value: String,
    pub zone: String,
}

impl Rule {
    fn matches(&self, info: &Info, sender: &str, source: &str) -> bool {
        let event = self.event.as_ref().is_none_or(|e| e.eq_ignore_ascii_case(info.event.trim()));
        let code = self.event_code.as_ref().is_none_or(|c| {
            info.event_code.iter().any(|v| c.split_once('=').is_some_and(|(n, x)| n == v.value_name && x == v.value))
        });
        event
            && code
            && any_of(&self.severity, &info.severity)
            && any_of(&self.urgency, &info.urgency)
            && any_of(&self.certainty, &info.certainty)
            && self.sender.as_ref().is_none_or(|s| s == sender)
            && self.source.as_ref().is_none_or(|s| s == source)
    }
}

/// Whether `value` is in `list`, or `list` is empty (no criterion).
fn any_of<T: PartialEq>(list: &[T], value: &T) -> bool {
    list.is_empty() || list.contains(value)
}

impl CapConfig {
    /// The first rule matching one of `infos`, and that info's index.
    pub fn rule_for(&self, infos: &[Info], sender: &str, source: &str) -> Option<(&Rule, usize)> {
        self.rules.iter().find_map(|r| infos.iter().position(|i| r.matches(i, sender, source)).map(|i| (r, i)))
    }

    /// The zones the geocodes of `info`'s areas name.
    pub fn zones_of(&self, info: &Info) -> Vec<String> {
        let mut zones: Vec<String> = info
            .area
            .iter()
            .flat_map(|a| &a.geocode)
            .flat_map(|g| self.geocodes.iter().filter(move |m| m.value_name == g.value_name && m.value == g.value))
            .map(|m| m.zone.clone())
            .collect();
        zones.sort_unstable();
        zones.dedup();
        zones
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_matching_rule_decides_and_geocodes_name_zones() {
        let config: CapConfig = toml::from_str(
            r#"
            [[rules]]
            name = "flood, one district"
            event_code = "CN=FLOOD"
            source = "xihu-feed"
            signal = "flood"
            [[rules]]
            name = "anything else severe"
            severity = ["Extreme"]
            [[geocodes]]
            value_name = "GB2260"
            value = "330106"
            zone = "hangzhou/w"
            "#,
        )
        .unwrap();
        let xml = |code: &str, severity: &str| {
            format!(
                r#"<alert xmlns="urn:oasis:names:tc:emergency:cap:1.2"><identifier>F</identifier><sender>s@x</sender>
                <sent>2026-07-01T08:00:00+08:00</sent><status>Actual</status><msgType>Alert</msgType><scope>Public</scope>
                <info><category>Met</category><event>洪水</event><urgency>Expected</urgency><severity>{severity}</severity>
                <certainty>Likely</certainty><eventCode><valueName>CN</valueName><value>{code}</value></eventCode>
                <area><areaDesc>西湖区</areaDesc><geocode><valueName>GB2260</valueName><value>330106</value></geocode></area>
                </info></alert>"#
            )
        };
        let flood = crate::cap::Alert::parse(&xml("FLOOD", "Moderate")).unwrap();
        let (rule, info) = config.rule_for(&flood.info, &flood.sender, "xihu-feed").unwrap();
        assert_eq!((rule.name.as_str(), info), ("flood, one district", 0));
        assert!(config.rule_for(&flood.info, &flood.sender, "another-feed").is_none(), "only from its source");
        let storm = crate::cap::Alert::parse(&xml("STORM", "Extreme")).unwrap();
        assert_eq!(config.rule_for(&storm.info, &storm.sender, "another-feed").unwrap().0.name, "anything else severe");
        assert_eq!(config.zones_of(&flood.info[0]), ["hangzhou/w"]);
    }
}
