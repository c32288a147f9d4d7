//! Framing for the manager socket: a stream of JSON values with no delimiter required, several per
//! read or one split over many. A small resumable scanner finds where each top-level value ends
//! (strings, escapes and nesting tracked byte by byte, so a trickled request costs O(n) in total);
//! the complete frame is then parsed by serde_json.

use std::io;
use std::time::Duration;

use bytes::{Buf, BytesMut};
use std::pin::Pin;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use tokio::time::{timeout, timeout_at, Instant, Sleep};

/// Bytes asked of the socket per read.
const READ_CHUNK: usize = 8 * 1024;
/// Replies queued for one connection are flushed once they reach this size.
const FLUSH_BYTES: usize = 64 * 1024;
/// A bare scalar (`42`) has no closing delimiter: once the client pauses this long, what arrived
/// is the whole of it (so `4` then `2` in two quick reads is one request, `42`).
const SCALAR_SETTLE: Duration = Duration::from_millis(50);
/// After refusing an oversized request, input is drained for this long (or this many bytes)
/// before closing, so the client reads the error instead of a connection reset.
const LINGER_TIME: Duration = Duration::from_secs(1);
const LINGER_BYTES: usize = 4 << 20;
/// "Not armed": a deadline later than any real one.
const FAR_FUTURE: Duration = Duration::from_secs(86_400);

/// Why no frame could be read.
#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    #[error("request larger than {0} bytes")]
    TooLarge(usize),
    #[error("connection idle for too long")]
    Idle,
    #[error("request not completed within {0:?}")]
    Slow(Duration),
    #[error(transparent)]
    Io(#[from] io::Error),
}

/// Where the scanner is inside the current top-level value.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Between values (only whitespace seen).
    #[default]
    Idle,
    /// Inside an object or array, `depth` brackets deep.
    Container { depth: u32, in_str: bool, escaped: bool },
    /// Inside a top-level string.
    Str { escaped: bool },
    /// A bare scalar (number, `true`, or garbage): ends at a delimiter or at the end of the data.
    Scalar,
}

#[derive(Debug, Default)]
struct Scanner {
    state: State,
    /// How far into the buffer has been scanned.
    pos: usize,
}

impl Scanner {
    /// Scans `buf` from where the last call stopped; returns the end of the first complete value.
    /// Inside a container it jumps from one byte that matters to the next (a quote, a backslash
    /// in a string, a bracket outside one) instead of stepping the state for every byte.
    fn scan(&mut self, buf: &[u8]) -> Option<usize> {
        while self.pos < buf.len() {
            if let State::Container { depth, in_str, escaped: false } = self.state {
                let rest = &buf[self.pos..];
                let found = if in_str {
                    rest.iter().position(|&b| b == b'"' || b == b'\\')
                } else {
                    rest.iter().position(|&b| matches!(b, b'"' | b'{' | b'[' | b'}' | b']'))
                };
                let Some(i) = found else {
                    self.pos = buf.len();
                    return None;
                };
                self.pos += i + 1;
                self.state = match rest[i] {
                    b'\\' => State::Container { depth, in_str: true, escaped: true },
                    b'"' => State::Container { depth, in_str: !in_str, escaped: false },
                    b'{' | b'[' => State::Container { depth: depth + 1, in_str: false, escaped: false },
                    _ if depth == 1 => return self.done(),
                    _ => State::Container { depth: depth - 1, in_str: false, escaped: false },
                };
                continue;
            }
            let b = buf[self.pos];
            self.pos += 1;
            self.state = match self.state {
                State::Idle => match b {
                    b'{' | b'[' => State::Container { depth: 1, in_str: false, escaped: false },
                    b'"' => State::Str { escaped: false },
                    _ => State::Scalar,
                },
                // Only an escaped byte is left to step over here.
                State::Container { depth, .. } => State::Container { depth, in_str: true, escaped: false },
                State::Str { escaped: true } => State::Str { escaped: false },
                State::Str { escaped: false } => match b {
                    b'\\' => State::Str { escaped: true },
                    b'"' => return self.done(),
                    _ => self.state,
                },
                State::Scalar => match b {
                    b' ' | b'\t' | b'\r' | b'\n' | b'{' | b'}' | b'[' | b']' | b'"' | b',' => {
                        self.pos -= 1;
                        return self.done();
                    }
                    _ => State::Scalar,
                },
            };
        }
        None
    }

    fn done(&mut self) -> Option<usize> {
        let end = self.pos;
        *self = Scanner::default();
        Some(end)
    }
}

