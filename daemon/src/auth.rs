//! Who may do what through the API: bearer tokens, stored as SHA-256 hashes, each with
//! permissions (a role's, or listed) and, for an office of a lower tier, the zones it acts in.
//! Every write, accepted or refused, is audited (docs/operations.md).

use serde::Deserialize;
use sha2::{Digest as _, Sha256};
use subtle::ConstantTimeEq as _;

use crate::config::Token;

/// What a token may do; each role may do everything the ones before it may.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Reads only: the API where reads need a token (`[http] read_needs_token`).
    Viewer,
    /// Acknowledges faults, puts sirens into maintenance, schedules and cancels test soundings.
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

/// One thing a token may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Permission {
    /// Read the API (when reads need a token).
    Read,
    /// Acknowledge a siren's faults.
    Acknowledge,
    /// Put sirens into maintenance and take them out.
    Maintenance,
    /// Schedule an ad-hoc test sounding.
    ScheduleTest,
    /// Cancel a planned test sounding.
    CancelTest,
    /// Stop every siren in a scope at once (`POST /api/stop`): never needs a second person.
    Stop,
    /// Request a LIVE warning (and mark one a false alarm).
    RequestLive,
    /// Approve or reject another person's LIVE request.
    ApproveLive,
    /// Submit CAP alerts (`POST /api/cap`): a warning platform's token. No role has it
    /// unless listed, but an administrator.
    SubmitCap,
    /// Resynchronise counters, read the audit log.
    Admin,
}

impl Permission {
    pub const fn as_str(self) -> &'static str {
        match self {
            Permission::Read => "read",
            Permission::Acknowledge => "acknowledge",
            Permission::Maintenance => "maintenance",
            Permission::ScheduleTest => "schedule_test",
            Permission::CancelTest => "cancel_test",
            Permission::Stop => "stop",
            Permission::RequestLive => "request_live",
            Permission::ApproveLive => "approve_live",
            Permission::SubmitCap => "submit_cap",
            Permission::Admin => "admin",
        }
    }
}

impl Role {
    /// What a token of this role may do when its configuration lists no `permissions`.
    pub fn permissions(self) -> &'static [Permission] {
        match self {
            Role::Viewer => &[Permission::Read],
            Role::Operator => &[
                Permission::Read,
                Permission::Acknowledge,
                Permission::Maintenance,
                Permission::ScheduleTest,
                Permission::CancelTest,
                Permission::Stop,
                Permission::RequestLive,
                Permission::ApproveLive,
            ],
            Role::Admin => &[
                Permission::Read,
                Permission::Acknowledge,
                Permission::Maintenance,
                Permission::ScheduleTest,
                Permission::CancelTest,
                Permission::Stop,
                Permission::RequestLive,
                Permission::ApproveLive,
                Permission::SubmitCap,
                Permission::Admin,
            ],
        }
    }
}

/// What a valid token grants.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Grant {
    pub name: String,
    pub permissions: Vec<Permission>,
    /// The zones it acts in (each with the zones inside it); empty: every zone.
    pub zones: Vec<String>,
}

impl Grant {
    pub fn may(&self, permission: Permission) -> bool {
        self.permissions.contains(&permission)
    }

    /// Whether `zone` is one it acts in.
    pub fn covers(&self, zone: &str) -> bool {
        self.zones.is_empty() || self.zones.iter().any(|z| crate::coverage::within(zone, z))
    }

    /// Whether it acts in every zone.
    pub fn everywhere(&self) -> bool {
        self.zones.is_empty()
    }
}

/// Who presented a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Caller {
    /// A valid token.
    Known(Grant),
    /// No `Authorization: Bearer` header.
    Anonymous,
    /// A token that matches none.
    Unknown,
}

impl Caller {
    /// The name the audit log records.
    pub fn name(&self) -> &str {
        match self {
            Caller::Known(grant) => &grant.name,
            Caller::Anonymous => "anonymous",
            Caller::Unknown => "invalid-token",
        }
    }
}

/// The configured tokens.
#[derive(Debug, Clone, Default)]
pub struct Tokens {
    tokens: Vec<(Grant, [u8; 32])>,
}

impl Tokens {
    pub fn new(config: &[Token]) -> Self {
        let tokens = config
            .iter()
            .filter_map(|t| {
                let mut hash = [0u8; 32];
                hex::decode_to_slice(&t.sha256, &mut hash).ok()?;
                let permissions = t.permissions.clone().unwrap_or_else(|| t.role.permissions().to_vec());
                Some((Grant { name: t.name.clone(), permissions, zones: t.zones.clone() }, hash))
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
        for (grant, hash) in &self.tokens {
            if bool::from(hash.ct_eq(&presented)) {
                found = Some(Caller::Known(grant.clone()));
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
