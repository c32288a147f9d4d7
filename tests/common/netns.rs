//! A small internet made of Linux network namespaces, for the NAT tests (`tests/nat.rs`).
//!
//! Layout (every namespace is named `udht<pid>n<k>-<role>`, so parallel runs never collide):
//!
//! ```text
//!   pub1 198.18.0.11   pub2 .12   pub3 .13   pub4 .14          public nodes (198.18.0.0/15)
//!        \               |          |          /
//!         +------------ br0 in `wan` ---------+
//!        /               |                     \
//!   r1 198.18.1.1      r2 198.18.1.2        r3 198.18.1.3     home routers (wan side)
//!   MASQUERADE         MASQUERADE           MASQUERADE --random-fully
//!   lan 10.1.0.1/24    lan 10.2.0.1/24      lan 10.3.0.1/24
//!      |                  |                    |
//!   home1 10.1.0.2     home2 10.2.0.2       home3 10.3.0.2    home nodes
//! ```
//!
//! Routers forward only LAN -> WAN and the replies (FORWARD policy DROP, conntrack
//! ESTABLISHED,RELATED accepted), and drop what comes unasked to themselves from the wan: nothing
//! reaches a home node unless it spoke first, as behind a real home router. r1 and r2 keep the source port where they can (endpoint-independent
//! mapping: hole punching works); r3 picks a random port per flow (a symmetric NAT: it does not).
//!
//! Namespaces are deleted when the [`Internet`] is dropped (also on a panic); those left by a
//! killed run (a `udht<pid>` prefix whose process is gone) are deleted when the next one builds.
//! Where namespaces cannot be made (not root, no `ip`, no iptables), [`Internet::build_or_skip`]
//! prints why and gives `None`: the tests then return without failing.
//!
//! The test process reaches sockets inside a namespace through [`in_ns`]: a fresh thread enters
//! the namespace (setns(2)), makes the socket, and ends; the socket stays in the namespace and
//! works from any thread. This is how the manager sockets of the nodes (loopback inside their
//! namespaces) are reached.

use std::fs::File;
use std::io;
use std::net::{Ipv4Addr, SocketAddr};
use std::os::fd::AsRawFd;
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::OnceLock;
use std::time::Duration;

/// Every namespace of this harness starts with this prefix, then the pid of the test process.
pub const PREFIX: &str = "udht";
/// How many public namespaces the internet has (two bootstrap nodes, one more public node,
/// and one for fresh nodes checking addresses).
pub const PUBLIC: usize = 4;
/// How many home routers (each with one home node).
pub const HOMES: usize = 3;
/// The prefix length of the public segment (198.18.0.0/15, the benchmarking range).
const PUBLIC_PREFIX: u8 = 15;

/// How a home router translates addresses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Nat {
    /// `MASQUERADE`: keeps the source port when free, one mapping per local socket.
    PortPreserving,
    /// `MASQUERADE --random-fully`: a random port for every new flow.
    Symmetric,
}

/// One namespace with one address that matters.
#[derive(Debug, Clone)]
pub struct Host {
    pub ns: String,
    pub ip: Ipv4Addr,
}

/// A home: the router (its public address) and the one node behind it.
#[derive(Debug, Clone)]
pub struct Home {
    pub router: Host,
    pub node: Host,
    pub nat: Nat,
}

/// The namespaces of one run; deletes them when dropped.
pub struct Internet {
    pub wan: String,
    pub public: Vec<Host>,
    pub homes: Vec<Home>,
    /// Every namespace made, in creation order.
    made: Vec<String>,
}

/// A counter per process, so two internets of one test process never share a name.
static NEXT: AtomicUsize = AtomicUsize::new(0);

