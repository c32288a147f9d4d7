//! The journal: where a commit's writes become durable. A fixed-size file of checksummed frames
//! appended in order, one `fdatasync` per group, later folded into the keyed table.
//!
//! Why not redb's own log table: a redb commit rewrites about six scattered pages (the log's
//! leaf, the system tables, the free lists, the header), and an `fdatasync` costs more the more
//! pages it flushes (measured here: 1 page ~0.2 ms, 4 pages ~0.4 ms, 8 pages ~0.7 ms). A group
//! of writes in the journal is one or two contiguous pages. The file is written in full when
//! created, so an append never allocates: its `fdatasync` flushes data, not file-system metadata,
//! and on a full disk the journal still takes writes until it must be folded.
//!
//! Which frames count: each frame's checksum covers the journal's *generation* and the frame's
//! offset. The generation is kept in the table file (`format::JOURNAL_GENERATION`) and bumped by
//! the same redb transaction that folds the journal in, so a fold retires every frame at once
//! without touching this file; frames of an earlier generation, of another table, or at another
//! offset never validate. Replay stops at the first frame that does not validate (a torn tail),
//! unless a valid frame follows it, which makes it damage, reported and skipped.

use std::fs::{File, OpenOptions};
use std::io::{self, Read};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use super::error::StoreError;

/// The journal's file, beside the table.
pub const JOURNAL_FILE: &str = "table.journal";
/// Its size: a fold is due at three quarters, about 2,500 writes of a typical record (~300
/// bytes a frame). Small, because a fold must find room in the table file for all of it (on a
/// full disk, the room freed must be enough to fold it before writes are taken again); large
/// enough that folds (one redb transaction each) stay rare.
pub(super) const JOURNAL_BYTES: u64 = 1 << 20;
/// A frame's head: the payload's length (u32) and the checksum (u64), little-endian.
const HEAD: usize = 12;
/// Zeros written per call while creating the file.
const FILL_CHUNK: usize = 64 * 1024;

/// The open journal, owned by the store's writer thread.
pub(super) struct Journal {
    file: File,
    path: PathBuf,
    /// The generation recorded in the table; `None` until the first fold records one, and no
    /// frame fits before that (it would not be replayed).
    generation: Option<u64>,
    /// Where the next frame goes: the end of the valid frames.
    end: u64,
    /// The file's length; less than [`JOURNAL_BYTES`] only if the disk was full when it was made.
    capacity: u64,
}

/// What [`Journal::open`] read back.
#[derive(Debug, Default)]
pub(super) struct Replayed {
    /// The payloads of the valid frames, in the order they were appended, with their offsets.
    pub frames: Vec<(u64, Vec<u8>)>,
    /// Offsets of frames that were damaged (a valid frame follows them): skipped.
    pub damaged: Vec<u64>,
}

impl Journal {
    /// Opens the journal in `dir` (creating it if missing), replays the frames of `generation`
    /// (none if `None`: the table has no journal yet), and extends the file to its full size with
    /// zeros if it is short. A failed extension (a full disk) is not an error: the journal is
    /// then as large as it is, and groups that do not fit go straight into the table.
    pub fn open(dir: &Path, generation: Option<u64>) -> io::Result<(Journal, Replayed)> {
        let path = dir.join(JOURNAL_FILE);
        let mut file = OpenOptions::new().read(true).write(true).create(true).truncate(false).open(&path)?;
        let mut bytes = Vec::new();
        file.read_to_end(&mut bytes)?;
        let (replayed, end) = match generation {
            Some(g) => replay(&bytes, g),
            None => (Replayed::default(), 0),
        };
        let mut journal = Journal { file, path, generation, end, capacity: bytes.len() as u64 };
        if let Err(e) = journal.grow() {
            tracing::warn!(path = %journal.path.display(), error = %e, size = journal.capacity,
                "could not extend the journal to its full size (is the disk full?); commits that do not fit go straight into the table");
        }
        Ok((journal, replayed))
    }

