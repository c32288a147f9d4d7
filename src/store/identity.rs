//! The node's identity key file: created once, then read on every start, so the peer id is stable.

use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use super::error::{ensure_dir, StoreError};

/// The key file inside the data dir (libp2p protobuf encoding of the keypair).
pub const IDENTITY_FILE: &str = "identity.key";
/// A protobuf-encoded ed25519 keypair is 68 bytes; anything far larger is not ours.
const MAX_IDENTITY_BYTES: u64 = 4096;

/// Returns the stored key bytes, or creates them with `create`, writes them durably (0600, written to
/// a temporary file, fsynced, then renamed) and returns them.
pub fn load_or_create_identity(dir: &Path, create: impl FnOnce() -> Vec<u8>) -> Result<Vec<u8>, StoreError> {
    ensure_dir(dir)?;
    let path = dir.join(IDENTITY_FILE);
    let err = |reason: String| StoreError::Identity { path: path.clone(), reason };
    match File::open(&path) {
        Ok(f) => {
            let mut bytes = Vec::new();
            f.take(MAX_IDENTITY_BYTES).read_to_end(&mut bytes).map_err(|e| err(e.to_string()))?;
            if bytes.is_empty() {
                return Err(err("file is empty".into()));
            }
            Ok(bytes)
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let bytes = create();
            let tmp = dir.join(format!("{IDENTITY_FILE}.tmp"));
            let mut f = OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .mode(0o600)
                .open(&tmp)
                .map_err(|e| err(e.to_string()))?;
            f.write_all(&bytes).and_then(|_| f.sync_all()).map_err(|e| err(e.to_string()))?;
            std::fs::rename(&tmp, &path).map_err(|e| err(e.to_string()))?;
            File::open(dir).and_then(|d| d.sync_all()).map_err(|e| err(e.to_string()))?;
            Ok(bytes)
        }
        Err(e) => Err(err(e.to_string())),
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    #[test]
    fn created_once_then_read_back_private() {
        let dir = tempfile::tempdir().unwrap();
        let first = load_or_create_identity(dir.path(), || vec![7; 68]).unwrap();
        let again = load_or_create_identity(dir.path(), || panic!("must not create twice")).unwrap();
        assert_eq!(first, again);
        let mode = std::fs::metadata(dir.path().join(IDENTITY_FILE)).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }
}
