//! Real `udht-node` processes for tests: spawn on free loopback ports, wait until the manager
//! socket answers, talk to it, SIGKILL or SIGTERM it.
//!
//! Included as `common::process` (`mod common;`); [`NodeProcess::start`] is the one process starter.
//! [`NodeProcess::start_in`] starts one inside a network namespace of [`super::netns`] (through
//! `ip netns exec`, which execs the node: the child is the node itself, signals reach it).

use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::time::Duration;

use serde_json::{json, Value};
use udht::manager::client::{Client, ClientError};

/// How long a node process may take to start answering.
const START_TIMEOUT: Duration = Duration::from_secs(30);
/// Tries to start a node on fresh ports before giving up.
const START_ATTEMPTS: usize = 3;
/// Timeout of one manager request from a test.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// A loopback port that was free a moment ago.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// A node's command line: its data dir, its manager and listen addresses on loopback, `extra`.
fn node_args(data_dir: &Path, manager: SocketAddr, p2p_port: u16, extra: &[String]) -> Vec<String> {
    let mut args = vec![
        "--data-dir".to_string(),
        data_dir.display().to_string(),
        "--manager".into(),
        manager.to_string(),
        "--listen".into(),
        format!("/ip4/127.0.0.1/tcp/{p2p_port}"),
    ];
    args.extend(extra.iter().cloned());
    args
}

/// The nodes' `RUST_LOG`: `info`, or `UDHT_TEST_RUST_LOG` when set (to debug a test).
fn log_filter() -> String {
    std::env::var("UDHT_TEST_RUST_LOG").unwrap_or_else(|_| "info".into())
}

/// How a node process that never answered ended.
#[derive(Debug)]
pub struct Exited {
    /// `None`: it was still running at the deadline (then killed).
    pub status: Option<ExitStatus>,
    /// Its stderr.
    pub log: String,
}

/// The p2p port of a node started in a namespace (the default `--listen` addresses').
pub const NETNS_P2P_PORT: u16 = 4001;
/// The manager socket of a node started in a namespace (loopback inside the namespace).
pub const NETNS_MANAGER: &str = "127.0.0.1:3002";

/// `udht-node`, run inside network namespace `netns` when given. `UDHT_TEST_NODE_BIN` names
/// another binary to run instead (e.g. a release build, or another revision to compare with).
fn node_command(netns: Option<&str>) -> Command {
    let bin = std::env::var("UDHT_TEST_NODE_BIN").unwrap_or_else(|_| env!("CARGO_BIN_EXE_udht-node").into());
    match netns {
        None => Command::new(bin),
        Some(ns) => {
            let mut c = Command::new("ip");
            c.args(["netns", "exec", ns, &bin]);
            c
        }
    }
}

/// Runs `udht-node args` to its end (killed after `within`), capturing its output: for
/// subcommands and for starts that must be refused.
pub fn run_to_exit(args: &[String], within: Duration) -> Output {
    run_to_exit_in(None, args, within)
}

/// [`run_to_exit`] inside network namespace `netns` when given.
pub fn run_to_exit_in(netns: Option<&str>, args: &[String], within: Duration) -> Output {
    let mut child = node_command(netns)
        .args(args)
        .env("RUST_LOG", "info")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawning udht-node");
    let deadline = std::time::Instant::now() + within;
    while child.try_wait().unwrap().is_none() && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
    let _ = child.kill();
    child.wait_with_output().unwrap()
}

/// Each node's root digest, in order (equal digests: equal tables).
pub async fn digests(nodes: &[&NodeProcess]) -> Vec<Value> {
    let mut out = Vec::new();
    for n in nodes {
        out.push(n.status().await["digest"].clone());
    }
    out
}

pub struct NodeProcess {
    child: Child,
    pub manager: SocketAddr,
    pub p2p_port: u16,
    pub data_dir: PathBuf,
    /// Where its stderr (the log) goes: `node.log` in the data dir unless given.
    log_file: PathBuf,
    args: Vec<String>,
    /// Extra environment of the process (e.g. libfaketime's), kept for restarts.
    env: Vec<(String, String)>,
    /// The network namespace it runs in (`None`: the test's own).
    netns: Option<String>,
}

impl NodeProcess {
    /// Starts `udht-node` on free ports with `data_dir`, plus `extra` flags; waits until it answers.
    pub async fn start(data_dir: &Path, extra: &[String]) -> NodeProcess {
        Self::start_full(data_dir, &data_dir.join("node.log"), extra, &[]).await
    }

