//! A client of the manager socket, as the original services use it: send one JSON object, read the
//! reply. Used by `udht-node ctl`, the examples, the benchmark and the tests.

use std::net::SocketAddr;
use std::time::Duration;

use serde_json::Value;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

/// Largest reply the client accepts (a JSON table of several hundred thousand records fits).
pub const MAX_REPLY_BYTES: u64 = 1 << 30;
/// A pickle reply is taken as complete once the node has sent nothing for this long and the
/// bytes decode.
const PICKLE_QUIET: Duration = Duration::from_millis(20);

/// Errors of the client.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("cannot reach the node's manager socket at {addr}: {source}")]
    Connect { addr: SocketAddr, source: std::io::Error },
    #[error("i/o: {0}")]
    Io(#[from] std::io::Error),
    #[error("the node closed the connection without replying")]
    Closed,
    #[error("unreadable reply: {0}")]
    BadReply(String),
    #[error("no reply within {0:?}")]
    Timeout(Duration),
}

/// One connection to the manager socket.
pub struct Client {
    stream: BufReader<TcpStream>,
    timeout: Duration,
}

impl Client {
    pub async fn connect(addr: SocketAddr, timeout: Duration) -> Result<Client, ClientError> {
        let stream = tokio::time::timeout(timeout, TcpStream::connect(addr))
            .await
            .map_err(|_| ClientError::Timeout(timeout))?
            .map_err(|source| ClientError::Connect { addr, source })?;
        stream.set_nodelay(true)?;
        Ok(Client { stream: BufReader::new(stream), timeout })
    }

    /// Sends raw bytes as they are (no newline added).
    pub async fn send_raw(&mut self, bytes: &[u8]) -> Result<(), ClientError> {
        self.stream.get_mut().write_all(bytes).await?;
        Ok(())
    }

    /// Reads one JSON reply line.
    pub async fn read_reply(&mut self) -> Result<Value, ClientError> {
        let mut line = Vec::new();
        let n = tokio::time::timeout(
            self.timeout,
            (&mut self.stream).take(MAX_REPLY_BYTES).read_until(b'\n', &mut line),
        )
        .await
        .map_err(|_| ClientError::Timeout(self.timeout))??;
        if n == 0 {
            return Err(ClientError::Closed);
        }
        serde_json::from_slice(&line).map_err(|e| ClientError::BadReply(e.to_string()))
    }

    /// Sends one request object and reads its JSON reply.
    pub async fn request(&mut self, request: &Value) -> Result<Value, ClientError> {
        let bytes = serde_json::to_vec(request).expect("a Value always serializes");
        self.send_raw(&bytes).await?;
        self.read_reply().await
    }

    /// Sends a request whose reply is a bare pickle (`message_type 2` without a format). A pickle
    /// has no length prefix: the reply is complete when it ends with STOP (`.`) and decodes, which
    /// is tried only when the node pauses (so a large table is decoded once, not per chunk).
    pub async fn request_pickle(&mut self, request: &Value) -> Result<Vec<u8>, ClientError> {
        let bytes = serde_json::to_vec(request).expect("a Value always serializes");
        self.send_raw(&bytes).await?;
        let mut out = Vec::new();
        let mut chunk = vec![0u8; 64 * 1024];
        let deadline = tokio::time::Instant::now() + self.timeout;
        loop {
            let quiet = tokio::time::timeout(PICKLE_QUIET, self.stream.read(&mut chunk)).await;
            match quiet {
                Ok(read) => {
                    let n = read?;
                    if n == 0 {
                        return if out.is_empty() { Err(ClientError::Closed) } else { Ok(out) };
                    }
                    out.extend_from_slice(&chunk[..n]);
                    if out.len() as u64 > MAX_REPLY_BYTES {
                        return Err(ClientError::BadReply("pickle reply too large".into()));
                    }
                }
                Err(_)
                    if out.last() == Some(&b'.')
                        && serde_pickle::value_from_slice(&out, serde_pickle::DeOptions::new()).is_ok() =>
                {
                    return Ok(out)
                }
                Err(_) if tokio::time::Instant::now() > deadline => {
                    return Err(ClientError::Timeout(self.timeout))
                }
                Err(_) => {}
            }
        }
    }
}
