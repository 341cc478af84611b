//! Who may change state through the API: bearer tokens, stored as SHA-256 hashes, each with a
//! role. Every write, accepted or refused, is audited (docs/operations.md).

use serde::Deserialize;
use sha2::{Digest as _, Sha256};
use subtle::ConstantTimeEq as _;

use crate::config::Token;

/// What a token may do; each role may do everything the ones before it may.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Reads only (reads need no token; a viewer token identifies the reader in logs).
    Viewer,
    /// Acknowledges faults, schedules and cancels test soundings.
    Operator,
    /// Everything, including configuration changes.
    Admin,
}

impl Role {
    pub const fn as_str(self) -> &'static str {
        match self {
            Role::Viewer => "viewer",
            Role::Operator => "operator",
            Role::Admin => "admin",
        }
    }
}

/// Who presented a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Caller {
    /// A valid token.
    Known { name: String, role: Role },
    /// No `Authorization: Bearer` header.
    Anonymous,
    /// A token that matches none.
    Unknown,
}

impl Caller {
    /// The name the audit log records.
    pub fn name(&self) -> &str {
        match self {
            Caller::Known { name, .. } => name,
            Caller::Anonymous => "anonymous",
            Caller::Unknown => "invalid-token",
        }
    }
}

/// The configured tokens.
#[derive(Debug, Clone, Default)]
pub struct Tokens {
    tokens: Vec<(String, Role, [u8; 32])>,
}

impl Tokens {
    pub fn new(config: &[Token]) -> Self {
        let tokens = config
            .iter()
            .filter_map(|t| {
                let mut hash = [0u8; 32];
                hex::decode_to_slice(&t.sha256, &mut hash).ok()?;
                Some((t.name.clone(), t.role, hash))
            })
            .collect();
        Self { tokens }
    }

    /// Identifies the caller from an `Authorization` header value.
    pub fn identify(&self, authorization: Option<&str>) -> Caller {
        let Some(token) = authorization.and_then(|h| h.strip_prefix("Bearer ")).map(str::trim) else {
            return Caller::Anonymous;
        };
        let presented: [u8; 32] = Sha256::digest(token.as_bytes()).into();
        // Compare against every token in constant time, so timing says nothing about which.
        let mut found = None;
        for (name, role, hash) in &self.tokens {
            if bool::from(hash.ct_eq(&presented)) {
                found = Some(Caller::Known { name: name.clone(), role: *role });
            }
        }
        found.unwrap_or(Caller::Unknown)
    }
}

/// A new random token and its configuration entry.
pub fn new_token(name: &str, role: Role) -> (String, String) {
    let mut secret = [0u8; 32];
    rand::fill(&mut secret);
    let token = hex::encode(secret);
    let hash = hex::encode(Sha256::digest(token.as_bytes()));
    let entry = format!("[[http.tokens]]\nname = \"{name}\"\nrole = \"{}\"\nsha256 = \"{hash}\"\n", role.as_str());
    (token, entry)
}
