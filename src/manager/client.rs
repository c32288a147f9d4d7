//! A client of the manager socket, as the original services use it: send one JSON object, read the
//! reply. Used by `udht-node ctl`, the examples, the benchmark and the tests.
//!
//! The typed methods ([`Client::add`], [`Client::get`], ...) build their requests with
//! [`ClientRequest`], so the protocol's field names stay in [`super::protocol`]; [`Client::request`]
//! sends any JSON, for tests of malformed or old-style requests.

use std::net::SocketAddr;
use std::time::Duration;

use serde_json::Value;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

use super::protocol::{ClientRequest, PeerData};

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

/// One JSON reply: the line exactly as the node sent it, and its parsed value.
#[derive(Debug, Clone, PartialEq)]
pub struct JsonReply {
    /// The reply's bytes, without the trailing newline.
    pub line: String,
    pub value: Value,
}

impl JsonReply {
    /// Whether the node reported success (`"result": "completed"`).
    pub fn is_completed(&self) -> bool {
        self.value["result"] == "completed"
    }
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
        Self::from_stream(stream, timeout)
    }

    /// A client over a connection made elsewhere: the tests reach a manager socket that listens
    /// inside a network namespace with a socket made in that namespace.
    pub fn from_stream(stream: TcpStream, timeout: Duration) -> Result<Client, ClientError> {
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
        Ok(self.read_reply_line().await?.value)
    }

    /// Reads one JSON reply line, keeping its exact text.
    pub async fn read_reply_line(&mut self) -> Result<JsonReply, ClientError> {
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
        let value = serde_json::from_slice(&line).map_err(|e| ClientError::BadReply(e.to_string()))?;
        if line.last() == Some(&b'\n') {
            line.pop();
        }
        let line = String::from_utf8(line).map_err(|e| ClientError::BadReply(e.to_string()))?;
        Ok(JsonReply { line, value })
    }

    /// Starts a watch (type 11): the lines that follow come with [`Client::next_watch_line`].
    pub async fn watch(&mut self, snapshot: bool) -> Result<(), ClientError> {
        self.send(&ClientRequest::Watch { snapshot }).await
    }

    /// The next line of a watch, however long it takes (a quiet table sends nothing); `None`
    /// once the node has closed the watch.
    pub async fn next_watch_line(&mut self) -> Result<Option<JsonReply>, ClientError> {
        // tokio treats a deadline past the end of time as none.
        let wait = std::mem::replace(&mut self.timeout, Duration::MAX);
        let line = self.read_reply_line().await;
        self.timeout = wait;
        match line {
            Ok(line) => Ok(Some(line)),
            Err(ClientError::Closed) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Sends a typed request without reading a reply: for [`ClientRequest::Close`], which gets none.
    pub async fn send(&mut self, request: &ClientRequest<'_>) -> Result<(), ClientError> {
        self.send_raw(&request.encode()).await
    }

    /// Sends a typed request and reads its JSON reply. Not for `Table { json: false }`, whose reply
    /// is a pickle (see [`Client::table_pickle`]), nor `Close`, which gets none (see [`Client::send`]).
    pub async fn call(&mut self, request: &ClientRequest<'_>) -> Result<JsonReply, ClientError> {
        self.send(request).await?;
        self.read_reply_line().await
    }

    /// Adds a peer (type 3); the node refuses an existing key.
    pub async fn add(&mut self, peer: &PeerData) -> Result<JsonReply, ClientError> {
        self.call(&ClientRequest::Add(peer)).await
    }

    /// Changes the given fields of a peer (type 6); the node refuses a missing key.
    pub async fn update(&mut self, peer: &PeerData) -> Result<JsonReply, ClientError> {
        self.call(&ClientRequest::Update(peer)).await
    }

    /// One peer's record (type 7), by peer id or IP address.
    pub async fn get(&mut self, key: &str) -> Result<JsonReply, ClientError> {
        self.call(&ClientRequest::Get(key)).await
    }

    /// Removes a peer (type 4), by peer id or IP address.
    pub async fn remove(&mut self, key: &str) -> Result<JsonReply, ClientError> {
        self.call(&ClientRequest::Remove(key)).await
    }

    /// The whole table as JSON (type 2 with `"format": "json"`).
    pub async fn table_json(&mut self) -> Result<JsonReply, ClientError> {
        self.call(&ClientRequest::Table { json: true }).await
    }

    /// The whole table as the original's bare pickle (type 2 without a format).
    pub async fn table_pickle(&mut self) -> Result<Vec<u8>, ClientError> {
        self.send(&ClientRequest::Table { json: false }).await?;
        self.read_pickle().await
    }

    /// The node's own record (type 8).
    pub async fn identity(&mut self) -> Result<JsonReply, ClientError> {
        self.call(&ClientRequest::Identity).await
    }

    /// The node's status (type 9).
    pub async fn status(&mut self) -> Result<JsonReply, ClientError> {
        self.call(&ClientRequest::Status).await
    }

    /// The node records' liveness as the node sees them (type 10).
    pub async fn members(&mut self) -> Result<JsonReply, ClientError> {
        self.call(&ClientRequest::Members).await
    }

    /// Sends one request object and reads its JSON reply.
    pub async fn request(&mut self, request: &Value) -> Result<Value, ClientError> {
        Ok(self.request_line(request).await?.value)
    }

    /// Sends one request object and reads its JSON reply, keeping the reply's exact text.
    pub async fn request_line(&mut self, request: &Value) -> Result<JsonReply, ClientError> {
        let bytes = serde_json::to_vec(request).expect("a Value always serializes");
        self.send_raw(&bytes).await?;
        self.read_reply_line().await
    }

    /// Sends a request whose reply is a bare pickle (`message_type 2` without a format).
    pub async fn request_pickle(&mut self, request: &Value) -> Result<Vec<u8>, ClientError> {
        let bytes = serde_json::to_vec(request).expect("a Value always serializes");
        self.send_raw(&bytes).await?;
        self.read_pickle().await
    }

    /// Reads a pickle reply. A pickle has no length prefix: the reply is complete when it ends with
    /// STOP (`.`) and decodes, which is tried only when the node pauses (so a large table is decoded
    /// once, not per chunk).
    async fn read_pickle(&mut self) -> Result<Vec<u8>, ClientError> {
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

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::net::TcpListener;

    /// A one-shot node: reads one request (up to its closing brace), answers `reply`, and hands
    /// back the request's bytes.
    async fn answer_once(reply: &'static [u8]) -> (SocketAddr, tokio::task::JoinHandle<Vec<u8>>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let task = tokio::spawn(async move {
            let (mut stream, _) = listener.accept().await.unwrap();
            let mut request = Vec::new();
            let mut byte = [0u8; 1];
            let mut depth = 0;
            loop {
                stream.read_exact(&mut byte).await.unwrap();
                request.push(byte[0]);
                match byte[0] {
                    b'{' => depth += 1,
                    b'}' => depth -= 1,
                    _ => {}
                }
                if depth == 0 {
                    break;
                }
            }
            stream.write_all(reply).await.unwrap();
            request
        });
        (addr, task)
    }

    #[tokio::test]
    async fn typed_methods_send_the_typed_request_and_keep_the_reply_line_exact() {
        let reply = b"{\"action\": \"peer add\", \"result\": \"completed\", \"data\": true}\n";
        let (addr, node) = answer_once(reply).await;
        let mut client = Client::connect(addr, Duration::from_secs(5)).await.unwrap();
        let peer = PeerData {
            ip: Some("1.2.3.4".into()),
            port: Some("8001".into()),
            name: Some("F".into()),
            ports: Some([("userSync".to_string(), 3003)].into()),
            ..Default::default()
        };
        let got = client.add(&peer).await.unwrap();
        assert_eq!(node.await.unwrap(), ClientRequest::Add(&peer).encode());
        assert_eq!(got.line.as_bytes(), &reply[..reply.len() - 1]);
        assert_eq!(got.value["data"], true);
        assert!(got.is_completed());
    }

    #[tokio::test]
    async fn an_error_reply_is_not_completed() {
        let reply = b"{\"action\": \"peer get\", \"result\": \"error\", \"data\": null}\n";
        let (addr, node) = answer_once(reply).await;
        let mut client = Client::connect(addr, Duration::from_secs(5)).await.unwrap();
        let got = client.get("9.9.9.9").await.unwrap();
        assert_eq!(node.await.unwrap(), br#"{"data":{"peer_id":"9.9.9.9"},"message_type":7}"#);
        assert_eq!(got.line, "{\"action\": \"peer get\", \"result\": \"error\", \"data\": null}");
        assert!(!got.is_completed());
    }
}