    /// Extends the file to [`JOURNAL_BYTES`] with zeros and makes that durable (with the
    /// directory entry). Only the zeros past the current length are written.
    pub fn grow(&mut self) -> io::Result<()> {
        if self.capacity >= JOURNAL_BYTES {
            return Ok(());
        }
        let zeros = vec![0u8; FILL_CHUNK];
        let mut at = self.capacity;
        let result = (|| {
            while at < JOURNAL_BYTES {
                let n = (JOURNAL_BYTES - at).min(FILL_CHUNK as u64) as usize;
                self.file.write_all_at(&zeros[..n], at)?;
                at += n as u64;
            }
            self.file.sync_all()?;
            if let Some(dir) = self.path.parent() {
                File::open(dir)?.sync_all()?;
            }
            Ok(())
        })();
        if result.is_ok() {
            self.capacity = JOURNAL_BYTES;
        }
        result
    }

    /// Appends `frames` (built by [`Journal::frames`]) and waits until they are on disk.
    pub fn append(&mut self, frames: &[u8]) -> io::Result<()> {
        debug_assert!(self.fits(frames.len()));
        self.file.write_all_at(frames, self.end)?;
        self.file.sync_data()?;
        self.end += frames.len() as u64;
        Ok(())
    }

    /// The frames of `payloads` as they would be appended now.
    pub fn frames<'a>(&self, payloads: impl IntoIterator<Item = &'a [u8]>) -> Vec<u8> {
        let mut out = Vec::new();
        for p in payloads {
            let at = self.end + out.len() as u64;
            out.extend_from_slice(&(p.len() as u32).to_le_bytes());
            // Never appended while there is no generation (`fits` says no): any value does.
            out.extend_from_slice(&checksum(self.generation.unwrap_or(0), at, p).to_le_bytes());
            out.extend_from_slice(p);
        }
        out
    }

    /// Whether `bytes` of frames fit after the ones appended so far (never before the table
    /// recorded a generation).
    pub fn fits(&self, bytes: usize) -> bool {
        self.generation.is_some() && self.end + bytes as u64 <= self.capacity
    }

    /// The generation whose frames count, as recorded in the table.
    pub fn generation(&self) -> Option<u64> {
        self.generation
    }

    /// Bytes of frames since the last fold.
    pub fn used(&self) -> u64 {
        self.end
    }

    pub fn capacity(&self) -> u64 {
        self.capacity
    }

    /// `e`, naming this journal.
    pub fn error(&self, e: io::Error) -> StoreError {
        StoreError::Journal { path: self.path.clone(), source: e }
    }

    /// After a fold committed `generation` to the table: every frame so far is retired, and the
    /// next one goes to the start of the file.
    pub fn restart(&mut self, generation: u64) {
        self.generation = Some(generation);
        self.end = 0;
    }
}

/// The checksum of a frame: over the generation, the frame's offset, and its payload.
fn checksum(generation: u64, at: u64, payload: &[u8]) -> u64 {
    let mut h = xxhash_rust::xxh3::Xxh3::new();
    h.update(&generation.to_le_bytes());
    h.update(&at.to_le_bytes());
    h.update(&(payload.len() as u64).to_le_bytes());
    h.update(payload);
    h.digest()
}

/// The frame at `at`, if it is whole and valid: its payload and where the next one starts.
fn frame_at(bytes: &[u8], generation: u64, at: usize) -> Option<(&[u8], usize)> {
    let (len, sum) = head_at(bytes, at)?;
    let payload = bytes.get(at + HEAD..at + HEAD + len)?;
    (sum == checksum(generation, at as u64, payload)).then_some((payload, at + HEAD + len))
}

fn head_at(bytes: &[u8], at: usize) -> Option<(usize, u64)> {
    let head = bytes.get(at..at + HEAD)?;
    let len = u32::from_le_bytes(head[..4].try_into().expect("4 bytes")) as usize;
    let sum = u64::from_le_bytes(head[4..].try_into().expect("8 bytes"));
    Some((len, sum))
}

