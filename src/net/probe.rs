//! The liveness probe protocol: a small request-response exchange (probe or ping-req, answered
//! by an ack) carrying the liveness state machine's messages (see `core::liveness`), CBOR of
//! bounded size. A malformed message fails its stream; nothing of it reaches the node.
//!
//! The same protocol carries the connection manager's parting notice ("I am closing our
//! connections on purpose"), answered by the network layer itself: the receiver then takes the
//! close for what it is, not for a failure to look into (see `connmgr`).

use std::collections::HashMap;
use std::io;

use futures::prelude::*;
use libp2p::request_response::{self, OutboundRequestId, ResponseChannel};
use libp2p::{PeerId, StreamProtocol};

use crate::core::liveness::{ProbeAck, ProbeRequest, MAX_PIGGYBACK};

/// Probes are small (a few piggybacked updates of ~50 bytes): anything bigger is not ours.
pub const MAX_PROBE_MESSAGE_BYTES: u64 = 1024 + 128 * MAX_PIGGYBACK as u64;

pub type ProbeBehaviour = request_response::Behaviour<ProbeCodec>;

/// A request on the probe protocol.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProbeWire {
    /// The liveness machine's probe or ping-req.
    Probe(ProbeRequest<PeerId>),
    /// The sender is about to close its connections to us on purpose (a trim).
    Parting,
}

/// How a parting notice looks on the wire: a map no probe can be read as (a probe always has an
/// incarnation), so a node that does not know it fails the stream, and the sender closes anyway.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
struct PartingNotice {
    parting: bool,
}

/// Where a probe's answer goes.
#[derive(Debug)]
pub struct ProbeResponder(pub(super) ResponseChannel<ProbeAck<PeerId>>);

#[derive(Debug, Clone, Default)]
pub struct ProbeCodec;

async fn read_bounded_bytes<T: AsyncRead + Unpin + Send>(io: &mut T) -> io::Result<Vec<u8>> {
    let mut buf = Vec::new();
    io.take(MAX_PROBE_MESSAGE_BYTES + 1).read_to_end(&mut buf).await?;
    if buf.len() as u64 > MAX_PROBE_MESSAGE_BYTES {
        return Err(io::Error::new(io::ErrorKind::InvalidData, "probe message too large"));
    }
    Ok(buf)
}

async fn read_bounded<T: AsyncRead + Unpin + Send, M: serde::de::DeserializeOwned>(
    io: &mut T,
) -> io::Result<M> {
    let buf = read_bounded_bytes(io).await?;
    cbor4ii::serde::from_slice(&buf).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e.to_string()))
}

async fn write<T: AsyncWrite + Unpin + Send, M: serde::Serialize>(io: &mut T, m: &M) -> io::Result<()> {
    let bytes = cbor4ii::serde::to_vec(Vec::new(), m).map_err(io::Error::other)?;
    // The request-response handler closes the stream after this.
    io.write_all(&bytes).await
}

impl request_response::Codec for ProbeCodec {
    type Protocol = StreamProtocol;
    type Request = ProbeWire;
    type Response = ProbeAck<PeerId>;

    async fn read_request<T: AsyncRead + Unpin + Send>(
        &mut self,
        _: &StreamProtocol,
        io: &mut T,
    ) -> io::Result<Self::Request> {
        let bytes = read_bounded_bytes(io).await?;
        if let Ok(probe) = cbor4ii::serde::from_slice(&bytes) {
            return Ok(ProbeWire::Probe(probe));
        }
        match cbor4ii::serde::from_slice(&bytes) {
            Ok(PartingNotice { parting: true }) => Ok(ProbeWire::Parting),
            _ => Err(io::Error::new(io::ErrorKind::InvalidData, "not a probe message")),
        }
    }

    async fn read_response<T: AsyncRead + Unpin + Send>(
        &mut self,
        _: &StreamProtocol,
        io: &mut T,
    ) -> io::Result<Self::Response> {
        read_bounded(io).await
    }

