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

/// Reads a small secret file the operator gave (e.g. a private network's key).
pub fn read_key_file(path: &Path) -> Result<String, StoreError> {
    let err = |reason: String| StoreError::Identity { path: path.to_owned(), reason };
    let mut text = String::new();
    File::open(path)
        .and_then(|f| f.take(MAX_IDENTITY_BYTES).read_to_string(&mut text))
        .map_err(|e| err(e.to_string()))?;
    Ok(text)
}

/// Writes a new secret file (mode 0600, fsynced); refuses to replace an existing one, so a key
/// in use is never overwritten by mistake.
pub fn create_key_file(path: &Path, contents: &[u8]) -> Result<(), StoreError> {
    let err = |reason: String| StoreError::Identity { path: path.to_owned(), reason };
    let mut f = OpenOptions::new().write(true).create_new(true).mode(0o600).open(path).map_err(|e| {
        if e.kind() == std::io::ErrorKind::AlreadyExists {
            err("already exists; not overwriting a key".into())
        } else {
            err(e.to_string())
        }
    })?;
    f.write_all(contents).and_then(|_| f.sync_all()).map_err(|e| err(e.to_string()))
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

    #[test]
    fn a_key_file_is_created_private_once_and_never_overwritten() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("swarm.key");
        create_key_file(&path, b"secret").unwrap();
        assert_eq!(read_key_file(&path).unwrap(), "secret");
        let again = create_key_file(&path, b"other").unwrap_err().to_string();
        assert!(again.contains("already exists") && again.contains("swarm.key"), "{again}");
        assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
    }
}
