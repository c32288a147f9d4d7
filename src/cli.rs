//! The `udht-node` command line: flags (each also from `UDHT_<FLAG>`), logging, signals, and the
//! `ctl` client that prints the node's JSON replies.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};

use crate::app::{NodeConfig, RunningNode};
use crate::core::record::{MAX_PORTS, MAX_STRING_BYTES};
use crate::manager::client::{Client, ClientError};
use crate::manager::protocol::PeerData;
use crate::manager::DEFAULT_PORT;
use crate::net::{parse_multiaddr, Multiaddr, Psk};
use crate::store;

/// How long `ctl` waits to connect and for a reply.
const CTL_TIMEOUT: Duration = Duration::from_secs(30);
/// With `ctl --wait`, how often it tries to connect again.
const CTL_RETRY: Duration = Duration::from_millis(100);

#[derive(Debug, Parser)]
#[command(name = "udht-node", version, about = "A udht node: the replicated peer table of Files-for-Peers")]
pub struct Cli {
    /// Directory for the table and the node identity.
    #[arg(long, env = "UDHT_DATA_DIR", default_value = "./data", global = true)]
    pub data_dir: PathBuf,
    /// Manager socket address (loopback only), e.g. 127.0.0.1:3002 or localhost:3002. Default
    /// 127.0.0.1:3002, or 127.0.0.1:$DHT_PORT.
    #[arg(long, env = "UDHT_MANAGER", global = true, value_parser = manager_addr)]
    pub manager: Option<SocketAddr>,
    /// libp2p listen address (repeatable). TCP and QUIC by default; QUIC is off with --psk.
    #[arg(long, env = "UDHT_LISTEN", value_delimiter = ',', value_parser = multiaddr,
          default_value = "/ip4/0.0.0.0/tcp/4001,/ip4/0.0.0.0/udp/4001/quic-v1")]
    pub listen: Vec<Multiaddr>,
    /// A peer to join through, with or without /p2p/<peer id> (repeatable).
    #[arg(long, env = "UDHT_BOOTSTRAP", value_delimiter = ',', value_parser = multiaddr)]
    pub bootstrap: Vec<Multiaddr>,
    /// The name in this node's own record.
    #[arg(long, env = "UDHT_NAME")]
    pub name: Option<String>,
    /// An address other nodes should dial (repeatable), advertised as reachable without AutoNAT
    /// confirming it; the first one also fills the own record's ip/port.
    #[arg(long, env = "UDHT_ANNOUNCE", value_delimiter = ',', value_parser = multiaddr)]
    pub announce: Vec<Multiaddr>,
    /// This node's service ports, put in its own record's `ports`, e.g.
    /// networkLayer=6002,userSync=3003,fileSync=3001 (the names the original clients read).
    #[arg(long, env = "UDHT_PORTS", value_parser = service_ports)]
    pub ports: Option<BTreeMap<String, u16>>,
    /// Network id, part of every protocol name: nodes of different ids never merge.
    #[arg(long, env = "UDHT_NETWORK_ID", default_value = crate::app::DEFAULT_NETWORK_ID, global = true)]
    pub network_id: String,
    /// How often to run anti-entropy with a random peer, e.g. 10s or 500ms.
    #[arg(long, env = "UDHT_SYNC_INTERVAL", default_value = "10s", value_parser = duration)]
    pub sync_interval: Duration,
    /// Remote writes stamped further than this ahead of the local clock are refused.
    #[arg(long, env = "UDHT_MAX_CLOCK_SKEW", default_value = "60s", value_parser = duration)]
    pub max_clock_skew: Duration,
    /// How long a removal's tombstone is kept (longer than any partition should last), e.g. 7d.
    #[arg(long, env = "UDHT_TOMBSTONE_GRACE", default_value = "7d", value_parser = duration)]
    pub tombstone_grace: Duration,
    /// How often this node rewrites its own record (`lastConnectionOn`; each wait jittered 0.8 to
    /// 1.2 times this, and at once when its addresses change), e.g. 30m.
    #[arg(long, env = "UDHT_REFRESH_INTERVAL", default_value = "30m", value_parser = duration)]
    pub refresh_interval: Duration,
    /// A node record (key = a peer id) not refreshed for this long is dropped by every node, e.g.
    /// 7d. Must be more than twice --refresh-interval.
    #[arg(long, env = "UDHT_NODE_TTL", default_value = "7d", value_parser = duration)]
    pub node_ttl: Duration,
    /// Connections to keep: the node dials known peers while it has fewer, and past half as
    /// many again it parts from the least useful ones (never the gossip mesh, relays, requests
    /// in flight, or one peer per Kademlia bucket).
    #[arg(long, env = "UDHT_TARGET_PEERS", default_value_t = crate::app::DEFAULT_TARGET_PEERS,
          value_parser = target_peers)]
    pub target_peers: usize,
    /// On SIGTERM or SIGINT, tombstone this node's own record (and wait, up to a few seconds,
    /// until it is durable and gossiped) before stopping: the node leaves the network.
    #[arg(long, env = "UDHT_LEAVE")]
    pub leave: bool,
    /// Most keys one writer's entries may hold in the table (a flooding member stops there).
    #[arg(long, env = "UDHT_MAX_KEYS_PER_WRITER", default_value_t = crate::core::table::DEFAULT_MAX_KEYS_PER_WRITER)]
    pub max_keys_per_writer: usize,
    /// Unsolicited entries (gossip, pushes) one peer may send per second (twice that in a burst).
    #[arg(long, env = "UDHT_PEER_ENTRY_RATE", default_value_t = crate::core::replica::DEFAULT_PEER_ENTRY_RATE)]
    pub peer_entry_rate: u32,
    /// A private network's key file (libp2p swarm-key format; `udht-node keygen-psk FILE` makes
    /// one): only nodes with the same key can connect.
    #[arg(long, env = "UDHT_PSK", global = true)]
    pub psk: Option<PathBuf>,
    /// Never act as a circuit relay for nodes behind NATs (by default a publicly reachable node
    /// does, within libp2p's resource limits).
    #[arg(long, env = "UDHT_NO_RELAY_SERVER")]
    pub no_relay_server: bool,
    /// Ask the router for a port mapping (UPnP IGD) and advertise it once confirmed.
    #[arg(long, env = "UDHT_UPNP")]
    pub upnp: bool,
    /// Serve Prometheus metrics at /metrics and a live status page at / on this address, e.g.
    /// 127.0.0.1:9090 (loopback only, unless --metrics-public). Off by default.
    #[arg(long, env = "UDHT_METRICS")]
    pub metrics: Option<SocketAddr>,
    /// Allow --metrics on a non-loopback address (the page shows the whole table).
    #[arg(long, env = "UDHT_METRICS_PUBLIC")]
    pub metrics_public: bool,
    // `--init` and `--reset-table` have no UDHT_ variable on purpose: set once in a service's
    // environment, they would start a new node or drop the table at every restart.
    /// Start as a new node if the data dir's identity is missing: a new peer id, keeping the table
    /// (its old own record is dropped). Also allows a missing or empty table.
    #[arg(long)]
    pub init: bool,
    /// Start with an empty table, keeping the identity: the old table.redb (lost, truncated or
    /// damaged) is moved aside as table.redb.bad-<unix time>. The table refills from peers.
    #[arg(long)]
    pub reset_table: bool,
    #[command(subcommand)]
    pub command: Option<Command>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Talk to a running node through its manager socket and print its JSON reply.
    Ctl {
        /// Keep trying to reach the node this long (e.g. 10s) before giving up: for scripts that
        /// start a node and talk to it at once.
        #[arg(long, global = true, value_parser = duration)]
        wait: Option<Duration>,
        #[command(subcommand)]
        action: CtlAction,
    },
    /// Write a new private network key to FILE (mode 0600; an existing file is never replaced).
    /// Give every node of the network the same file with --psk.
    KeygenPsk { file: PathBuf },
    /// Check every entry of the data dir's table (the node must not be running): entries whose
    /// signature fails or that do not decode are deleted (peers give them back), and a summary
    /// is printed.
    Scrub,
}

