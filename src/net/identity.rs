//! The node's libp2p identity: an ed25519 keypair, whose public key is also the CRDT writer id.

use libp2p::identity::Keypair;

use crate::core::sign::Signer;
use crate::core::NodeId;

use super::addr::NetError;

/// A fresh ed25519 keypair in libp2p's protobuf encoding (68 bytes), ready to be stored.
pub fn generate_identity() -> Vec<u8> {
    Keypair::generate_ed25519().to_protobuf_encoding().expect("ed25519 keys always encode")
}

/// Decodes a stored keypair; only ed25519 is accepted, since its public key is the writer id.
pub fn decode_identity(bytes: &[u8]) -> Result<Keypair, NetError> {
    let kp = Keypair::from_protobuf_encoding(bytes).map_err(|e| NetError::Identity(e.to_string()))?;
    node_id_of(&kp)?;
    Ok(kp)
}

/// The signer of this node's entries: the same ed25519 key as its libp2p identity, so its writer
/// id is its public key and its peer id names the record only it may write.
pub fn signer_of(kp: &Keypair) -> Result<Signer, NetError> {
    let ed = kp
        .clone()
        .try_into_ed25519()
        .map_err(|_| NetError::Identity("the identity key is not ed25519".into()))?;
    let secret: [u8; 32] =
        ed.secret().as_ref().try_into().map_err(|_| NetError::Identity("bad ed25519 secret".into()))?;
    Ok(Signer::from_secret(secret))
}

/// The CRDT writer id of a keypair: its 32-byte ed25519 public key.
pub fn node_id_of(kp: &Keypair) -> Result<NodeId, NetError> {
    let ed = kp
        .public()
        .try_into_ed25519()
        .map_err(|_| NetError::Identity("the identity key is not ed25519".into()))?;
    Ok(NodeId(ed.to_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_signer_is_the_libp2p_identity_and_its_peer_id_is_the_owned_key() {
        let kp = decode_identity(&generate_identity()).unwrap();
        let signer = signer_of(&kp).unwrap();
        assert_eq!(signer.node(), node_id_of(&kp).unwrap());
        let peer_id = kp.public().to_peer_id().to_string();
        assert_eq!(crate::core::sign::peer_id_of(&signer.node()), peer_id);
        assert_eq!(crate::core::sign::owner_of_key(&peer_id), Some(signer.node()));
    }

    #[test]
    fn a_stored_identity_decodes_to_the_same_key_and_fresh_ones_differ() {
        let bytes = generate_identity();
        assert_eq!(bytes.len(), 68);
        let a = decode_identity(&bytes).unwrap();
        assert_eq!(a.to_protobuf_encoding().unwrap(), bytes, "decoding keeps the whole key");
        assert_eq!(node_id_of(&a).unwrap().0, a.public().try_into_ed25519().unwrap().to_bytes());
        let other = decode_identity(&generate_identity()).unwrap();
        assert_ne!(a.public().to_peer_id(), other.public().to_peer_id());
        assert_ne!(node_id_of(&a).unwrap(), node_id_of(&other).unwrap());
        assert!(decode_identity(b"garbage").is_err());
    }
}