    async fn write_request<T: AsyncWrite + Unpin + Send>(
        &mut self,
        _: &StreamProtocol,
        io: &mut T,
        req: Self::Request,
    ) -> io::Result<()> {
        match req {
            ProbeWire::Probe(probe) => write(io, &probe).await,
            ProbeWire::Parting => write(io, &PartingNotice { parting: true }).await,
        }
    }

    async fn write_response<T: AsyncWrite + Unpin + Send>(
        &mut self,
        _: &StreamProtocol,
        io: &mut T,
        resp: Self::Response,
    ) -> io::Result<()> {
        write(io, &resp).await
    }
}

/// Probe messages on the wire, reported by `message_type 9`.
#[derive(Debug, Clone, Copy, Default, serde::Serialize)]
pub struct ProbeStats {
    pub probes_sent: u64,
    pub probes_received: u64,
    pub probe_failures: u64,
}

/// What a probe event means to the node task.
#[derive(Debug)]
pub enum ProbeEvent {
    Request { peer: PeerId, request: ProbeRequest<PeerId>, responder: ProbeResponder },
    Response { peer: PeerId, id: u64, ack: ProbeAck<PeerId> },
    Failed { id: u64 },
}

/// What the network layer makes of a probe protocol event.
#[derive(Debug)]
pub enum Handled {
    /// For the node task.
    Event(ProbeEvent),
    /// The peer is parting from us: answer through the responder.
    PartingFrom { peer: PeerId, responder: ProbeResponder },
    /// Our parting notice to `peer` was answered, or failed: close the connections now.
    PartedFrom(PeerId),
}

/// Our outstanding probes: libp2p's id to the state machine's, and to whom (a peer we are
/// probing is not trimmed). An entry leaves with the answer or the failure, one of which
/// libp2p always reports. Likewise our parting notices.
#[derive(Debug, Default)]
pub struct Probes {
    outbound: HashMap<OutboundRequestId, (u64, PeerId)>,
    partings: HashMap<OutboundRequestId, PeerId>,
    pub stats: ProbeStats,
}

impl Probes {
    pub fn sent(&mut self, libp2p_id: OutboundRequestId, id: u64, peer: PeerId) {
        self.stats.probes_sent += 1;
        self.outbound.insert(libp2p_id, (id, peer));
    }

    pub fn parting_sent(&mut self, libp2p_id: OutboundRequestId, peer: PeerId) {
        self.partings.insert(libp2p_id, peer);
    }

    /// Peers a probe of ours is waiting on.
    pub fn awaited(&self) -> impl Iterator<Item = &PeerId> {
        self.outbound.values().map(|(_, p)| p)
    }

    pub fn handle(&mut self, event: request_response::Event<ProbeWire, ProbeAck<PeerId>>) -> Option<Handled> {
        match event {
            request_response::Event::Message { peer, message, .. } => match message {
                request_response::Message::Request { request: ProbeWire::Parting, channel, .. } => {
                    Some(Handled::PartingFrom { peer, responder: ProbeResponder(channel) })
                }
                request_response::Message::Request {
                    request: ProbeWire::Probe(request), channel, ..
                } => {
                    self.stats.probes_received += 1;
                    Some(Handled::Event(ProbeEvent::Request {
                        peer,
                        request,
                        responder: ProbeResponder(channel),
                    }))
                }
                request_response::Message::Response { request_id, response } => {
                    if let Some(peer) = self.partings.remove(&request_id) {
                        return Some(Handled::PartedFrom(peer));
                    }
                    let (id, _) = self.outbound.remove(&request_id)?;
                    Some(Handled::Event(ProbeEvent::Response { peer, id, ack: response }))
                }
            },
            request_response::Event::OutboundFailure { request_id, error, peer, .. } => {
                if let Some(peer) = self.partings.remove(&request_id) {
                    return Some(Handled::PartedFrom(peer));
                }
                self.stats.probe_failures += 1;
                tracing::debug!(%peer, %error, "probe failed");
                let (id, _) = self.outbound.remove(&request_id)?;
                Some(Handled::Event(ProbeEvent::Failed { id }))
            }
            request_response::Event::InboundFailure { peer, error, .. } => {
                tracing::debug!(%peer, %error, "inbound probe failed");
                None
            }
            request_response::Event::ResponseSent { .. } => None,
        }
    }
}
