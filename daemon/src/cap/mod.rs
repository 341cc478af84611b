//! OASIS Common Alerting Protocol 1.2 (CAP): the documents multi-hazard warning platforms send
//! and receive. This module is the document model (read and written with quick-xml's serde
//! support) and the checks of the standard's section 3 that the schema alone does not make;
//! [`rules`] decides what an alert does, [`intake`] applies it once.
//!
//! Sans-IO: text in, a checked [`Alert`] or the reason it was refused out.

pub mod feeds;
pub mod intake;
pub mod publish;
pub mod rules;

use serde::{Deserialize, Serialize};

/// The CAP 1.2 namespace; a document in any other is refused.
pub const NAMESPACE: &str = "urn:oasis:names:tc:emergency:cap:1.2";
/// The largest document accepted, bytes: far above a real alert with a detailed polygon.
pub const MAX_DOCUMENT: usize = 1024 * 1024;

/// Why a document was refused. Nothing of a refused document is applied.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CapError {
    #[error("not a CAP 1.2 alert: {0}")]
    Xml(String),
    #[error("not a CAP 1.2 alert: the namespace is `{0}`, not `{NAMESPACE}`")]
    Namespace(String),
    #[error("{field}: {problem}")]
    Invalid { field: String, problem: String },
    #[error("the document is larger than {MAX_DOCUMENT} bytes")]
    TooLarge,
}

fn invalid(field: impl Into<String>, problem: impl Into<String>) -> CapError {
    CapError::Invalid { field: field.into(), problem: problem.into() }
}

/// `<alert>`.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(rename = "alert")]
pub struct Alert {
    #[serde(rename = "@xmlns", default)]
    pub xmlns: Option<String>,
    pub identifier: String,
    pub sender: String,
    /// With its UTC offset, as CAP writes it (`2026-09-17T08:00:00+08:00`).
    pub sent: String,
    pub status: Status,
    #[serde(rename = "msgType")]
    pub msg_type: MsgType,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
    pub scope: Scope,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub restriction: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub addresses: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub code: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
    /// `sender,identifier,sent` triples separated by spaces.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub references: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub incidents: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub info: Vec<Info>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
pub enum Status {
    Actual,
    Exercise,
    System,
    Test,
    Draft,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
pub enum MsgType {
    Alert,
    Update,
    Cancel,
    Ack,
    Error,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
pub enum Scope {
    Public,
    Restricted,
    Private,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
pub enum Urgency {
    Immediate,
    Expected,
    Future,
    Past,
    Unknown,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
pub enum Severity {
    Extreme,
    Severe,
    Moderate,
    Minor,
    Unknown,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
pub enum Certainty {
    Observed,
    Likely,
    Possible,
    Unlikely,
    Unknown,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
pub enum Category {
    Geo,
    Met,
    Safety,
    Security,
    Rescue,
    Fire,
    Health,
    Env,
    Transport,
    Infra,
    #[serde(rename = "CBRNE")]
    Cbrne,
    Other,
}

/// An element whose text is one value of a closed list (quick-xml reads a list of enum
/// values through this).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
pub struct Text<T> {
    #[serde(rename = "$text")]
    pub value: T,
}

/// `<eventCode>`, `<parameter>`, `<geocode>`: a named value.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
pub struct NamedValue {
    #[serde(rename = "valueName")]
    pub value_name: String,
    pub value: String,
}

/// `<info>`.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
pub struct Info {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub language: Option<String>,
    pub category: Vec<Text<Category>>,
    pub event: String,
    #[serde(rename = "responseType", default, skip_serializing_if = "Vec::is_empty")]
    pub response_type: Vec<String>,
    pub urgency: Urgency,
    pub severity: Severity,
    pub certainty: Certainty,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub audience: Option<String>,
    #[serde(rename = "eventCode", default, skip_serializing_if = "Vec::is_empty")]
    pub event_code: Vec<NamedValue>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub effective: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub onset: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires: Option<String>,
    #[serde(rename = "senderName", default, skip_serializing_if = "Option::is_none")]
    pub sender_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub headline: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub instruction: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub web: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub contact: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub parameter: Vec<NamedValue>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub area: Vec<Area>,
}

/// `<area>`.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
pub struct Area {
    #[serde(rename = "areaDesc")]
    pub area_desc: String,
    /// `lat,lon` pairs separated by spaces, the first repeated last.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub polygon: Vec<String>,
    /// `lat,lon radius`, the radius in kilometres.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub circle: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub geocode: Vec<NamedValue>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub altitude: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ceiling: Option<f64>,
}

/// A reference to an earlier alert: who sent it, its identifier, when.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub struct Key {
    pub sender: String,
    pub identifier: String,
    pub sent: String,
}

impl std::fmt::Display for Key {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{},{},{}", self.sender, self.identifier, self.sent)
    }
}

impl Alert {
    /// Reads and checks one `<alert>` document.
    pub fn parse(text: &str) -> Result<Self, CapError> {
        if text.len() > MAX_DOCUMENT {
            return Err(CapError::TooLarge);
        }
        let alert: Self = quick_xml::de::from_str(text).map_err(|e| CapError::Xml(e.to_string()))?;
        alert.check()?;
        Ok(alert)
    }

