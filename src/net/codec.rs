//! The anti-entropy wire codec: CBOR messages of bounded size. Unlike libp2p's stock CBOR codec,
//! an undecodable or oversized request is not dropped silently inside libp2p: it reaches the
//! node as [`Inbound::Malformed`], so it is answered, counted and held against the sender.

use std::io;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;

use futures::prelude::*;
use libp2p::request_response;
use libp2p::StreamProtocol;

use crate::core::sync::{SyncReply, SyncRequest, MAX_SYNC_MESSAGE_BYTES};

/// A request as read off the wire.
#[derive(Debug, Clone)]
pub enum Inbound {
    Valid(SyncRequest),
    /// Not a request we can read (garbage, wrong encoding, or over the size limit).
    Malformed(String),
}

/// Anti-entropy bytes on the wire, shared by every connection's codec.
#[derive(Debug, Default)]
pub struct SyncBytes {
    pub sent: AtomicU64,
    pub received: AtomicU64,
}

#[derive(Debug, Clone, Default)]
pub struct SyncCodec {
    bytes: Arc<SyncBytes>,
}

impl SyncCodec {
    pub fn new(bytes: Arc<SyncBytes>) -> Self {
        SyncCodec { bytes }
    }

    fn received(&self, n: usize) {
        self.bytes.received.fetch_add(n as u64, Relaxed);
    }

    async fn send<T: AsyncWrite + Unpin + Send>(&self, io: &mut T, bytes: &[u8]) -> io::Result<()> {
        io.write_all(bytes).await?;
        self.bytes.sent.fetch_add(bytes.len() as u64, Relaxed);
        Ok(())
    }
}

/// An oversized request is read and discarded up to this many bytes in all, so a sender that is
/// merely too big gets its refusal; past it we stop reading and the sender times out.
const MAX_DRAIN_BYTES: u64 = 4 * MAX_SYNC_MESSAGE_BYTES;

/// Reads a whole message of at most [`MAX_SYNC_MESSAGE_BYTES`].
async fn read_limited<T: AsyncRead + Unpin + Send>(io: &mut T) -> io::Result<Result<Vec<u8>, String>> {
    let mut buf = Vec::new();
    io.take(MAX_SYNC_MESSAGE_BYTES + 1).read_to_end(&mut buf).await?;
    if buf.len() as u64 > MAX_SYNC_MESSAGE_BYTES {
        drop(buf);
        futures::io::copy(io.take(MAX_DRAIN_BYTES - MAX_SYNC_MESSAGE_BYTES), &mut futures::io::sink())
            .await?;
        return Ok(Err(format!("message over {MAX_SYNC_MESSAGE_BYTES} bytes")));
    }
    Ok(Ok(buf))
}

fn encode<M: serde::Serialize>(m: &M) -> io::Result<Vec<u8>> {
    cbor4ii::serde::to_vec(Vec::new(), m).map_err(io::Error::other)
}

impl request_response::Codec for SyncCodec {
    type Protocol = StreamProtocol;
    type Request = Inbound;
    type Response = SyncReply;

    async fn read_request<T>(&mut self, _: &StreamProtocol, io: &mut T) -> io::Result<Inbound>
    where
        T: AsyncRead + Unpin + Send,
    {
        let read = read_limited(io).await?;
        if let Ok(bytes) = &read {
            self.received(bytes.len());
        }
        Ok(match read {
            Ok(bytes) => match cbor4ii::serde::from_slice::<SyncRequest>(&bytes) {
                Ok(request) => Inbound::Valid(request),
                Err(e) => Inbound::Malformed(format!("undecodable request: {e}")),
            },
            Err(reason) => Inbound::Malformed(reason),
        })
    }

    async fn read_response<T>(&mut self, _: &StreamProtocol, io: &mut T) -> io::Result<SyncReply>
    where
        T: AsyncRead + Unpin + Send,
    {
        let bytes = read_limited(io).await?.map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
        self.received(bytes.len());
        cbor4ii::serde::from_slice(&bytes)
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e.to_string()))
    }

    async fn write_request<T>(&mut self, _: &StreamProtocol, io: &mut T, req: Inbound) -> io::Result<()>
    where
        T: AsyncWrite + Unpin + Send,
    {
        match req {
            Inbound::Valid(r) => self.send(io, &encode(&r)?).await,
            Inbound::Malformed(_) => {
                Err(io::Error::new(io::ErrorKind::InvalidInput, "not a request to send"))
            }
        }
    }

    async fn write_response<T>(&mut self, _: &StreamProtocol, io: &mut T, resp: SyncReply) -> io::Result<()>
    where
        T: AsyncWrite + Unpin + Send,
    {
        self.send(io, &encode(&resp)?).await
    }
}