    /// [`NodeProcess::start`] with the log in `log_file` (e.g. when the data dir is a small disk
    /// the test fills).
    pub async fn start_logging_to(data_dir: &Path, log_file: &Path, extra: &[String]) -> NodeProcess {
        Self::start_full(data_dir, log_file, extra, &[]).await
    }

    /// [`NodeProcess::start`] with extra environment variables for the process.
    pub async fn start_with_env(data_dir: &Path, extra: &[String], env: &[(String, String)]) -> NodeProcess {
        Self::start_full(data_dir, &data_dir.join("node.log"), extra, env).await
    }

    async fn start_full(
        data_dir: &Path,
        log_file: &Path,
        extra: &[String],
        env: &[(String, String)],
    ) -> NodeProcess {
        // A port found free may be taken before the node binds it: then the node exits at
        // start-up, and it is tried again on other ports.
        let mut failures = Vec::new();
        for _ in 0..START_ATTEMPTS {
            let manager: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
            let p2p_port = free_port();
            let args = node_args(data_dir, manager, p2p_port, extra);
            let launch = Launch { manager, p2p_port, args, env: env.to_vec(), netns: None };
            match Self::spawn_with(data_dir, log_file, launch).await {
                Ok(node) => return node,
                Err(e) => failures.push(e),
            }
        }
        panic!("udht-node did not start: {failures:#?}");
    }

    /// One try at starting `udht-node` (no retry on other ports): the node once it answers within
    /// `within`, or how it ended.
    pub async fn start_once(
        data_dir: &Path,
        extra: &[String],
        within: Duration,
    ) -> Result<NodeProcess, Exited> {
        let manager: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
        let p2p_port = free_port();
        let args = node_args(data_dir, manager, p2p_port, extra);
        let log_file = data_dir.join("node.log");
        let launch = Launch { manager, p2p_port, args, env: Vec::new(), netns: None };
        let mut node = Self::spawn(data_dir, &log_file, launch);
        match node.wait_ready(within).await {
            Ok(()) => Ok(node),
            Err(_) => {
                let status = node.child.try_wait().unwrap();
                Err(Exited { status, log: node.log() })
            }
        }
    }

    /// Starts `udht-node` inside network namespace `ns` with `data_dir`, its manager socket on
    /// [`NETNS_MANAGER`] and the default p2p listen addresses (port [`NETNS_P2P_PORT`]: the
    /// namespace is the node's own, every port is free), plus `extra`; waits until it answers.
    pub async fn start_in(ns: &str, data_dir: &Path, extra: &[String]) -> NodeProcess {
        Self::try_start_in(ns, data_dir, extra).await.unwrap_or_else(|e| panic!("{e}"))
    }

    /// [`NodeProcess::start_in`], giving why it did not start instead of failing the test.
    pub async fn try_start_in(ns: &str, data_dir: &Path, extra: &[String]) -> Result<NodeProcess, String> {
        let manager: SocketAddr = NETNS_MANAGER.parse().unwrap();
        let mut args = vec!["--data-dir".to_string(), data_dir.display().to_string()];
        args.extend(["--manager".to_string(), manager.to_string()]);
        args.extend(extra.iter().cloned());
        let launch =
            Launch { manager, p2p_port: NETNS_P2P_PORT, args, env: Vec::new(), netns: Some(ns.to_owned()) };
        Self::spawn_with(data_dir, &data_dir.join("node.log"), launch)
            .await
            .map_err(|e| format!("udht-node in {ns} did not start: {e}"))
    }