#[derive(Debug, Subcommand)]
pub enum CtlAction {
    /// Add a peer (message_type 3).
    Add(PeerArgs),
    /// Change a peer (message_type 6).
    Update(PeerArgs),
    /// Show one peer (message_type 7).
    Get { key: String },
    /// Remove a peer (message_type 4).
    Remove { key: String },
    /// The whole table as JSON (message_type 2, format json).
    Table,
    /// This node's own record (message_type 8).
    Identity,
    /// Peer id, addresses, connected peers, table size and digest (message_type 9).
    Status,
    /// Each node record's liveness as the node sees it: alive, suspect or dead, when last seen,
    /// whether directly connected (message_type 10).
    Members,
    /// Print every change as it becomes durable on the node, one JSON line each (message_type
    /// 11), until the node closes the watch or this is interrupted.
    Watch {
        /// First print every record in the table (`"origin": "snapshot"`).
        #[arg(long)]
        snapshot: bool,
    },
}

#[derive(Debug, Args)]
pub struct PeerArgs {
    /// The record key: an IP address (first revision) or, with --peer-id, ignored in favour of it.
    #[arg(long)]
    pub ip: Option<String>,
    #[arg(long)]
    pub port: Option<String>,
    #[arg(long)]
    pub name: Option<String>,
    /// Key the record by this peer id (later revision).
    #[arg(long)]
    pub peer_id: Option<String>,
    /// Named ports, e.g. --ports userSync=3003,fileSync=3004.
    #[arg(long, value_delimiter = ',', value_parser = named_port)]
    pub ports: Vec<(String, u16)>,
}

