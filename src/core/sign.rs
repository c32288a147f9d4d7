//! Signed entries: every entry carries an ed25519 signature by its writer (the key in its stamp)
//! over a canonical encoding of (network id, key, value or tombstone, stamp), and a key that is a
//! libp2p peer id may only be written by that peer.

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;

use aws_lc_rs::signature::{Ed25519KeyPair, KeyPair as _};
use ed25519_dalek::VerifyingKey;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::clock::{NodeId, Stamp};
use super::record::PeerRecord;

/// Domain separation: a signature over an entry can never be mistaken for one over anything else.
const ENTRY_DOMAIN: &[u8] = b"udht entry v1\0";
/// A libp2p peer id of an ed25519 key, before base58: identity multihash (0x00, 36 bytes) of the
/// protobuf public key (type Ed25519 = 1, 32 bytes of key).
const PEER_ID_PREFIX: [u8; 6] = [0x00, 0x24, 0x08, 0x01, 0x12, 0x20];

/// An ed25519 signature. Ordered only to break ties between two values one writer signed under
/// one stamp (see the table's merge).
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Signature(pub [u8; 64]);

impl fmt::Debug for Signature {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "sig:")?;
        self.0[..6].iter().try_for_each(|b| write!(f, "{b:02x}"))
    }
}

impl Serialize for Signature {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        serde_bytes::Bytes::new(&self.0).serialize(s)
    }
}

impl<'de> Deserialize<'de> for Signature {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let bytes = serde_bytes::ByteBuf::deserialize(d)?;
        let array: [u8; 64] = bytes
            .as_slice()
            .try_into()
            .map_err(|_| serde::de::Error::invalid_length(bytes.len(), &"64 bytes"))?;
        Ok(Signature(array))
    }
}

/// The canonical bytes a writer signs. Length-prefixed fields, the record in postcard (its field
/// order is fixed and `ports` is ordered), the stamp in its fixed-size form.
pub fn entry_message(network_id: &str, key: &str, record: Option<&PeerRecord>, stamp: &Stamp) -> Vec<u8> {
    let mut out = Vec::with_capacity(ENTRY_DOMAIN.len() + network_id.len() + key.len() + 256);
    out.extend_from_slice(ENTRY_DOMAIN);
    for field in [network_id.as_bytes(), key.as_bytes()] {
        out.extend_from_slice(&(field.len() as u32).to_be_bytes());
        out.extend_from_slice(field);
    }
    match record {
        None => out.push(0),
        Some(r) => {
            out.push(1);
            // Written in place, its length filled in after: no second buffer to grow and copy
            // (this runs for every write, every merge and every digest update).
            let at = out.len();
            out.extend_from_slice(&[0; 4]);
            out = postcard::to_extend(r, out).expect("a record always serializes");
            let len = (out.len() - at - 4) as u32;
            out[at..at + 4].copy_from_slice(&len.to_be_bytes());
        }
    }
    out.extend_from_slice(&stamp.to_bytes());
    out
}

/// A node's signing key.
///
/// Signing runs on the node task for every local write, so it is done by AWS-LC (already linked
/// for QUIC's TLS): 11–17 µs a signature on the benchmark machine against 24–33 µs for
/// `ed25519-dalek` (BENCHMARKS.md). Ed25519 signatures are deterministic (RFC 8032), so the bytes
/// are the same (a test below checks it); verification stays with `ed25519-dalek` (strict checks,
/// batches).
#[derive(Clone)]
pub struct Signer {
    key: Arc<Ed25519KeyPair>,
    node: NodeId,
}

impl fmt::Debug for Signer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Signer({:?})", self.node)
    }
}

impl Signer {
    /// From the 32-byte ed25519 secret (libp2p's keypair holds the same).
    pub fn from_secret(secret: [u8; 32]) -> Self {
        // Refuses only a seed that is not 32 bytes long, which the type rules out.
        let key = Ed25519KeyPair::from_seed_unchecked(&secret).expect("any 32 bytes are an ed25519 seed");
        let node = NodeId(key.public_key().as_ref().try_into().expect("an ed25519 public key is 32 bytes"));
        Signer { key: Arc::new(key), node }
    }

    /// The writer id: the public key.
    pub fn node(&self) -> NodeId {
        self.node
    }

    pub fn sign(&self, message: &[u8]) -> Signature {
        let sig = self.key.sign(message);
        Signature(sig.as_ref().try_into().expect("an ed25519 signature is 64 bytes"))
    }
}

