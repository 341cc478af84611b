//! A schedule's signal sequence: catalogue patterns with pauses between them, turned into the
//! protocol's segments (patterns with start offsets).

use serde::{Deserialize, Serialize};
use siren_proto::message::{MAX_SEGMENTS, Segment};
use siren_proto::pattern::{Tone, catalogue};

/// What a sounding is for, which decides what a device must do to pass.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    /// An audible test: sirens sound and must be heard.
    Test,
    /// A full self-test without sound (amplifiers into their test load).
    Silent,
    /// A short audible time signal.
    Chime,
    /// A real warning (LIVE message types on the wire): only ever from an approved activation
    /// (`/api/activations`), never from a schedule or an ad-hoc test.
    Live,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Test => "test",
            Kind::Silent => "silent",
            Kind::Chime => "chime",
            Kind::Live => "live",
        }
    }

    /// Whether the sequence is meant to be heard.
    pub fn audible(self) -> bool {
        !matches!(self, Kind::Silent)
    }
}

/// One entry of a sequence as configured.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize, utoipa::ToSchema)]
#[serde(untagged, deny_unknown_fields)]
pub enum Step {
    /// A catalogue pattern by name (docs/protocol.md §6).
    Pattern { pattern: String },
    /// Silence between two patterns.
    Pause { pause_s: f64 },
}

/// Why a sequence cannot be played.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SequenceError {
    #[error("is empty: name at least one pattern")]
    Empty,
    #[error("entry {0}: no pattern named `{1}` (known: {known})", known = catalogue::NAMES.join(", "))]
    UnknownPattern(usize, String),
    #[error("entry {0}: a pause must be between 0 and 3600 s")]
    BadPause(usize),
    #[error("has {0} patterns; a device plays at most {MAX_SEGMENTS}")]
    TooMany(usize),
    #[error("a {kind} sounding must {what}")]
    WrongKind { kind: &'static str, what: &'static str },
}

/// Builds the protocol segments of `steps`, checked against what `kind` promises: a silent test
/// makes no sound, an audible one does.
pub fn segments(kind: Kind, steps: &[Step]) -> Result<Vec<Segment>, SequenceError> {
    let mut offset_ms: u64 = 0;
    let mut out = Vec::new();
    for (i, step) in steps.iter().enumerate() {
        match step {
            Step::Pattern { pattern } => {
                let p = catalogue::by_name(pattern).ok_or_else(|| SequenceError::UnknownPattern(i, pattern.clone()))?;
                let duration = p.duration_ms();
                out.push(Segment { offset_ms: u32::try_from(offset_ms).unwrap_or(u32::MAX), pattern: p });
                offset_ms += duration;
            }
            Step::Pause { pause_s } => {
                if !(pause_s.is_finite() && (0.0..=3600.0).contains(pause_s)) {
                    return Err(SequenceError::BadPause(i));
                }
                #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss, reason = "checked range")]
                let ms = (pause_s * 1000.0).round() as u64;
                offset_ms += ms;
            }
        }
    }
    if out.is_empty() {
        return Err(SequenceError::Empty);
    }
    if out.len() > MAX_SEGMENTS {
        return Err(SequenceError::TooMany(out.len()));
    }
    let audible = out.iter().any(|s| s.pattern.audible_ms() > 0);
    let exercises = out.iter().any(|s| s.pattern.steps.iter().any(|st| st.tone == Tone::SelfTest));
    match kind {
        Kind::Silent if audible => {
            Err(SequenceError::WrongKind { kind: "silent", what: "use only silent patterns (silent-test)" })
        }
        Kind::Silent if !exercises => {
            Err(SequenceError::WrongKind { kind: "silent", what: "exercise the amplifiers (silent-test)" })
        }
        Kind::Test | Kind::Chime | Kind::Live if !audible => {
            Err(SequenceError::WrongKind { kind: kind.as_str(), what: "contain an audible pattern" })
        }
        _ => Ok(out),
    }
}

/// How long the whole sequence lasts, ms: the latest segment end.
pub fn duration_ms(segments: &[Segment]) -> u64 {
    segments.iter().map(|s| u64::from(s.offset_ms) + s.pattern.duration_ms()).max().unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pattern(name: &str) -> Step {
        Step::Pattern { pattern: name.to_owned() }
    }

    #[test]
    fn offsets_follow_patterns_and_pauses() {
        let steps = [pattern("pre-warning"), Step::Pause { pause_s: 60.0 }, pattern("air-raid")];
        let s = segments(Kind::Test, &steps).unwrap();
        assert_eq!(s.iter().map(|s| s.offset_ms).collect::<Vec<_>>(), [0, 240_000]);
        assert_eq!(duration_ms(&s), 420_000);
    }

    #[test]
    fn kinds_are_checked() {
        assert!(matches!(segments(Kind::Silent, &[pattern("chime")]), Err(SequenceError::WrongKind { .. })));
        assert!(matches!(segments(Kind::Test, &[pattern("silent-test")]), Err(SequenceError::WrongKind { .. })));
        assert!(segments(Kind::Silent, &[pattern("silent-test")]).is_ok());
        assert_eq!(segments(Kind::Test, &[]), Err(SequenceError::Empty));
        assert!(matches!(segments(Kind::Test, &[pattern("siren-song")]), Err(SequenceError::UnknownPattern(0, _))));
        assert_eq!(segments(Kind::Test, &[Step::Pause { pause_s: -1.0 }]), Err(SequenceError::BadPause(0)));
        let nine = vec![pattern("chime"); 9];
        assert_eq!(segments(Kind::Chime, &nine), Err(SequenceError::TooMany(9)));
    }
}