/// One client connection: reads frames, queues replies, writes them in order.
pub struct Connection {
    stream: TcpStream,
    buf: BytesMut,
    out: Vec<u8>,
    scanner: Scanner,
    max_request: usize,
    /// When the request now being read was first found incomplete: just after the read that
    /// brought its first bytes (a request that arrives whole is never timed).
    request_started: Option<Instant>,
    /// The length of a frame found by [`Connection::has_buffered_frame`] at the front of `buf`,
    /// returned by the next read.
    pending: Option<usize>,
    /// The length of the frame last returned, still at the front of `buf` (frames are lent out of
    /// the read buffer, not copied), dropped from it before anything else is looked at.
    taken: usize,
    /// Fires at the idle or request deadline. Kept for the connection's life and re-armed only
    /// when it fires early or a deadline moves earlier, so a busy connection registers no timer
    /// per request.
    timer: Pin<Box<Sleep>>,
    /// Where `timer` is armed.
    timer_at: Instant,
}

impl Connection {
    pub fn new(stream: TcpStream, max_request: usize) -> Self {
        let _ = stream.set_nodelay(true);
        Connection {
            stream,
            buf: BytesMut::with_capacity(READ_CHUNK),
            out: Vec::with_capacity(1024),
            scanner: Scanner::default(),
            max_request,
            request_started: None,
            pending: None,
            taken: 0,
            timer: Box::pin(tokio::time::sleep_until(Instant::now() + FAR_FUTURE)),
            timer_at: Instant::now() + FAR_FUTURE,
        }
    }

    /// Drops the frame last returned from the buffer.
    fn release_taken(&mut self) {
        self.buf.advance(std::mem::take(&mut self.taken));
    }

    /// The length of a complete frame at the front of the buffer, if there is one (never reads
    /// the socket).
    fn buffered_frame(&mut self) -> Result<Option<usize>, FrameError> {
        if self.scanner.state == State::Idle {
            let ws = self.buf.iter().take_while(|b| b.is_ascii_whitespace()).count();
            self.buf.advance(ws);
            self.scanner.pos = 0;
            if self.buf.is_empty() {
                self.request_started = None;
                return Ok(None);
            }
        }
        match self.scanner.scan(&self.buf) {
            Some(end) if end > self.max_request => Err(FrameError::TooLarge(self.max_request)),
            Some(end) => {
                self.request_started = None;
                Ok(Some(end))
            }
            None if self.buf.len() > self.max_request => Err(FrameError::TooLarge(self.max_request)),
            None => {
                // Timed from the first scan that found it incomplete, right after the read that
                // brought its first bytes: a request that arrives whole costs no clock read.
                self.request_started.get_or_insert_with(Instant::now);
                Ok(None)
            }
        }
    }

    /// Whether another complete request is already buffered (then replies are not flushed yet).
    pub fn has_buffered_frame(&mut self) -> bool {
        if self.pending.is_none() {
            self.release_taken();
            // An error here shows up again on the next read, where it is handled.
            self.pending = self.buffered_frame().ok().flatten();
        }
        self.pending.is_some()
    }

    /// Reads the next request, lent out of the read buffer until the next call (no copy, no
    /// allocation per request). `Ok(None)` when the client closed the connection.
    /// Between requests the client may stay silent for `idle`; a started request must be complete
    /// within `request`, so a client trickling bytes cannot hold its slot for long.
    pub async fn read_frame(
        &mut self,
        idle: Duration,
        request: Duration,
    ) -> Result<Option<&[u8]>, FrameError> {
        if let Some(end) = self.pending.take() {
            return Ok(Some(self.lend(end)));
        }
        self.release_taken();
        loop {
            if let Some(end) = self.buffered_frame()? {
                return Ok(Some(self.lend(end)));
            }
            let scalar = self.scanner.state == State::Scalar;
            let (deadline, err) = match self.request_started {
                _ if scalar => (Instant::now() + SCALAR_SETTLE, FrameError::Idle),
                Some(t) => (t + request, FrameError::Slow(request)),
                None => (Instant::now() + idle, FrameError::Idle),
            };
            if deadline < self.timer_at {
                self.timer.as_mut().reset(deadline);
                self.timer_at = deadline;
            }
            self.buf.reserve(READ_CHUNK);
            let read = tokio::select! {
                biased;
                read = self.stream.read_buf(&mut self.buf) => read,
                _ = &mut self.timer => {
                    if Instant::now() < deadline {
                        // Armed for an earlier deadline that has since moved on: wait on.
                        self.timer.as_mut().reset(deadline);
                        self.timer_at = deadline;
                        continue;
                    }
                    self.timer_at = Instant::now() + FAR_FUTURE;
                    self.timer.as_mut().reset(self.timer_at);
                    if scalar {
                        return Ok(Some(self.take_scalar()));
                    }
                    return Err(err);
                }
            };
            match read {
                Ok(0) if scalar => return Ok(Some(self.take_scalar())),
                Ok(0) => return Ok(None),
                Ok(_) => {}
                Err(e) => return Err(e.into()),
            }
        }
    }

    /// The first `end` bytes of the buffer, as the frame returned.
    fn lend(&mut self, end: usize) -> &[u8] {
        self.taken = end;
        &self.buf[..end]
    }

