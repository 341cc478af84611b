//! Why a frame was refused. Every reason is distinct so that receivers can count each one.

/// Why a receiver refused a frame. The set is closed and each variant is counted separately
/// by the daemon (`siren_frames_rejected_total{reason}`), so a rise in, say, `bad_mac` stands
/// out from line noise.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, thiserror::Error)]
pub enum RejectReason {
    /// Serial envelope whose CRC does not match (line noise, collision).
    #[error("bad CRC")]
    BadCrc,
    /// The frame's MAC does not verify under the key selected by its key id.
    #[error("bad MAC")]
    BadMac,
    /// The counter was already accepted or is older than the anti-replay window.
    #[error("replayed or stale counter")]
    Replayed,
    /// The key id names no key this receiver holds for that kind of frame.
    #[error("unknown key id")]
    UnknownKeyId,
    /// A protocol version this receiver does not implement.
    #[error("unknown protocol version")]
    UnknownVersion,
    /// The declared payload length exceeds the protocol maximum.
    #[error("oversize frame")]
    Oversize,
    /// The frame ends before its declared length (or the line went idle mid-frame).
    #[error("truncated frame")]
    Truncated,
    /// A well-formed, authentic frame whose payload does not parse, or whose reserved bits are
    /// set.
    #[error("malformed payload")]
    Malformed,
    /// An authentic frame whose message type this receiver does not know.
    #[error("unknown message type")]
    UnknownMessageType,
    /// An authentic frame whose source address is not the one bound to its key id.
    #[error("source address does not match key id")]
    AddressMismatch,
}

impl RejectReason {
    /// Every reason, in a stable order (for pre-registering metric labels).
    pub const ALL: [RejectReason; 10] = [
        RejectReason::BadCrc,
        RejectReason::BadMac,
        RejectReason::Replayed,
        RejectReason::UnknownKeyId,
        RejectReason::UnknownVersion,
        RejectReason::Oversize,
        RejectReason::Truncated,
        RejectReason::Malformed,
        RejectReason::UnknownMessageType,
        RejectReason::AddressMismatch,
    ];

    /// A stable `snake_case` label for metrics and logs.
    pub const fn as_str(self) -> &'static str {
        match self {
            RejectReason::BadCrc => "bad_crc",
            RejectReason::BadMac => "bad_mac",
            RejectReason::Replayed => "replayed",
            RejectReason::UnknownKeyId => "unknown_key_id",
            RejectReason::UnknownVersion => "unknown_version",
            RejectReason::Oversize => "oversize",
            RejectReason::Truncated => "truncated",
            RejectReason::Malformed => "malformed",
            RejectReason::UnknownMessageType => "unknown_message_type",
            RejectReason::AddressMismatch => "address_mismatch",
        }
    }
}

/// A payload that does not parse. Carries no detail on purpose: the payload came from outside
/// and is reported as [`RejectReason::Malformed`] or [`RejectReason::UnknownMessageType`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// The payload is shorter than its fields require.
    #[error("payload too short")]
    Short,
    /// Bytes left over after the last field.
    #[error("trailing bytes after payload")]
    Trailing,
    /// A field holds a value outside its defined range.
    #[error("field {0} out of range")]
    Range(&'static str),
    /// The message type is not defined.
    #[error("unknown message type {0:#04x}")]
    UnknownType(u8),
}

impl From<DecodeError> for RejectReason {
    fn from(e: DecodeError) -> Self {
        match e {
            DecodeError::UnknownType(_) => RejectReason::UnknownMessageType,
            _ => RejectReason::Malformed,
        }
    }
}

/// Why a frame could not be built for sending.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum EncodeError {
    /// The payload would exceed [`crate::frame::MAX_PAYLOAD`].
    #[error("payload of {0} bytes exceeds the maximum")]
    Oversize(usize),
    /// A list field holds more entries than the format allows.
    #[error("too many {0}")]
    TooMany(&'static str),
    /// A field holds a value outside the range docs/protocol.md gives it: the frame would be
    /// refused as malformed.
    #[error("field {0} out of range")]
    Range(&'static str),
    /// The sender's counter lease is used up: the application has not persisted a new one.
    #[error("counter lease exhausted for key id {0}")]
    CounterLeaseExhausted(u16),
    /// The counter space under this key is exhausted; the device must be re-keyed.
    #[error("counter space exhausted for key id {0}; re-key the device")]
    CounterExhausted(u16),
}
