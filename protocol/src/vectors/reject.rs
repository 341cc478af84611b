//! Frames a receiver must refuse, each with the reason it is counted under (docs/protocol.md
//! §7 and §3.1). Each is a valid vector of [`super::all`] with one thing wrong; where the
//! defect is inside the MAC'd bytes, the MAC is recomputed so that exactly that defect is
//! what the receiver finds.

use crate::error::RejectReason;
use crate::frame::{Address, Framing, HEADER_LEN, Seal};
use crate::mac::MAC_LEN;
use crate::message::Message;

use super::{DEVICE_ADDRESS, GROUP_KEY_ID, Vector, device_key};

/// Which side receives a rejection vector.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Receiver {
    /// The device at [`DEVICE_ADDRESS`] holding the device key under
    /// [`super::DEVICE_KEY_ID`] and the group key under [`GROUP_KEY_ID`], its windows fresh
    /// (H = 0).
    Outstation,
    /// A master that knows that device at that address under that key id, windows fresh.
    Master,
}

/// A frame (or envelope) to refuse.
#[derive(Debug, Clone)]
pub struct Rejection {
    pub name: &'static str,
    pub receiver: Receiver,
    /// The valid vector the receiver accepts just before, if any.
    pub after: Option<&'static str>,
    /// A serial envelope (then the line goes idle) rather than a bare frame.
    pub serial: bool,
    pub bytes: Vec<u8>,
    pub reason: RejectReason,
    pub why: &'static str,
}

fn sealed(v: &Vector, counter: u32, framing: Framing) -> Vec<u8> {
    let key = v.key();
    let seal = Seal { destination: v.destination, source: v.source, key_id: v.key_id, key: &key, counter };
    let mut out = Vec::new();
    // The vectors are valid messages: they always encode.
    let _ = seal.encode(&v.message, framing, &mut out);
    out
}

/// Recomputes the MAC of a bare frame after its bytes were changed.
fn resign(frame: &mut [u8], key: &crate::mac::Key) {
    let n = frame.len() - MAC_LEN;
    let mac = key.sign(&frame[..n]);
    frame[n..].copy_from_slice(&mac);
}

/// `frame` with `edit` applied inside its MAC'd bytes, and its MAC made again.
fn edited(frame: &[u8], key: &crate::mac::Key, edit: impl FnOnce(&mut [u8])) -> Vec<u8> {
    let mut out = frame.to_vec();
    edit(&mut out);
    resign(&mut out, key);
    out
}

/// Every rejection vector.
#[allow(clippy::too_many_lines, reason = "one entry per defect reads best as one list")]
pub fn rejections() -> Vec<Rejection> {
    let all = super::all();
    let find = |name: &str| all.iter().find(|v| v.name == name).cloned().unwrap_or_else(|| all[0].clone());
    let request = find("status-request");
    let frame = sealed(&request, 1, Framing::Datagram);
    let key = device_key();
    let reject = |name, receiver, bytes, reason, why| Rejection {
        name,
        receiver,
        after: None,
        serial: false,
        bytes,
        reason,
        why,
    };
    let mut out = Vec::new();

    let mut envelope = sealed(&request, 1, Framing::Serial);
    if let Some(last) = envelope.last_mut() {
        *last ^= 0xFF;
    }
    out.push(Rejection {
        serial: true,
        ..reject("bad-crc", Receiver::Outstation, envelope, RejectReason::BadCrc, "the envelope's CRC does not match")
    });
    let envelope = sealed(&request, 1, Framing::Serial);
    out.push(Rejection {
        serial: true,
        ..reject(
            "truncated-envelope",
            Receiver::Outstation,
            envelope[..envelope.len() - 2].to_vec(),
            RejectReason::Truncated,
            "the line goes idle before the envelope's CRC arrived",
        )
    });
    out.push(reject(
        "truncated-frame",
        Receiver::Outstation,
        frame[..frame.len() - 1].to_vec(),
        RejectReason::Truncated,
        "one byte shorter than 31 + length",
    ));
    let mut long = frame.clone();
    long.push(0);
    out.push(reject(
        "trailing-byte",
        Receiver::Outstation,
        long,
        RejectReason::Malformed,
        "one byte longer than 31 + length",
    ));
    let version = edited(&frame, &key, |f| f[0] = 2);
    out.push(reject("unknown-version", Receiver::Outstation, version, RejectReason::UnknownVersion, "version 2"));
    let mut oversize = frame.clone();
    oversize[13..15].copy_from_slice(&513u16.to_be_bytes());
    out.push(reject("oversize", Receiver::Outstation, oversize, RejectReason::Oversize, "length 513 > 512"));
    let flags = edited(&frame, &key, |f| f[1] = 0x01);
    out.push(reject(
        "flags-set",
        Receiver::Outstation,
        flags,
        RejectReason::Malformed,
        "flags 0x01 (reserved, must be 0)",
    ));
    let unknown_key = edited(&frame, &key, |f| f[6..8].copy_from_slice(&0x0103u16.to_be_bytes()));
    out.push(reject(
        "unknown-key-id",
        Receiver::Outstation,
        unknown_key,
        RejectReason::UnknownKeyId,
        "key id 0x0103, which the device does not hold",
    ));
    let mut bad_mac = frame.clone();
    if let Some(last) = bad_mac.last_mut() {
        *last ^= 0x01;
    }
    out.push(reject("bad-mac", Receiver::Outstation, bad_mac, RejectReason::BadMac, "the MAC's last bit flipped"));
    out.push(Rejection {
        after: Some("status-request"),
        ..reject(
            "replayed",
            Receiver::Outstation,
            frame.clone(),
            RejectReason::Replayed,
            "the status-request vector again, after it was accepted",
        )
    });
    out.push(reject(
        "counter-zero",
        Receiver::Outstation,
        sealed(&request, 0, Framing::Datagram),
        RejectReason::Replayed,
        "counter 0, never valid (§4.3)",
    ));
    let unknown_type = edited(&frame, &key, |f| f[12] = 0x7E);
    out.push(reject(
        "unknown-type",
        Receiver::Outstation,
        unknown_type,
        RejectReason::UnknownMessageType,
        "type 0x7E, authentic but undefined",
    ));
    let campaign_zero = edited(&sealed(&find("cancel"), 7, Framing::Datagram), &key, |f| {
        f[HEADER_LEN..HEADER_LEN + 4].copy_from_slice(&0u32.to_be_bytes());
    });
    out.push(reject(
        "campaign-zero",
        Receiver::Outstation,
        campaign_zero,
        RejectReason::Malformed,
        "a CANCEL of campaign 0, outside the field's range (§5)",
    ));
    let broadcast_poll = Vector {
        name: "broadcast-status-request",
        destination: Address::BROADCAST,
        source: Address::MASTER,
        key_id: GROUP_KEY_ID,
        counter: 1,
        message: Message::StatusRequest,
    };
    out.push(reject(
        "broadcast-status-request",
        Receiver::Outstation,
        sealed(&broadcast_poll, 1, Framing::Datagram),
        RejectReason::Malformed,
        "a STATUS_REQUEST to 0xFFFF under the group key: not a type that may be broadcast",
    ));
    let mut report = find("status-report");
    report.source = Address(DEVICE_ADDRESS.0 + 1);
    out.push(reject(
        "address-mismatch",
        Receiver::Master,
        sealed(&report, 1, Framing::Datagram),
        RejectReason::AddressMismatch,
        "a status report under the device's key id from source 0x0012",
    ));
    out
}