impl Internet {
    /// Builds the internet, or prints a skip line for `test` and gives `None` when network
    /// namespaces are not available here. A failure after namespaces proved available fails the
    /// test (that is a harness bug, not a missing feature).
    pub fn build_or_skip(test: &str) -> Option<Internet> {
        if let Err(why) = available() {
            println!("SKIP {test}: network namespaces not available ({why})");
            return None;
        }
        Some(Internet::build().unwrap_or_else(|e| panic!("building the namespace network: {e}")))
    }

    fn build() -> Result<Internet, String> {
        remove_stale();
        let id = format!("{PREFIX}{}n{}", std::process::id(), NEXT.fetch_add(1, Ordering::Relaxed));
        let mut net =
            Internet { wan: format!("{id}-wan"), public: Vec::new(), homes: Vec::new(), made: Vec::new() };
        net.add_ns(&net.wan.clone())?;
        ip(&["-n", &net.wan, "link", "add", "br0", "type", "bridge"])?;
        ip(&["-n", &net.wan, "link", "set", "br0", "up"])?;
        for k in 1..=PUBLIC {
            let host = Host { ns: format!("{id}-pub{k}"), ip: Ipv4Addr::new(198, 18, 0, 10 + k as u8) };
            net.add_ns(&host.ns)?;
            net.plug_into_wan(&host.ns, "eth0", &format!("vpub{k}"), host.ip)?;
            net.public.push(host);
        }
        for k in 1..=HOMES {
            let nat = if k == HOMES { Nat::Symmetric } else { Nat::PortPreserving };
            let home = net.add_home(&id, k as u8, nat)?;
            net.homes.push(home);
        }
        Ok(net)
    }

    fn add_ns(&mut self, ns: &str) -> Result<(), String> {
        ip(&["netns", "add", ns])?;
        self.made.push(ns.to_owned());
        ip(&["-n", ns, "link", "set", "lo", "up"])
    }

    /// A veth from `ns` (named `inner`) to the wan bridge (port `outer`), with `addr` on it.
    fn plug_into_wan(&self, ns: &str, inner: &str, outer: &str, addr: Ipv4Addr) -> Result<(), String> {
        veth(ns, inner, &self.wan, outer)?;
        ip(&["-n", &self.wan, "link", "set", outer, "master", "br0"])?;
        ip(&["-n", ns, "addr", "add", &format!("{addr}/{PUBLIC_PREFIX}"), "dev", inner])
    }

    /// Router `r<k>` (198.18.1.k on the wan, 10.k.0.1 on its LAN) and `home<k>` (10.k.0.2).
    fn add_home(&mut self, id: &str, k: u8, nat: Nat) -> Result<Home, String> {
        let router = Host { ns: format!("{id}-r{k}"), ip: Ipv4Addr::new(198, 18, 1, k) };
        let node = Host { ns: format!("{id}-home{k}"), ip: Ipv4Addr::new(10, k, 0, 2) };
        let gateway = Ipv4Addr::new(10, k, 0, 1);
        self.add_ns(&router.ns)?;
        self.add_ns(&node.ns)?;
        self.plug_into_wan(&router.ns, "wan", &format!("vr{k}"), router.ip)?;
        veth(&router.ns, "lan", &node.ns, "eth0")?;
        ip(&["-n", &router.ns, "addr", "add", &format!("{gateway}/24"), "dev", "lan"])?;
        ip(&["-n", &node.ns, "addr", "add", &format!("{}/24", node.ip), "dev", "eth0"])?;
        ip(&["-n", &node.ns, "route", "add", "default", "via", &gateway.to_string()])?;
        router_rules(&router.ns, nat)?;
        Ok(Home { router, node, nat })
    }

    /// Makes a router forget every flow it tracks, as after its timeouts or a power cut: until
    /// the home node speaks again, nothing from outside reaches it, not even through the mappings
    /// of its earlier connections. Needs the `conntrack` tool (.ci/run installs it).
    pub fn forget_flows(&self, router_ns: &str) -> Result<(), String> {
        exec(router_ns, &["conntrack", "-F"])
    }

