//! The peer record: what the table says about one peer, and the limits every record obeys.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// A key longer than this is refused: keys are peer ids or IP addresses, both far shorter.
pub const MAX_KEY_BYTES: usize = 255;
/// Any one string field longer than this is refused, so a record stays small on disk and on the wire.
pub const MAX_STRING_BYTES: usize = 1024;
/// At most this many multiaddrs in `addrs`: a node announces a handful.
pub const MAX_ADDRS: usize = 16;
/// At most this many named ports in `ports`: the original used three.
pub const MAX_PORTS: usize = 16;

/// What is known about one peer. Timestamps are microseconds since the Unix epoch (UTC).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PeerRecord {
    pub name: String,
    pub ip: String,
    /// The original's single port, kept as the string the client sent.
    pub port: String,
    /// The libp2p peer id, when the peer has one (later revision, and nodes' own records).
    pub peer_id: Option<String>,
    /// Named service ports of the later revision, e.g. `userSync -> 3003`.
    pub ports: BTreeMap<String, u16>,
    /// Multiaddrs a node publishes for itself.
    pub addrs: Vec<String>,
    pub created_at: i64,
    pub updated_at: i64,
    pub last_connection_on: i64,
}

/// The fields a client may set on a record; `None` leaves a field as it was (update) or empty (add).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PeerFields {
    pub name: Option<String>,
    pub ip: Option<String>,
    pub port: Option<String>,
    pub peer_id: Option<String>,
    pub ports: Option<BTreeMap<String, u16>>,
    pub addrs: Option<Vec<String>>,
}

impl PeerRecord {
    /// A new record from client fields, all three timestamps set to `now_us`.
    pub fn create(f: PeerFields, now_us: i64) -> PeerRecord {
        PeerRecord {
            name: f.name.unwrap_or_default(),
            ip: f.ip.unwrap_or_default(),
            port: f.port.unwrap_or_default(),
            peer_id: f.peer_id,
            ports: f.ports.unwrap_or_default(),
            addrs: f.addrs.unwrap_or_default(),
            created_at: now_us,
            updated_at: now_us,
            last_connection_on: now_us,
        }
    }

    /// This record with the given fields changed: `createdAt` is kept (the original reset it),
    /// `updatedAt` and `lastConnectionOn` become `now_us`.
    pub fn updated(&self, f: PeerFields, now_us: i64) -> PeerRecord {
        PeerRecord {
            name: f.name.unwrap_or_else(|| self.name.clone()),
            ip: f.ip.unwrap_or_else(|| self.ip.clone()),
            port: f.port.unwrap_or_else(|| self.port.clone()),
            peer_id: f.peer_id.or_else(|| self.peer_id.clone()),
            ports: f.ports.unwrap_or_else(|| self.ports.clone()),
            addrs: f.addrs.unwrap_or_else(|| self.addrs.clone()),
            created_at: self.created_at,
            updated_at: now_us,
            last_connection_on: now_us,
        }
    }
}

/// A record or key broke one of the limits above.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RecordError {
    #[error("key is empty")]
    EmptyKey,
    #[error("key is {0} bytes, more than {MAX_KEY_BYTES}")]
    KeyTooLong(usize),
    #[error("field `{0}` is longer than {MAX_STRING_BYTES} bytes")]
    StringTooLong(&'static str),
    #[error("field `{0}` has too many entries")]
    TooMany(&'static str),
}

/// Checks a key against the table's limits.
pub fn validate_key(key: &str) -> Result<(), RecordError> {
    if key.is_empty() {
        return Err(RecordError::EmptyKey);
    }
    if key.len() > MAX_KEY_BYTES {
        return Err(RecordError::KeyTooLong(key.len()));
    }
    Ok(())
}

fn check_len(field: &'static str, s: &str) -> Result<(), RecordError> {
    if s.len() > MAX_STRING_BYTES {
        Err(RecordError::StringTooLong(field))
    } else {
        Ok(())
    }
}

impl PeerRecord {
    /// Checks every field against the limits; used on local writes and on every remote entry.
    pub fn validate(&self) -> Result<(), RecordError> {
        check_len("name", &self.name)?;
        check_len("ip", &self.ip)?;
        check_len("port", &self.port)?;
        if let Some(id) = &self.peer_id {
            check_len("peer_id", id)?;
        }
        if self.ports.len() > MAX_PORTS {
            return Err(RecordError::TooMany("ports"));
        }
        for name in self.ports.keys() {
            check_len("ports", name)?;
        }
        if self.addrs.len() > MAX_ADDRS {
            return Err(RecordError::TooMany("addrs"));
        }
        for a in &self.addrs {
            check_len("addrs", a)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn update_keeps_created_at_and_unset_fields() {
        let r = PeerRecord::create(
            PeerFields {
                name: Some("A".into()),
                ip: Some("1.1.1.1".into()),
                port: Some("1".into()),
                ..Default::default()
            },
            100,
        );
        let u = r.updated(PeerFields { port: Some("2".into()), ..Default::default() }, 200);
        assert_eq!((u.name.as_str(), u.ip.as_str(), u.port.as_str()), ("A", "1.1.1.1", "2"));
        assert_eq!((u.created_at, u.updated_at, u.last_connection_on), (100, 200, 200));
    }

    #[test]
    fn limits_are_enforced() {
        assert_eq!(validate_key(""), Err(RecordError::EmptyKey));
        assert!(validate_key(&"k".repeat(255)).is_ok());
        assert_eq!(validate_key(&"k".repeat(256)), Err(RecordError::KeyTooLong(256)));
        let mut r = PeerRecord {
            name: "n".repeat(1024),
            ip: "1.2.3.4".into(),
            port: "1".into(),
            peer_id: None,
            ports: BTreeMap::new(),
            addrs: vec![],
            created_at: 0,
            updated_at: 0,
            last_connection_on: 0,
        };
        assert!(r.validate().is_ok());
        r.name.push('n');
        assert_eq!(r.validate(), Err(RecordError::StringTooLong("name")));
    }
}