    fn spawn(data_dir: &Path, log_file: &Path, launch: Launch) -> NodeProcess {
        let Launch { manager, p2p_port, args, env, netns } = launch;
        std::fs::create_dir_all(data_dir).unwrap();
        let log = std::fs::OpenOptions::new().create(true).append(true).open(log_file).unwrap();
        let child = node_command(netns.as_deref())
            .args(&args)
            .env("RUST_LOG", log_filter())
            .envs(env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("spawning udht-node");
        let (data_dir, log_file) = (data_dir.to_owned(), log_file.to_owned());
        NodeProcess { child, manager, p2p_port, data_dir, log_file, args, env, netns }
    }

    async fn spawn_with(data_dir: &Path, log_file: &Path, launch: Launch) -> Result<NodeProcess, String> {
        let mut node = Self::spawn(data_dir, log_file, launch);
        node.wait_ready(START_TIMEOUT).await?;
        Ok(node)
    }

    /// Starts the same node again (same data dir, ports and flags) after it stopped.
    pub async fn restart(self) -> NodeProcess {
        let NodeProcess { manager, p2p_port, data_dir, log_file, args, env, netns, .. } = &self;
        let launch = Launch {
            manager: *manager,
            p2p_port: *p2p_port,
            args: args.clone(),
            env: env.clone(),
            netns: netns.clone(),
        };
        let (data_dir, log_file) = (data_dir.clone(), log_file.clone());
        drop(self);
        Self::spawn_with(&data_dir, &log_file, launch).await.unwrap_or_else(|e| panic!("{e}"))
    }

    /// Waits until this node (not another one on the same port: the peer id must be the one of
    /// its own data dir) answers on its manager socket.
    async fn wait_ready(&mut self, within: Duration) -> Result<(), String> {
        let what = format!("udht-node to answer on {}", self.manager);
        // `Some(Err)`: the process exited, no use waiting.
        let ready = super::try_eventually(what, within, async || {
            if let Some(status) = self.child.try_wait().unwrap() {
                return Some(Err(format!("udht-node exited early ({status})")));
            }
            let own = std::fs::read(self.data_dir.join("identity.key"))
                .ok()
                .and_then(|k| udht::net::decode_identity(&k).ok())
                .map(|k| k.public().to_peer_id().to_string())?;
            let mut c = self.client(Duration::from_secs(1)).await.ok()?;
            let r = c.request(&json!({"message_type": 9})).await.ok()?;
            (r["result"] == "completed" && r["data"]["peer_id"] == own.as_str()).then_some(Ok(()))
        })
        .await;
        ready.and_then(|r| r).map_err(|e| format!("{e}; log: {}", self.log()))
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log_file).unwrap_or_default()
    }

    /// A fresh connection to its manager socket (from inside its namespace, if it has one).
    pub async fn client(&self, timeout: Duration) -> Result<Client, ClientError> {
        let Some(ns) = &self.netns else { return Client::connect(self.manager, timeout).await };
        let stream = super::netns::connect(ns, self.manager, timeout)
            .await
            .map_err(|source| ClientError::Connect { addr: self.manager, source })?;
        Client::from_stream(stream, timeout)
    }

    /// One request on a fresh connection.
    pub async fn request(&self, request: Value) -> Value {
        let mut c = self.client(REQUEST_TIMEOUT).await.unwrap();
        c.request(&request).await.unwrap()
    }

    pub async fn status(&self) -> Value {
        self.request(json!({"message_type": 9})).await["data"].clone()
    }

    /// The peer ids the node's status lists as connected.
    pub async fn connected_peers(&self) -> Vec<String> {
        let status = self.status().await;
        let peers = status["connected_peers"].as_array().cloned().unwrap_or_default();
        peers.iter().filter_map(|p| p.as_str().map(str::to_owned)).collect()
    }

    /// The CPU time (user and system) the process has used so far.
    pub fn cpu_time(&self) -> Duration {
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", self.child.id())).unwrap_or_default();
        // Fields 14 and 15 (utime, stime), counted after the command name's closing parenthesis.
        let after = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
        let ticks: u64 =
            after.split_whitespace().skip(11).take(2).filter_map(|t| t.parse::<u64>().ok()).sum();
        let per_second = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as u64;
        Duration::from_millis(ticks * 1000 / per_second)
    }

    /// Whether the process has not exited.
    pub fn is_running(&mut self) -> bool {
        self.child.try_wait().unwrap().is_none()
    }

    /// SIGKILL: no chance to flush anything.
    pub fn kill9(&mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }

    /// SIGSTOP: the process stays, its sockets stay open, nothing of it runs until [`NodeProcess::resume`].
    pub fn pause(&mut self) {
        assert_eq!(unsafe { libc::kill(self.child.id() as i32, libc::SIGSTOP) }, 0, "SIGSTOP");
    }

    /// SIGCONT after [`NodeProcess::pause`].
    pub fn resume(&mut self) {
        assert_eq!(unsafe { libc::kill(self.child.id() as i32, libc::SIGCONT) }, 0, "SIGCONT");
    }

    /// The node records' liveness as this node sees them (message_type 10), by peer id.
    pub async fn members(&self) -> Vec<Value> {
        let reply = self.request(json!({"message_type": 10})).await;
        assert_eq!(reply["result"], "completed", "{reply}");
        reply["data"].as_array().cloned().unwrap_or_default()
    }

    /// SIGTERM, then wait for a clean exit.
    pub fn terminate(&mut self) -> std::process::ExitStatus {
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        self.child.wait().unwrap()
    }
}

/// How to launch a node process (kept for restarts).
struct Launch {
    manager: SocketAddr,
    p2p_port: u16,
    args: Vec<String>,
    env: Vec<(String, String)>,
    netns: Option<String>,
}

impl Drop for NodeProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