    /// A bare scalar that the client has stopped sending: everything buffered is the frame.
    fn take_scalar(&mut self) -> &[u8] {
        self.scanner = Scanner::default();
        self.request_started = None;
        self.lend(self.buf.len())
    }

    /// Closes politely after a refused request: stop writing, drain what the client still sends
    /// (bounded in time and bytes), so our error reply is read rather than lost to a reset.
    pub async fn linger_close(mut self) {
        let _ = self.stream.shutdown().await;
        let mut drained = 0;
        let deadline = Instant::now() + LINGER_TIME;
        while drained < LINGER_BYTES {
            self.buf.clear();
            self.buf.reserve(READ_CHUNK);
            match timeout_at(deadline, self.stream.read_buf(&mut self.buf)).await {
                Ok(Ok(n)) if n > 0 => drained += n,
                _ => return,
            }
        }
    }

    /// Queues a reply; flushes if the queue has grown large.
    pub async fn queue(&mut self, reply: &[u8], write_timeout: Duration) -> io::Result<()> {
        self.out.extend_from_slice(reply);
        if self.out.len() >= FLUSH_BYTES {
            self.flush(write_timeout).await?;
        }
        Ok(())
    }

    /// Writes queued replies; a client that does not read them within `write_timeout` is dropped.
    pub async fn flush(&mut self, write_timeout: Duration) -> io::Result<()> {
        if self.out.is_empty() {
            return Ok(());
        }
        // Most replies fit the socket's buffer: written at once, without arming a timer.
        let mut written = 0;
        while written < self.out.len() {
            match self.stream.try_write(&self.out[written..]) {
                Ok(0) => break,
                Ok(n) => written += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) => {
                    self.out.clear();
                    return Err(e);
                }
            }
        }
        let result = if written == self.out.len() {
            Ok(Ok(()))
        } else {
            timeout(write_timeout, self.stream.write_all(&self.out[written..])).await
        };
        self.out.clear();
        if self.out.capacity() > FLUSH_BYTES {
            self.out.shrink_to(FLUSH_BYTES);
        }
        match result {
            Ok(r) => r,
            Err(_) => Err(io::Error::new(io::ErrorKind::TimedOut, "client did not read its replies")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frames(chunks: &[&str]) -> Vec<String> {
        let mut s = Scanner::default();
        let mut buf = Vec::new();
        let mut out = Vec::new();
        for c in chunks {
            buf.extend_from_slice(c.as_bytes());
            loop {
                if s.state == State::Idle {
                    let ws = buf.iter().take_while(|b| b.is_ascii_whitespace()).count();
                    buf.drain(..ws);
                    s.pos = 0;
                }
                match s.scan(&buf) {
                    Some(end) => out.push(String::from_utf8(buf.drain(..end).collect()).unwrap()),
                    None => break,
                }
            }
        }
        out
    }

    #[test]
    fn finds_values_in_one_read_split_reads_and_with_tricky_strings() {
        assert_eq!(frames(&[r#"{"a":1}{"b":2}"#]), vec![r#"{"a":1}"#, r#"{"b":2}"#]);
        assert_eq!(frames(&["{\"a\":", "1}\n{\"b\"", ":2}"]), vec![r#"{"a":1}"#, r#"{"b":2}"#]);
        assert_eq!(frames(&[r#"{"s":"}\"{"}"#]), vec![r#"{"s":"}\"{"}"#]);
        assert_eq!(frames(&[r#"{"s":"\\"}"#]), vec![r#"{"s":"\\"}"#]);
        assert_eq!(frames(&["[1,[2]] \"x\\\"\" 42 {}"]), vec!["[1,[2]]", "\"x\\\"\"", "42", "{}"]);
        assert_eq!(frames(&["{\"a\":{\"b\":", "[1,2", "]}}"]), vec![r#"{"a":{"b":[1,2]}}"#]);
        assert!(frames(&["{\"a\":1"]).is_empty());
        assert!(frames(&["42"]).is_empty(), "a scalar at the end of the data may go on");
    }

    /// Wherever a read boundary falls (inside a string, right after a backslash, between
    /// brackets), the same frames come out as from one read.
    #[test]
    fn every_split_of_the_input_gives_the_same_frames() {
        let input = r#"{"s":"}\"{","t":["]",{"u":"\\"}]} [1,[2]] "x\"" {"message_type": 7, "data": {"peer_ip": "1.2.3.4"}}"#;
        let whole = frames(&[input]);
        assert_eq!(whole.len(), 4, "{whole:?}");
        for i in 0..=input.len() {
            for j in i..=input.len() {
                let (a, b, c) = (&input[..i], &input[i..j], &input[j..]);
                assert_eq!(frames(&[a, b, c]), whole, "split at {i} and {j}");
            }
        }
    }
}