    /// The connection tracking table of a namespace: on a router, every flow it translates, with
    /// `[ASSURED]` once replies came back. One flow per line, as `/proc/net/nf_conntrack` shows
    /// them (or `conntrack -L` where the kernel has no such file: the same without the leading
    /// `ipv4 2`).
    pub fn conntrack(&self, ns: &str) -> String {
        run("ip", &["netns", "exec", ns, "cat", "/proc/net/nf_conntrack"])
            .or_else(|_| run("ip", &["netns", "exec", ns, "conntrack", "-L"]))
            .unwrap_or_default()
    }
}

impl Drop for Internet {
    fn drop(&mut self) {
        for ns in self.made.iter().rev() {
            if let Err(e) = ip(&["netns", "del", ns]) {
                eprintln!("netns: could not delete {ns}: {e}");
            }
        }
    }
}

/// A router's forwarding, NAT and filter: forwarding on (checked), LAN -> WAN and replies only.
fn router_rules(ns: &str, nat: Nat) -> Result<(), String> {
    // Through /proc (per namespace), not sysctl(8): procps may be missing from a small image.
    exec(ns, &["sh", "-c", "echo 1 > /proc/sys/net/ipv4/ip_forward"])?;
    let forward = run("ip", &["netns", "exec", ns, "cat", "/proc/sys/net/ipv4/ip_forward"])?;
    if forward.trim() != "1" {
        return Err(format!("net.ipv4.ip_forward is {forward:?} in {ns} after setting it"));
    }
    let ipt = iptables()?;
    let mut masquerade = vec![ipt, "-t", "nat", "-A", "POSTROUTING", "-o", "wan", "-j", "MASQUERADE"];
    if nat == Nat::Symmetric {
        masquerade.push("--random-fully");
    }
    exec(ns, &masquerade)?;
    // Like a home router, it ignores whatever comes unasked to itself on the wan side. (Also
    // what lets hole punching keep ports: a packet answered or even just tracked here would hold
    // the very port pair the LAN node is about to use, and the NAT would pick another port.)
    exec(
        ns,
        &[
            ipt,
            "-A",
            "INPUT",
            "-i",
            "wan",
            "-m",
            "conntrack",
            "--ctstate",
            "ESTABLISHED,RELATED",
            "-j",
            "ACCEPT",
        ],
    )?;
    exec(ns, &[ipt, "-A", "INPUT", "-i", "wan", "-j", "DROP"])?;
    exec(ns, &[ipt, "-P", "FORWARD", "DROP"])?;
    exec(ns, &[ipt, "-A", "FORWARD", "-i", "lan", "-o", "wan", "-j", "ACCEPT"])?;
    exec(ns, &[ipt, "-A", "FORWARD", "-m", "conntrack", "--ctstate", "ESTABLISHED,RELATED", "-j", "ACCEPT"])
}

/// A veth pair between two namespaces, both ends up.
fn veth(ns_a: &str, a: &str, ns_b: &str, b: &str) -> Result<(), String> {
    ip(&["link", "add", a, "netns", ns_a, "type", "veth", "peer", "name", b, "netns", ns_b])?;
    ip(&["-n", ns_a, "link", "set", a, "up"])?;
    ip(&["-n", ns_b, "link", "set", b, "up"])
}

fn ip(args: &[&str]) -> Result<(), String> {
    run("ip", args).map(drop)
}

/// Runs `args` inside `ns`.
fn exec(ns: &str, args: &[&str]) -> Result<(), String> {
    let mut all = vec!["netns", "exec", ns];
    all.extend_from_slice(args);
    ip(&all)
}