/// The valid frames of `generation` from the start, and where the next frame goes.
fn replay(bytes: &[u8], generation: u64) -> (Replayed, u64) {
    let mut out = Replayed::default();
    let mut at = 0;
    loop {
        if let Some((payload, next)) = frame_at(bytes, generation, at) {
            out.frames.push((at as u64, payload.to_vec()));
            at = next;
            continue;
        }
        // Not valid: the torn end of the last append, unless a valid frame follows it (its
        // length was intact but its bytes changed on disk): then skip it and go on.
        let next = match head_at(bytes, at) {
            Some((len, _)) => at + HEAD + len,
            None => break,
        };
        if frame_at(bytes, generation, next).is_none() {
            break;
        }
        out.damaged.push(at as u64);
        at = next;
    }
    (out, at as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn open(dir: &Path, generation: u64) -> (Journal, Vec<Vec<u8>>, Vec<u64>) {
        let (j, r) = Journal::open(dir, Some(generation)).unwrap();
        (j, r.frames.into_iter().map(|(_, p)| p).collect(), r.damaged)
    }

    fn append(j: &mut Journal, payloads: &[&[u8]]) {
        let frames = j.frames(payloads.iter().copied());
        j.append(&frames).unwrap();
    }

    #[test]
    fn frames_come_back_in_order_and_appends_go_on_after_them() {
        let dir = tempfile::tempdir().unwrap();
        let (mut j, frames, _) = open(dir.path(), 7);
        assert!(frames.is_empty());
        assert_eq!(j.capacity(), JOURNAL_BYTES, "created at full size");
        append(&mut j, &[b"one", b"two"]);
        append(&mut j, &[b"three"]);
        drop(j);
        let (mut j, frames, damaged) = open(dir.path(), 7);
        assert_eq!(frames, vec![b"one".to_vec(), b"two".to_vec(), b"three".to_vec()]);
        assert!(damaged.is_empty());
        append(&mut j, &[b"four"]);
        drop(j);
        assert_eq!(open(dir.path(), 7).1.len(), 4);
    }

    #[test]
    fn another_generation_sees_nothing_and_a_restart_retires_every_frame() {
        let dir = tempfile::tempdir().unwrap();
        let (mut j, _, _) = open(dir.path(), 7);
        append(&mut j, &[b"old-1", b"old-2", b"old-3"]);
        assert!(open(dir.path(), 8).1.is_empty(), "frames of generation 7 are not 8's");
        j.restart(8);
        append(&mut j, &[b"new"]);
        drop(j);
        // The new frame overwrote the start; the old ones after it do not count (other generation).
        assert_eq!(open(dir.path(), 8).1, vec![b"new".to_vec()]);
        assert!(open(dir.path(), 7).1.is_empty(), "the start no longer validates as generation 7");
    }

    #[test]
    fn a_torn_last_frame_is_ignored_and_overwritten() {
        let dir = tempfile::tempdir().unwrap();
        let (mut j, _, _) = open(dir.path(), 1);
        append(&mut j, &[b"kept", b"torn-frame"]);
        let torn_at = HEAD as u64 + 4 + HEAD as u64 + 3;
        j.file.write_all_at(&[0, 0, 0], torn_at).unwrap();
        drop(j);
        let (mut j, frames, damaged) = open(dir.path(), 1);
        assert_eq!((frames, damaged), (vec![b"kept".to_vec()], vec![]));
        append(&mut j, &[b"next"]);
        drop(j);
        assert_eq!(open(dir.path(), 1).1, vec![b"kept".to_vec(), b"next".to_vec()]);
    }

    #[test]
    fn a_damaged_frame_between_valid_ones_is_reported_and_skipped() {
        let dir = tempfile::tempdir().unwrap();
        let (mut j, _, _) = open(dir.path(), 1);
        append(&mut j, &[b"first", b"second", b"third"]);
        let second = (HEAD + 5) as u64;
        j.file.write_all_at(b"X", second + HEAD as u64).unwrap();
        drop(j);
        let (_, frames, damaged) = open(dir.path(), 1);
        assert_eq!(frames, vec![b"first".to_vec(), b"third".to_vec()]);
        assert_eq!(damaged, vec![second]);
    }

    #[test]
    fn a_short_file_is_used_as_it_is_and_grown_later() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(JOURNAL_FILE), []).unwrap();
        let (mut j, _, _) = open(dir.path(), 1);
        assert_eq!(j.capacity(), JOURNAL_BYTES, "grown at open");
        j.capacity = 20;
        assert!(j.fits(20) && !j.fits(21));
        j.grow().unwrap();
        assert!(j.fits(JOURNAL_BYTES as usize));
    }
}
