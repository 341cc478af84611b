//! Signal patterns: steps of tone or silence, repeated; and the built-in catalogue.

use crate::error::{DecodeError, EncodeError};
use crate::wire::{Reader, Writer};

/// Declares a `u8`-coded wire enum with checked conversion from the wire.
macro_rules! wire_enum {
    ($(#[$meta:meta])* $name:ident { $($(#[$vmeta:meta])* $variant:ident = $code:literal),+ $(,)? }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        #[repr(u8)]
        pub enum $name { $($(#[$vmeta])* $variant = $code),+ }

        impl $name {
            /// Every value, in code order.
            pub const ALL: &'static [$name] = &[$($name::$variant),+];

            /// The value for a wire code, if defined.
            pub const fn from_u8(code: u8) -> Option<Self> {
                match code { $($code => Some($name::$variant),)+ _ => None }
            }

            #[allow(dead_code, reason = "not every wire enum is read as a field")]
            pub(crate) fn read(r: &mut crate::wire::Reader<'_>) -> Result<Self, crate::error::DecodeError> {
                Self::from_u8(r.u8()?).ok_or(crate::error::DecodeError::Range(stringify!($name)))
            }
        }
    };
}
pub(crate) use wire_enum;

wire_enum! {
    /// What the siren emits during a step.
    Tone {
        /// Silence.
        Off = 0,
        /// A constant pitch.
        Steady = 1,
        /// A rising and falling pitch.
        Wail = 2,
        /// A bell-like chime (time signals).
        Chime = 3,
        /// No audible sound: amplifiers and drivers exercised into the test load and measured.
        SelfTest = 4,
    }
}

/// One step of a pattern.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Step {
    pub tone: Tone,
    pub duration_ms: u32,
}

/// Most steps a pattern may have.
pub const MAX_STEPS: usize = 16;

/// A signal: `steps` played in order, the whole sequence `repeats` times.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pattern {
    pub repeats: u16,
    pub steps: Vec<Step>,
}

impl Pattern {
    /// Total duration in milliseconds.
    pub fn duration_ms(&self) -> u64 {
        let one: u64 = self.steps.iter().map(|s| u64::from(s.duration_ms)).sum();
        one * u64::from(self.repeats)
    }

    /// Milliseconds during which the pattern is audible.
    pub fn audible_ms(&self) -> u64 {
        let one: u64 = self
            .steps
            .iter()
            .filter(|s| !matches!(s.tone, Tone::Off | Tone::SelfTest))
            .map(|s| u64::from(s.duration_ms))
            .sum();
        one * u64::from(self.repeats)
    }

    /// The tone playing `elapsed_ms` after the start, or `None` once the pattern has ended.
    pub fn tone_at(&self, elapsed_ms: u64) -> Option<Tone> {
        let cycle: u64 = self.steps.iter().map(|s| u64::from(s.duration_ms)).sum();
        if cycle == 0 || elapsed_ms >= self.duration_ms() {
            return None;
        }
        let mut t = elapsed_ms % cycle;
        for step in &self.steps {
            let d = u64::from(step.duration_ms);
            if t < d {
                return Some(step.tone);
            }
            t -= d;
        }
        None
    }

    pub(crate) fn encode(&self, w: &mut Writer<'_>) -> Result<(), EncodeError> {
        let count = u8::try_from(self.steps.len())
            .ok()
            .filter(|&n| usize::from(n) <= MAX_STEPS)
            .ok_or(EncodeError::TooMany("pattern steps"))?;
        w.u16(self.repeats);
        w.u8(count);
        for step in &self.steps {
            w.u8(step.tone as u8);
            w.u32(step.duration_ms);
        }
        Ok(())
    }

    pub(crate) fn decode(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        let repeats = r.u16()?;
        if repeats == 0 {
            return Err(DecodeError::Range("pattern repeats"));
        }
        let count = usize::from(r.u8()?);
        if count == 0 || count > MAX_STEPS {
            return Err(DecodeError::Range("pattern step count"));
        }
        let mut steps = Vec::with_capacity(count);
        for _ in 0..count {
            let tone = Tone::read(r)?;
            let duration_ms = r.u32()?;
            steps.push(Step { tone, duration_ms });
        }
        Ok(Self { repeats, steps })
    }
}

/// The built-in catalogue (docs/protocol.md §6). Names are what configuration files use.
pub mod catalogue {
    use super::{Pattern, Step, Tone};

    fn pattern(repeats: u16, steps: &[(Tone, u32)]) -> Pattern {
        Pattern { repeats, steps: steps.iter().map(|&(tone, duration_ms)| Step { tone, duration_ms }).collect() }
    }

    /// China civil-defence pre-warning (预先警报): 36 s on, 24 s off, three times (3 min).
    pub fn pre_warning() -> Pattern {
        pattern(3, &[(Tone::Steady, 36_000), (Tone::Off, 24_000)])
    }

    /// China civil-defence air raid (空袭警报): 6 s on, 6 s off, fifteen times (3 min).
    pub fn air_raid() -> Pattern {
        pattern(15, &[(Tone::Steady, 6_000), (Tone::Off, 6_000)])
    }

    /// China civil-defence all clear (解除警报): continuous for 3 min.
    pub fn all_clear() -> Pattern {
        pattern(1, &[(Tone::Steady, 180_000)])
    }

    /// Silent test: one minute of full self-test without sound.
    pub fn silent_test() -> Pattern {
        pattern(1, &[(Tone::SelfTest, 60_000)])
    }

    /// Short chime for time signals: two 1 s chimes 1 s apart.
    pub fn chime() -> Pattern {
        pattern(1, &[(Tone::Chime, 1_000), (Tone::Off, 1_000), (Tone::Chime, 1_000)])
    }

    /// Catalogue names, for configuration files and help text.
    pub const NAMES: [&str; 5] = ["pre-warning", "air-raid", "all-clear", "silent-test", "chime"];

    /// The catalogue pattern with this name.
    pub fn by_name(name: &str) -> Option<Pattern> {
        Some(match name {
            "pre-warning" => pre_warning(),
            "air-raid" => air_raid(),
            "all-clear" => all_clear(),
            "silent-test" => silent_test(),
            "chime" => chime(),
            _ => return None,
        })
    }
}