/// Runs a command; its stdout, or an error naming the command and its stderr.
fn run(program: &str, args: &[&str]) -> Result<String, String> {
    let out = Command::new(program)
        .args(args)
        .output()
        .map_err(|e| format!("`{program} {}`: {e}", args.join(" ")))?;
    if !out.status.success() {
        let err = String::from_utf8_lossy(&out.stderr);
        return Err(format!("`{program} {}` failed ({}): {}", args.join(" "), out.status, err.trim()));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Whether this machine lets us make namespaces with NAT in them: root, `ip netns add` works,
/// and an iptables that works inside a namespace. Checked once per process.
pub fn available() -> Result<(), String> {
    static CHECKED: OnceLock<Result<(), String>> = OnceLock::new();
    CHECKED
        .get_or_init(|| {
            if unsafe { libc::geteuid() } != 0 {
                return Err("not root".into());
            }
            iptables().map(drop)
        })
        .clone()
}

/// The iptables command that works inside a fresh namespace: `iptables` (nft or legacy, as the
/// system chose), else `iptables-legacy` (when the nft backend is missing from the kernel).
fn iptables() -> Result<&'static str, String> {
    static FOUND: OnceLock<Result<&'static str, String>> = OnceLock::new();
    FOUND
        .get_or_init(|| {
            let probe = format!("{PREFIX}{}probe", std::process::id());
            ip(&["netns", "add", &probe])?;
            let mut errors = Vec::new();
            let mut found = None;
            for candidate in ["iptables", "iptables-legacy"] {
                match exec(
                    &probe,
                    &[candidate, "-t", "nat", "-A", "POSTROUTING", "-j", "MASQUERADE", "--random-fully"],
                ) {
                    Ok(()) => {
                        found = Some(candidate);
                        break;
                    }
                    Err(e) => errors.push(e),
                }
            }
            let _ = ip(&["netns", "del", &probe]);
            found.ok_or_else(|| format!("no working iptables in a namespace: {}", errors.join("; ")))
        })
        .clone()
}

/// Deletes namespaces of this harness whose test process is gone (a run that was killed), after
/// killing the nodes that run was running in them (they outlive it: nothing else would stop
/// them).
fn remove_stale() {
    let Ok(list) = run("ip", &["netns", "list"]) else { return };
    for name in list.lines().filter_map(|l| l.split_whitespace().next()) {
        let Some(rest) = name.strip_prefix(PREFIX) else { continue };
        let digits: String = rest.chars().take_while(|c| c.is_ascii_digit()).collect();
        let Ok(pid) = digits.parse::<u32>() else { continue };
        if pid != std::process::id() && !std::path::Path::new(&format!("/proc/{pid}")).exists() {
            let pids = run("ip", &["netns", "pids", name]).unwrap_or_default();
            for left in pids.split_whitespace().filter_map(|p| p.parse::<i32>().ok()) {
                unsafe { libc::kill(left, libc::SIGKILL) };
            }
            let _ = ip(&["netns", "del", name]);
        }
    }
}

/// Runs `f` on a fresh thread inside namespace `ns` and gives its result. Sockets it makes stay
/// in that namespace. (A fresh thread, not a pooled one, so no thread of the test process is
/// left in another namespace.)
pub async fn in_ns<T: Send + 'static>(
    ns: &str,
    f: impl FnOnce() -> io::Result<T> + Send + 'static,
) -> io::Result<T> {
    let path = format!("/var/run/netns/{ns}");
    let (tx, rx) = tokio::sync::oneshot::channel();
    std::thread::spawn(move || {
        let _ = tx.send(enter(&path).and_then(|()| f()));
    });
    rx.await.map_err(|_| io::Error::other(format!("the thread in {ns} panicked")))?
}

fn enter(path: &str) -> io::Result<()> {
    let file = File::open(path)?;
    if unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// A TCP connection made from inside `ns` (e.g. to a manager socket on its loopback).
pub async fn connect(ns: &str, addr: SocketAddr, within: Duration) -> io::Result<tokio::net::TcpStream> {
    let stream = in_ns(ns, move || {
        let s = std::net::TcpStream::connect_timeout(&addr, within)?;
        s.set_nonblocking(true)?;
        Ok(s)
    })
    .await?;
    tokio::net::TcpStream::from_std(stream)
}