/// An address and port, with a host name resolved: `localhost` is 127.0.0.1, as the original's
/// clients mean it.
fn manager_addr(s: &str) -> Result<SocketAddr, String> {
    use std::net::ToSocketAddrs;
    if let Ok(addr) = s.parse() {
        return Ok(addr);
    }
    let (host, port) = s.rsplit_once(':').ok_or_else(|| format!("{s:?}: expected HOST:PORT"))?;
    let port: u16 = port.parse().map_err(|_| format!("{s:?}: bad port {port:?}"))?;
    if host == "localhost" {
        return Ok(SocketAddr::from(([127, 0, 0, 1], port)));
    }
    (host, port)
        .to_socket_addrs()
        .map_err(|e| format!("{s:?}: cannot resolve {host:?}: {e}"))?
        .next()
        .ok_or_else(|| format!("{s:?}: {host:?} resolves to no address"))
}

fn multiaddr(s: &str) -> Result<Multiaddr, String> {
    parse_multiaddr(s).map_err(|e| e.to_string())
}

/// A duration such as `500ms`, `10s`, `2m`, `6h` or `7d`.
/// A connection target: at least one peer, and not so many that the limits on incoming
/// connections (256) would refuse what the node itself asks for.
fn target_peers(s: &str) -> Result<usize, String> {
    match s.parse::<usize>() {
        Ok(n) if (1..=128).contains(&n) => Ok(n),
        _ => Err(format!("{s:?} is not a number of peers from 1 to 128")),
    }
}

fn duration(s: &str) -> Result<Duration, String> {
    let split = s.find(|c: char| !c.is_ascii_digit() && c != '.').unwrap_or(s.len());
    let (n, unit) = s.split_at(split);
    let n: f64 = n.parse().map_err(|_| format!("bad duration {s:?}: expected e.g. 10s or 500ms"))?;
    let secs = match unit {
        "ms" => n / 1000.0,
        "s" | "" => n,
        "m" => n * 60.0,
        "h" => n * 3600.0,
        "d" => n * 86_400.0,
        _ => return Err(format!("bad duration unit in {s:?}: use ms, s, m, h or d")),
    };
    if !(secs > 0.0 && secs <= 365.0 * 86_400.0) {
        return Err(format!("duration {s:?} out of range"));
    }
    Ok(Duration::from_secs_f64(secs))
}

