//! Frame authentication: HMAC-SHA-256 truncated to 16 bytes under a 32-byte per-device key.

use core::fmt;

use hmac::{Hmac, Mac as _};
use sha2::Sha256;
use subtle::ConstantTimeEq;

/// Bytes of MAC carried by every frame.
pub const MAC_LEN: usize = 16;
/// Bytes in a key.
pub const KEY_LEN: usize = 32;

/// A device (or bus group) key, with the HMAC key schedule computed once so that signing and
/// verifying a frame costs only the message's compression rounds.
#[derive(Clone)]
pub struct Key {
    bytes: [u8; KEY_LEN],
    prepared: Hmac<Sha256>,
}

impl Key {
    /// Builds a key from its 32 raw bytes.
    pub fn new(bytes: [u8; KEY_LEN]) -> Self {
        // HMAC accepts keys of any length, so this cannot fail for 32 bytes.
        let prepared = <Hmac<Sha256> as hmac::digest::KeyInit>::new_from_slice(&bytes)
            .unwrap_or_else(|_| unreachable!("HMAC takes keys of any length"));
        Self { bytes, prepared }
    }

    /// Parses a key written as 64 hexadecimal digits.
    pub fn from_hex(text: &str) -> Option<Self> {
        let mut bytes = [0u8; KEY_LEN];
        hex::decode_to_slice(text.trim(), &mut bytes).ok()?;
        Some(Self::new(bytes))
    }

    /// The raw key bytes, for writing a key file.
    pub fn as_bytes(&self) -> &[u8; KEY_LEN] {
        &self.bytes
    }

    /// The truncated MAC of `data`.
    pub fn sign(&self, data: &[u8]) -> [u8; MAC_LEN] {
        let mut mac = self.prepared.clone();
        mac.update(data);
        let full = mac.finalize().into_bytes();
        let mut out = [0u8; MAC_LEN];
        out.copy_from_slice(&full[..MAC_LEN]);
        out
    }

    /// The device's password for an MQTT broker that authenticates devices by their keys
    /// (docs/protocol.md §9): the MAC of the ASCII text [`MQTT_PASSWORD_LABEL`], in lowercase
    /// hex (32 characters). A broker that holds the key file checks it without a second
    /// secret per device to configure.
    pub fn mqtt_password(&self) -> String {
        self.sign(MQTT_PASSWORD_LABEL).iter().fold(String::with_capacity(2 * MAC_LEN), |mut s, b| {
            use fmt::Write as _;
            let _ = write!(s, "{b:02x}");
            s
        })
    }

    /// Whether `tag` is the MAC of `data`, compared in constant time.
    pub fn verify(&self, data: &[u8], tag: &[u8]) -> bool {
        tag.len() == MAC_LEN && bool::from(self.sign(data).ct_eq(tag))
    }
}

/// What a device's MQTT password is the MAC of.
pub const MQTT_PASSWORD_LABEL: &[u8] = b"sirennet mqtt password v1";

impl fmt::Debug for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never print key material: logs end up in tickets.
        f.write_str("Key(<redacted>)")
    }
}

impl PartialEq for Key {
    fn eq(&self, other: &Self) -> bool {
        bool::from(self.bytes.ct_eq(&other.bytes))
    }
}

impl Eq for Key {}