    /// The document as XML, in the CAP 1.2 namespace.
    pub fn to_xml(&self) -> Result<String, CapError> {
        let mut alert = self.clone();
        alert.xmlns = Some(NAMESPACE.to_owned());
        let body = quick_xml::se::to_string(&alert).map_err(|e| CapError::Xml(e.to_string()))?;
        Ok(format!("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n{body}"))
    }

    /// What identifies it: sender, identifier and sent time.
    pub fn key(&self) -> Key {
        Key { sender: self.sender.clone(), identifier: self.identifier.clone(), sent: self.sent.clone() }
    }

    /// The alerts it references (`Update`, `Cancel`).
    pub fn referenced(&self) -> Result<Vec<Key>, CapError> {
        let Some(refs) = &self.references else { return Ok(Vec::new()) };
        refs.split_whitespace()
            .map(|r| {
                let mut parts = r.split(',');
                match (parts.next(), parts.next(), parts.next(), parts.next()) {
                    (Some(sender), Some(identifier), Some(sent), None) => {
                        Ok(Key { sender: sender.into(), identifier: identifier.into(), sent: sent.into() })
                    }
                    _ => Err(invalid("references", format!("`{r}` is not sender,identifier,sent"))),
                }
            })
            .collect()
    }

    /// The rules of CAP 1.2 section 3 that the schema does not check, as far as sirend uses
    /// the fields.
    fn check(&self) -> Result<(), CapError> {
        match self.xmlns.as_deref() {
            Some(NAMESPACE) => {}
            other => return Err(CapError::Namespace(other.unwrap_or("none").to_owned())),
        }
        for (field, value) in [("identifier", &self.identifier), ("sender", &self.sender)] {
            if value.is_empty() || value.contains([' ', ',', '<', '&']) {
                return Err(invalid(field, "must be non-empty without spaces, commas, < or &"));
            }
        }
        check_time("sent", &self.sent)?;
        if matches!(self.msg_type, MsgType::Update | MsgType::Cancel | MsgType::Ack | MsgType::Error)
            && self.referenced()?.is_empty()
        {
            return Err(invalid("references", format!("a {:?} must reference the alert it is about", self.msg_type)));
        }
        self.referenced()?;
        if self.scope == Scope::Restricted && self.restriction.is_none() {
            return Err(invalid("restriction", "a Restricted alert needs one"));
        }
        for (i, info) in self.info.iter().enumerate() {
            if info.category.is_empty() {
                return Err(invalid(format!("info[{i}].category"), "at least one is required"));
            }
            for (field, t) in [("effective", &info.effective), ("onset", &info.onset), ("expires", &info.expires)] {
                if let Some(t) = t {
                    check_time(&format!("info[{i}].{field}"), t)?;
                }
            }
            for (j, area) in info.area.iter().enumerate() {
                area.shapes(&format!("info[{i}].area[{j}]"))?;
            }
        }
        Ok(())
    }
}

/// A CAP date-time: `YYYY-MM-DDThh:mm:ss` and an offset (`Z` is not CAP 1.2).
fn check_time(field: &str, value: &str) -> Result<jiff::Timestamp, CapError> {
    if value.ends_with('Z') || value.ends_with('z') {
        return Err(invalid(field, format!("`{value}`: CAP 1.2 writes UTC as +00:00, not Z")));
    }
    value
        .parse::<jiff::Timestamp>()
        .map_err(|e| invalid(field, format!("`{value}` is not a date and time with its offset: {e}")))
}

impl Area {
    /// Its polygons and circles as a target [`crate::area::Area`], each checked.
    pub fn shapes(&self, field: &str) -> Result<crate::area::Area, CapError> {
        let mut area = crate::area::Area::default();
        for (k, polygon) in self.polygon.iter().enumerate() {
            let at = format!("{field}.polygon[{k}]");
            let ring: Vec<Vec<f64>> = polygon
                .split_whitespace()
                .map(|pair| {
                    let (lat, lon) =
                        pair.split_once(',').ok_or_else(|| invalid(&at, format!("`{pair}` is not lat,lon")))?;
                    let lat: f64 = lat.parse().map_err(|_| invalid(&at, format!("`{pair}`: bad latitude")))?;
                    let lon: f64 = lon.parse().map_err(|_| invalid(&at, format!("`{pair}`: bad longitude")))?;
                    Ok(vec![lon, lat])
                })
                .collect::<Result<_, CapError>>()?;
            area.add_polygon(&[ring]).map_err(|e| invalid(&at, e.to_string()))?;
        }
        for (k, circle) in self.circle.iter().enumerate() {
            let at = format!("{field}.circle[{k}]");
            let bad = || invalid(&at, format!("`{circle}` is not `lat,lon radius_km`"));
            let (centre, radius) = circle.trim().split_once(' ').ok_or_else(bad)?;
            let (lat, lon) = centre.split_once(',').ok_or_else(bad)?;
            let c = crate::area::Circle {
                latitude: lat.parse().map_err(|_| bad())?,
                longitude: lon.parse().map_err(|_| bad())?,
                radius_m: radius.trim().parse::<f64>().map_err(|_| bad())? * 1000.0,
            };
            area.add_circle(c).map_err(|e| invalid(&at, e.to_string()))?;
        }
        Ok(area)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"<?xml version="1.0" encoding="UTF-8"?>
<alert xmlns="urn:oasis:names:tc:emergency:cap:1.2">
  <identifier>TY-2026-17</identifier>
  <sender>typhoon@hz.example</sender>
  <sent>2026-09-17T08:00:00+08:00</sent>
  <status>Actual</status>
  <msgType>Alert</msgType>
  <scope>Public</scope>
  <info>
    <language>zh-CN</language>
    <category>Met</category>
    <category>Safety</category>
    <event>台风</event>
    <urgency>Immediate</urgency>
    <severity>Extreme</severity>
    <certainty>Observed</certainty>
    <eventCode><valueName>CN</valueName><value>TY-RED</value></eventCode>
    <headline>台风红色预警</headline>
    <area>
      <areaDesc>西湖区</areaDesc>
      <polygon>30.2,120.0 30.3,120.0 30.3,120.2 30.2,120.0</polygon>
      <circle>30.25,120.1 2.5</circle>
      <geocode><valueName>GB2260</valueName><value>330106</value></geocode>
    </area>
  </info>
</alert>"#;

    #[test]
    fn an_alert_is_read_with_its_shapes_and_written_back_the_same() {
        let a = Alert::parse(GOOD).unwrap();
        assert_eq!((a.status, a.msg_type), (Status::Actual, MsgType::Alert));
        let info = &a.info[0];
        assert_eq!(info.category.iter().map(|c| c.value).collect::<Vec<_>>(), [Category::Met, Category::Safety]);
        assert_eq!(info.event, "台风");
        let shapes = info.area[0].shapes("area").unwrap();
        assert!(shapes.contains(30.25, 120.05), "inside the polygon");
        assert!(shapes.contains(30.26, 120.19) || shapes.contains(30.25, 120.12), "inside the circle");
        assert!(!shapes.contains(30.5, 120.5));
        let again = Alert::parse(&a.to_xml().unwrap()).unwrap();
        assert_eq!(again, a);
    }

    #[test]
    fn what_is_not_a_cap_1_2_alert_is_refused_with_the_reason() {
        let cases = [
            (GOOD.replace("cap:1.2", "cap:1.1"), "namespace"),
            (GOOD.replace("<status>Actual</status>", "<status>Real</status>"), "unknown variant `Real`"),
            (GOOD.replace("+08:00</sent>", "Z</sent>"), "sent"),
            (GOOD.replace("<msgType>Alert</msgType>", "<msgType>Update</msgType>"), "references"),
            (GOOD.replace(" 30.2,120.0</polygon>", "</polygon>"), "at least 4"),
            (GOOD.replace(" 30.2,120.0</polygon>", " 30.21,120.0</polygon>"), "not closed"),
            (GOOD.replace("30.25,120.1 2.5", "30.25 120.1"), "circle"),
            (GOOD.replace("<identifier>TY-2026-17</identifier>", "<identifier>TY 17</identifier>"), "identifier"),
            (GOOD.replace("<sender>typhoon@hz.example</sender>", ""), "sender"),
            ("<alert>".to_owned(), "not a CAP 1.2 alert"),
            ("x".repeat(MAX_DOCUMENT + 1), "larger than"),
        ];
        for (text, expected) in cases {
            let e = Alert::parse(&text).unwrap_err().to_string();
            assert!(e.contains(expected), "expected `{expected}` in: {e}");
        }
    }
}