fn named_port(s: &str) -> Result<(String, u16), String> {
    let (name, port) = s.split_once('=').ok_or("expected NAME=PORT")?;
    Ok((name.to_owned(), port.parse().map_err(|_| format!("bad port in {s:?}"))?))
}

/// `NAME=PORT,...`: each name once, ports 1-65535, no more than a record holds.
fn service_ports(s: &str) -> Result<BTreeMap<String, u16>, String> {
    let mut ports = BTreeMap::new();
    for item in s.split(',').filter(|i| !i.is_empty()) {
        let (name, port) = item
            .split_once('=')
            .ok_or_else(|| format!("{item:?}: expected NAME=PORT, e.g. userSync=3003"))?;
        if name.is_empty() || name.len() > MAX_STRING_BYTES {
            return Err(format!("{item:?}: a port name must have 1 to {MAX_STRING_BYTES} bytes"));
        }
        let port = match port.parse::<u32>() {
            Ok(p @ 1..=65535) => p as u16,
            _ => return Err(format!("{item:?}: the port must be a number from 1 to 65535")),
        };
        if ports.insert(name.to_owned(), port).is_some() {
            return Err(format!("{name:?} is given twice"));
        }
    }
    if ports.len() > MAX_PORTS {
        return Err(format!("{} ports given; a record holds at most {MAX_PORTS}", ports.len()));
    }
    Ok(ports)
}

impl Cli {
    /// The manager address: --manager, else 127.0.0.1:$DHT_PORT as in the original, else :3002.
    pub fn manager_addr(&self) -> Result<SocketAddr, String> {
        if let Some(a) = self.manager {
            return Ok(a);
        }
        let port = match std::env::var("DHT_PORT") {
            Ok(p) => p.parse::<u16>().map_err(|_| format!("DHT_PORT={p:?} is not a port number"))?,
            Err(_) => DEFAULT_PORT,
        };
        Ok(SocketAddr::from(([127, 0, 0, 1], port)))
    }

    pub fn node_config(&self) -> Result<NodeConfig, String> {
        let mut c = NodeConfig::new(&self.data_dir, self.manager_addr()?);
        c.listen = self.listen.clone();
        c.bootstrap = self.bootstrap.clone();
        c.announce = self.announce.clone();
        c.name = self.name.clone();
        c.ports = self.ports.clone().unwrap_or_default();
        c.network_id = self.network_id.clone();
        c.sync_interval = self.sync_interval;
        c.target_peers = self.target_peers;
        c.table.max_skew = self.max_clock_skew;
        c.table.tombstone_grace = self.tombstone_grace;
        c.table.max_keys_per_writer = self.max_keys_per_writer;
        c.table.node_ttl = self.node_ttl;
        c.refresh_interval = self.refresh_interval;
        c.leave = self.leave;
        c.relay_server = !self.no_relay_server;
        c.upnp = self.upnp;
        c.peer_entry_rate = self.peer_entry_rate;
        c.metrics_addr = self.metrics;
        c.metrics_public = self.metrics_public;
        c.start_mode = store::StartMode { init: self.init, reset_table: self.reset_table };
        if let Some(path) = &self.psk {
            let text = store::read_key_file(path).map_err(|e| format!("--psk: {e}"))?;
            let psk = text.parse::<Psk>().map_err(|e| format!("--psk {}: {e}", path.display()))?;
            c.psk = Some(psk);
        }
        c.check().map_err(|e| e.to_string())?;
        Ok(c)
    }
}

/// Runs the command line: a node until SIGINT/SIGTERM, or one `ctl` request.
pub fn run(cli: Cli) -> ExitCode {
    init_logging();
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("udht-node: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let manager = match cli.manager_addr() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("udht-node: {e}");
            return ExitCode::from(2);
        }
    };
    match &cli.command {
        Some(Command::Ctl { wait, action }) => runtime.block_on(ctl(manager, *wait, action)),
        Some(Command::KeygenPsk { file }) => keygen_psk(file),
        Some(Command::Scrub) => scrub(&cli.data_dir, &cli.network_id),
        None => runtime.block_on(run_node(&cli)),
    }
}