/// Whether `sig` is `node`'s signature over `message`.
pub fn verify(node: &NodeId, message: &[u8], sig: &Signature) -> bool {
    let Ok(key) = VerifyingKey::from_bytes(&node.0) else { return false };
    key.verify_strict(message, &ed25519_dalek::Signature::from_bytes(&sig.0)).is_ok()
}

/// Batches smaller than this are verified on the calling thread.
const PARALLEL_BATCH: usize = 512;

/// Verifies many signatures at once; the result says which are valid. Large batches (an
/// anti-entropy chunk, a join) are split over the machine's cores; each part is verified as a
/// batch (about twice as fast as one by one), and a part that fails is checked one by one.
pub fn verify_all(items: &[(NodeId, Vec<u8>, Signature)]) -> Vec<bool> {
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get()).min(8);
    if items.len() < PARALLEL_BATCH || threads < 2 {
        return verify_batch(items);
    }
    let part = items.len().div_ceil(threads);
    std::thread::scope(|scope| {
        let parts: Vec<_> = items.chunks(part).map(|c| scope.spawn(move || verify_batch(c))).collect();
        parts.into_iter().flat_map(|p| p.join().expect("signature verification does not panic")).collect()
    })
}

fn verify_batch(items: &[(NodeId, Vec<u8>, Signature)]) -> Vec<bool> {
    // Decompressing a public key costs about a third of a verification, and a batch usually
    // holds many entries of few writers: each writer's key is decompressed once.
    let mut decoded: HashMap<NodeId, Option<VerifyingKey>> = HashMap::new();
    let keys: Option<Vec<VerifyingKey>> = items
        .iter()
        .map(|(n, _, _)| *decoded.entry(*n).or_insert_with(|| VerifyingKey::from_bytes(&n.0).ok()))
        .collect();
    if let Some(keys) = keys {
        let messages: Vec<&[u8]> = items.iter().map(|(_, m, _)| m.as_slice()).collect();
        let sigs: Vec<ed25519_dalek::Signature> =
            items.iter().map(|(_, _, s)| ed25519_dalek::Signature::from_bytes(&s.0)).collect();
        if ed25519_dalek::verify_batch(&messages, &sigs, &keys).is_ok() {
            return vec![true; items.len()];
        }
    }
    items.iter().map(|(n, m, s)| verify(n, m, s)).collect()
}

/// The writer a key belongs to, if the key is a libp2p peer id of an ed25519 key: such a key (a
/// node's own record) may only be written by that node.
pub fn owner_of_key(key: &str) -> Option<NodeId> {
    // A base58 ed25519 peer id is 52 characters ("12D3KooW..."); skip the decode for other keys.
    if key.len() != 52 || !key.starts_with("12D3KooW") {
        return None;
    }
    let bytes = bs58::decode(key).into_vec().ok()?;
    let rest = bytes.strip_prefix(&PEER_ID_PREFIX[..])?;
    Some(NodeId(rest.try_into().ok()?))
}

/// The peer id (text) of a writer: the key under which its own record lives.
pub fn peer_id_of(node: &NodeId) -> String {
    let mut bytes = PEER_ID_PREFIX.to_vec();
    bytes.extend_from_slice(&node.0);
    bs58::encode(bytes).into_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signatures_are_ed25519_dalek_s_and_verify() {
        use ed25519_dalek::{Signer as _, SigningKey};
        for seed in 0..32u8 {
            let secret = [seed.wrapping_mul(37).wrapping_add(1); 32];
            let signer = Signer::from_secret(secret);
            let dalek = SigningKey::from_bytes(&secret);
            assert_eq!(signer.node().0, dalek.verifying_key().to_bytes());
            for len in [0usize, 1, 63, 64, 200, 1000] {
                let message: Vec<u8> = (0..len).map(|i| (i as u8) ^ seed).collect();
                let sig = signer.sign(&message);
                assert_eq!(sig.0, dalek.sign(&message).to_bytes(), "seed {seed}, {len} bytes");
                assert!(verify(&signer.node(), &message, &sig));
            }
        }
    }

    #[test]
    fn peer_ids_round_trip_and_other_keys_have_no_owner() {
        let s = Signer::from_secret([7; 32]);
        let id = peer_id_of(&s.node());
        assert!(id.starts_with("12D3KooW") && id.len() == 52, "{id}");
        assert_eq!(owner_of_key(&id), Some(s.node()));
        assert_eq!(owner_of_key("10.0.0.1"), None);
        assert_eq!(owner_of_key("12D3KooWnotbase58lllllllllllllllllllllllllllllllllll"), None);
    }
}
