//! The authenticated frame and the serial envelope around it (docs/protocol.md §2 and §3).
//!
//! ```text
//! frame    = version flags destination source key_id counter type length payload mac
//! envelope = SYNC frame crc16          (serial lines only; MQTT carries the bare frame)
//! ```

use crate::error::{EncodeError, RejectReason};
use crate::mac::{Key, MAC_LEN};
use crate::message::{Message, MessageType};

/// Two bytes that start every serial envelope.
pub const SYNC: [u8; 2] = [0xA5, 0xC3];
/// Bytes of the fixed header, identical in every protocol version.
pub const HEADER_LEN: usize = 15;
/// Largest payload a frame may carry.
pub const MAX_PAYLOAD: usize = 512;
/// Bytes of CRC at the end of a serial envelope.
pub const CRC_LEN: usize = 2;
/// Smallest frame: a header, no payload, a MAC.
pub const MIN_FRAME: usize = HEADER_LEN + MAC_LEN;
/// Largest frame.
pub const MAX_FRAME: usize = HEADER_LEN + MAX_PAYLOAD + MAC_LEN;
/// Bytes an envelope adds around a frame.
pub const ENVELOPE_OVERHEAD: usize = SYNC.len() + CRC_LEN;
/// Largest serial envelope.
pub const MAX_ENVELOPE: usize = MAX_FRAME + ENVELOPE_OVERHEAD;

/// CRC-16/IBM-SDLC (the X.25 CRC): poly 0x1021 reflected, init and xorout 0xFFFF.
pub(crate) const CRC16: crc::Crc<u16> = crc::Crc::<u16>::new(&crc::CRC_16_IBM_SDLC);

/// How frames travel on a link.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    /// Byte stream (RS-485, radio modem): frames wrapped in SYNC and CRC.
    Serial,
    /// Message transport that keeps boundaries and integrity (MQTT): the bare frame.
    Datagram,
}

/// A station address on a link.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Address(pub u16);

impl Address {
    /// The master (the daemon).
    pub const MASTER: Address = Address(0x0000);
    /// Every outstation on the link; broadcast frames get no reply.
    pub const BROADCAST: Address = Address(0xFFFF);

    /// Whether this is a valid outstation address (neither master nor broadcast).
    pub const fn is_outstation(self) -> bool {
        self.0 != Self::MASTER.0 && self.0 != Self::BROADCAST.0
    }
}

/// Selects the key that signs a frame: a device's own key or a bus group key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct KeyId(pub u16);

/// The fixed 15-byte header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    pub version: u8,
    pub flags: u8,
    pub destination: Address,
    pub source: Address,
    pub key_id: KeyId,
    pub counter: u32,
    pub message_type: u8,
    pub payload_len: u16,
}

impl Header {
    fn read(b: &[u8; HEADER_LEN]) -> Header {
        Header {
            version: b[0],
            flags: b[1],
            destination: Address(u16::from_be_bytes([b[2], b[3]])),
            source: Address(u16::from_be_bytes([b[4], b[5]])),
            key_id: KeyId(u16::from_be_bytes([b[6], b[7]])),
            counter: u32::from_be_bytes([b[8], b[9], b[10], b[11]]),
            message_type: b[12],
            payload_len: u16::from_be_bytes([b[13], b[14]]),
        }
    }

    /// Total frame length this header announces.
    pub fn frame_len(&self) -> usize {
        HEADER_LEN + usize::from(self.payload_len) + MAC_LEN
    }

    /// Whether the frame was sent by an outstation (message types 0x80 and above).
    pub fn from_outstation(&self) -> bool {
        self.message_type & 0x80 != 0
    }

    /// Reads the header at the start of `bytes`, checking only the length field, which is
    /// what a stream decoder needs to know how much to wait for.
    pub(crate) fn peek(bytes: &[u8]) -> Option<Result<Header, RejectReason>> {
        let head = bytes.first_chunk::<HEADER_LEN>()?;
        let header = Header::read(head);
        if usize::from(header.payload_len) > MAX_PAYLOAD {
            return Some(Err(RejectReason::Oversize));
        }
        Some(Ok(header))
    }
}

/// A frame whose structure is valid but whose MAC has not been checked yet.
#[derive(Debug, Clone, Copy)]
pub struct FrameRef<'a> {
    pub header: Header,
    /// The bytes the MAC covers: header and payload.
    pub signed: &'a [u8],
    pub payload: &'a [u8],
    pub mac: &'a [u8],
}