fn init_logging() {
    use tracing_subscriber::EnvFilter;
    // Without RUST_LOG: info, except two libp2p warnings that are normal here (a seed node's
    // Kademlia has no peers to bootstrap from; a repaired entry is regossiped with the same
    // content as the original publish). Set RUST_LOG to see everything.
    let filter = EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| EnvFilter::new("info,libp2p_kad=error,libp2p_gossipsub=error"));
    let _ = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).try_init();
}

async fn run_node(cli: &Cli) -> ExitCode {
    let config = match cli.node_config() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("udht-node: {e}");
            return ExitCode::from(2);
        }
    };
    // Before the node answers anyone: a SIGTERM right after start-up must stop it cleanly.
    let stop = match shutdown_signal() {
        Ok(stop) => stop,
        Err(e) => {
            eprintln!("udht-node: cannot install the signal handlers: {e}");
            return ExitCode::FAILURE;
        }
    };
    let node = match RunningNode::start(config).await {
        Ok(n) => n,
        Err(e) => {
            eprintln!("udht-node: cannot start: {e}");
            return ExitCode::FAILURE;
        }
    };
    match node.run_until(stop).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("udht-node: stopped: {e}");
            ExitCode::FAILURE
        }
    }
}

fn keygen_psk(file: &std::path::Path) -> ExitCode {
    let psk = Psk::generate();
    match store::create_key_file(file, psk.to_key_file().as_bytes()) {
        Ok(()) => {
            println!("wrote a private network key to {} (fingerprint {})", file.display(), psk.fingerprint());
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("udht-node keygen-psk: {e}");
            ExitCode::FAILURE
        }
    }
}