impl<'a> FrameRef<'a> {
    /// Checks a bare frame's structure (the MQTT payload, or a frame out of an envelope).
    pub fn parse(frame: &'a [u8]) -> Result<Self, RejectReason> {
        let head = frame.first_chunk::<HEADER_LEN>().ok_or(RejectReason::Truncated)?;
        let header = Header::read(head);
        if header.version != crate::VERSION {
            return Err(RejectReason::UnknownVersion);
        }
        if usize::from(header.payload_len) > MAX_PAYLOAD {
            return Err(RejectReason::Oversize);
        }
        let len = header.frame_len();
        if frame.len() < len {
            return Err(RejectReason::Truncated);
        }
        if frame.len() > len || header.flags != 0 {
            return Err(RejectReason::Malformed);
        }
        let (signed, mac) = frame.split_at(len - MAC_LEN);
        Ok(Self { header, signed, payload: &signed[HEADER_LEN..], mac })
    }

    /// Whether the MAC verifies under `key`.
    pub fn verify(&self, key: &Key) -> bool {
        key.verify(self.signed, self.mac)
    }
}

/// An authentic frame with its decoded message. Replay has not been checked: that needs
/// receiver state, which the sessions hold.
#[derive(Debug, Clone, PartialEq)]
pub struct VerifiedFrame {
    pub header: Header,
    pub message: Message,
}

/// Parses, authenticates and decodes a bare frame. Sessions use the pieces separately so
/// that they can check the counter between MAC and payload; this is for tools and tests.
pub fn open(frame: &[u8], key_for: impl FnOnce(KeyId) -> Option<Key>) -> Result<VerifiedFrame, RejectReason> {
    let parsed = FrameRef::parse(frame)?;
    let key = key_for(parsed.header.key_id).ok_or(RejectReason::UnknownKeyId)?;
    if !parsed.verify(&key) {
        return Err(RejectReason::BadMac);
    }
    let message = Message::decode(parsed.header.message_type, parsed.payload)?;
    Ok(VerifiedFrame { header: parsed.header, message })
}

/// Everything needed to seal a message into a frame.
#[derive(Debug, Clone, Copy)]
pub struct Seal<'k> {
    pub destination: Address,
    pub source: Address,
    pub key_id: KeyId,
    pub key: &'k Key,
    pub counter: u32,
}

impl Seal<'_> {
    /// Appends the frame (with the serial envelope when `framing` is serial) to `out`.
    pub fn encode(&self, message: &Message, framing: Framing, out: &mut Vec<u8>) -> Result<(), EncodeError> {
        let before = out.len();
        let result = self.encode_inner(message, framing, out);
        if result.is_err() {
            out.truncate(before);
        }
        result
    }

    fn encode_inner(&self, message: &Message, framing: Framing, out: &mut Vec<u8>) -> Result<(), EncodeError> {
        if framing == Framing::Serial {
            out.extend_from_slice(&SYNC);
        }
        let start = out.len();
        out.push(crate::VERSION);
        out.push(0); // flags: reserved, zero
        out.extend_from_slice(&self.destination.0.to_be_bytes());
        out.extend_from_slice(&self.source.0.to_be_bytes());
        out.extend_from_slice(&self.key_id.0.to_be_bytes());
        out.extend_from_slice(&self.counter.to_be_bytes());
        out.push(message.message_type() as u8);
        out.extend_from_slice(&[0, 0]); // payload length, patched below
        message.encode_payload(out)?;
        let payload_len = out.len() - start - HEADER_LEN;
        if payload_len > MAX_PAYLOAD {
            return Err(EncodeError::Oversize(payload_len));
        }
        let len_bytes = u16::try_from(payload_len).map_err(|_| EncodeError::Oversize(payload_len))?;
        out[start + 13..start + HEADER_LEN].copy_from_slice(&len_bytes.to_be_bytes());
        let mac = self.key.sign(&out[start..]);
        out.extend_from_slice(&mac);
        if framing == Framing::Serial {
            let crc = CRC16.checksum(&out[start..]);
            out.extend_from_slice(&crc.to_be_bytes());
        }
        Ok(())
    }
}

/// The message type of a header, if it is one this implementation knows.
pub fn known_type(header: &Header) -> Option<MessageType> {
    MessageType::from_u8(header.message_type)
}