fn scrub(dir: &std::path::Path, network_id: &str) -> ExitCode {
    match crate::integrity::scrub(dir, network_id) {
        Ok(summary) => {
            print_line(&summary.to_string());
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("udht-node scrub: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Installs the SIGINT and SIGTERM handlers now; the future completes at the first signal.
fn shutdown_signal() -> std::io::Result<impl std::future::Future<Output = ()>> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    Ok(async move {
        tokio::select! {
            _ = int.recv() => tracing::info!("SIGINT: shutting down"),
            _ = term.recv() => tracing::info!("SIGTERM: shutting down"),
        }
    })
}

impl From<&PeerArgs> for PeerData {
    fn from(p: &PeerArgs) -> PeerData {
        PeerData {
            peer_id: p.peer_id.clone(),
            ip: p.ip.clone(),
            port: p.port.clone(),
            name: p.name.clone(),
            ports: (!p.ports.is_empty()).then(|| p.ports.iter().cloned().collect()),
        }
    }
}

/// Connects to the node's manager socket, retrying until `wait` has passed.
async fn connect(manager: SocketAddr, wait: Option<Duration>) -> Result<Client, ClientError> {
    let deadline = tokio::time::Instant::now() + wait.unwrap_or_default();
    loop {
        match Client::connect(manager, CTL_TIMEOUT).await {
            Err(ClientError::Connect { .. }) if tokio::time::Instant::now() < deadline => {
                tokio::time::sleep(CTL_RETRY).await
            }
            other => return other,
        }
    }
}

/// Prints a watch's lines as the node sends them; exit 0 when the node ends it cleanly, 1 when it
/// ends with an error line (e.g. lagged), 2 if the node could not be reached.
async fn ctl_watch(manager: SocketAddr, wait: Option<Duration>, snapshot: bool) -> ExitCode {
    use std::io::Write as _;
    let watched = async {
        let mut client = connect(manager, wait).await?;
        client.watch(snapshot).await?;
        let mut last_ok = true;
        while let Some(line) = client.next_watch_line().await? {
            last_ok = line.value["result"] != "error";
            let mut out = std::io::stdout().lock();
            // A closed stdout (e.g. `| head`) ends the watch.
            if writeln!(out, "{}", line.line).and_then(|()| out.flush()).is_err() {
                return Ok(true);
            }
        }
        Ok::<_, ClientError>(last_ok)
    };
    match watched.await {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("udht-node ctl watch: {e}");
            ExitCode::from(2)
        }
    }
}

/// Prints a line on stdout; a reader that has gone (e.g. `| head`) is not an error worth a panic.
fn print_line(line: &str) {
    use std::io::Write as _;
    let _ = writeln!(std::io::stdout().lock(), "{line}");
}

/// Sends one request and prints the reply line as the node sent it; exit 0 if completed, 1 if the
/// node said error, 2 if the node could not be reached.
async fn ctl(manager: SocketAddr, wait: Option<Duration>, action: &CtlAction) -> ExitCode {
    if let CtlAction::Watch { snapshot } = action {
        return ctl_watch(manager, wait, *snapshot).await;
    }
    let reply = async {
        let mut client = connect(manager, wait).await?;
        match action {
            CtlAction::Add(p) => client.add(&p.into()).await,
            CtlAction::Update(p) => client.update(&p.into()).await,
            CtlAction::Get { key } => client.get(key).await,
            CtlAction::Remove { key } => client.remove(key).await,
            CtlAction::Table => client.table_json().await,
            CtlAction::Identity => client.identity().await,
            CtlAction::Status => client.status().await,
            CtlAction::Members => client.members().await,
            CtlAction::Watch { .. } => unreachable!("handled above"),
        }
    };
    match reply.await {
        Ok(reply) => {
            print_line(&reply.line);
            if reply.is_completed() {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            }
        }
        Err(e) => {
            eprintln!("udht-node ctl: {e}");
            ExitCode::from(2)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_reach_the_node_config() {
        let cli = Cli::try_parse_from([
            "udht-node",
            "--data-dir",
            "/tmp/x",
            "--manager",
            "127.0.0.1:4000",
            "--bootstrap",
            "/ip4/127.0.0.1/tcp/4101",
            "--bootstrap",
            "/dns4/node1/tcp/4001",
            "--sync-interval",
            "500ms",
            "--max-clock-skew",
            "2m",
            "--tombstone-grace",
            "1d",
        ])
        .unwrap();
        let c = cli.node_config().unwrap();
        assert_eq!(c.manager_addr, "127.0.0.1:4000".parse().unwrap());
        assert_eq!(c.bootstrap.len(), 2);
        assert_eq!(c.sync_interval, Duration::from_millis(500));
        assert_eq!(c.table.max_skew, Duration::from_secs(120));
        assert_eq!(c.table.tombstone_grace, Duration::from_secs(86_400));
        assert_eq!(c.listen[0].to_string(), "/ip4/0.0.0.0/tcp/4001", "the default listen address");
        assert_eq!(c.listen[1].to_string(), "/ip4/0.0.0.0/udp/4001/quic-v1", "QUIC beside TCP");
        assert!(c.relay_server && !c.upnp, "relay server on, UPnP off by default");
        let c =
            Cli::try_parse_from(["udht-node", "--no-relay-server", "--upnp"]).unwrap().node_config().unwrap();
        assert!(!c.relay_server && c.upnp);
    }

    #[test]
    fn service_ports_reach_the_node_config_and_bad_ones_are_refused_clearly() {
        let parse = |ports: &str| Cli::try_parse_from(["udht-node", "--ports", ports]);
        let c = parse("networkLayer=6002,userSync=3003,fileSync=3001").unwrap().node_config().unwrap();
        let want: BTreeMap<String, u16> = [("networkLayer", 6002), ("userSync", 3003), ("fileSync", 3001)]
            .map(|(n, p)| (n.into(), p))
            .into();
        assert_eq!(c.ports, want);
        assert!(Cli::try_parse_from(["udht-node"]).unwrap().node_config().unwrap().ports.is_empty());
        let too_many = (0..=MAX_PORTS).map(|i| format!("s{i}={}", 3000 + i)).collect::<Vec<_>>().join(",");
        for (bad, says) in [
            ("userSync", "expected NAME=PORT"),
            ("userSync=", "from 1 to 65535"),
            ("userSync=65536", "from 1 to 65535"),
            ("userSync=0", "from 1 to 65535"),
            ("userSync=x", "from 1 to 65535"),
            ("=3003", "a port name must have"),
            ("a=1,a=2", "given twice"),
            (too_many.as_str(), "at most 16"),
        ] {
            let e = parse(bad).unwrap_err();
            assert_eq!(e.kind(), clap::error::ErrorKind::ValueValidation, "{bad}");
            assert!(e.to_string().contains(says) && e.to_string().contains("--ports"), "{bad}: {e}");
        }
    }

    fn ctl_action(args: &[&str]) -> CtlAction {
        let cli = Cli::try_parse_from(["udht-node", "ctl"].iter().chain(args)).unwrap();
        let Some(Command::Ctl { action, .. }) = cli.command else { panic!("not a ctl command") };
        action
    }

    #[test]
    fn ctl_peer_flags_become_the_same_request_as_before() {
        use crate::manager::protocol::ClientRequest;
        let CtlAction::Add(p) = ctl_action(&[
            "add",
            "--ip",
            "1.2.3.4",
            "--port",
            "8001",
            "--name",
            "Felipe Nunes",
            "--ports",
            "userSync=3003,fileSync=3004",
        ]) else {
            panic!("not an add")
        };
        assert_eq!(
            ClientRequest::Add(&PeerData::from(&p)).encode(),
            br#"{"data":{"peer_ip":"1.2.3.4","peer_name":"Felipe Nunes","peer_port":"8001","ports":{"fileSync":3004,"userSync":3003}},"message_type":3}"#
        );
        let CtlAction::Update(p) = ctl_action(&["update", "--peer-id", "12D3KooWX", "--name", "Ana"]) else {
            panic!("not an update")
        };
        assert_eq!(
            ClientRequest::Update(&PeerData::from(&p)).encode(),
            br#"{"data":{"peer_id":"12D3KooWX","peer_name":"Ana"},"message_type":6}"#
        );
        assert!(matches!(ctl_action(&["get", "101.3.4.2"]), CtlAction::Get { key } if key == "101.3.4.2"));
    }

    #[test]
    fn ctl_takes_a_wait_after_its_action() {
        let cli = Cli::try_parse_from(["udht-node", "ctl", "status", "--wait", "10s"]).unwrap();
        assert!(
            matches!(cli.command, Some(Command::Ctl { wait: Some(w), action: CtlAction::Status }) if w == Duration::from_secs(10))
        );
    }

    #[test]
    fn a_manager_address_may_name_localhost() {
        let cli = Cli::try_parse_from(["udht-node", "--manager", "localhost:4000"]).unwrap();
        assert_eq!(cli.manager_addr().unwrap(), "127.0.0.1:4000".parse().unwrap());
        let cli = Cli::try_parse_from(["udht-node", "--manager", "[::1]:4000"]).unwrap();
        assert_eq!(cli.manager_addr().unwrap(), "[::1]:4000".parse().unwrap());
        let err = Cli::try_parse_from(["udht-node", "--manager", "localhost"]).unwrap_err().to_string();
        assert!(err.contains("HOST:PORT"), "{err}");
    }

    #[test]
    fn bad_values_are_refused_with_a_reason() {
        assert!(Cli::try_parse_from(["udht-node", "--bootstrap", "not-a-multiaddr"]).is_err());
        assert!(duration("10").is_ok());
        assert!(duration("0s").is_err());
        assert!(duration("3x").unwrap_err().contains("unit"));
        assert_eq!(named_port("userSync=3003").unwrap(), ("userSync".to_string(), 3003));
        assert!(named_port("userSync").is_err());
    }
}
