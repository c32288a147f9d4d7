//! The canned-reply server: the loopback limit of this machine and runtime.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Result;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// The loopback limit: answers each complete JSON object it receives with the same bytes, without
/// parsing it (objects are found by tracking `{`/`}` depth outside strings).
pub async fn canned_server(reply: Arc<Vec<u8>>) -> Result<SocketAddr> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                tokio::time::sleep(Duration::from_millis(10)).await;
                continue;
            };
            let reply = reply.clone();
            tokio::spawn(async move {
                let _ = canned_connection(stream, &reply).await;
            });
        }
    });
    Ok(addr)
}

async fn canned_connection(mut stream: TcpStream, reply: &[u8]) -> std::io::Result<()> {
    stream.set_nodelay(true)?;
    let mut buf = vec![0u8; 8192];
    let mut out = Vec::with_capacity(4096);
    let (mut depth, mut in_str, mut escaped) = (0u32, false, false);
    loop {
        let n = stream.read(&mut buf).await?;
        if n == 0 {
            return Ok(());
        }
        for &b in &buf[..n] {
            if in_str {
                match (escaped, b) {
                    (true, _) => escaped = false,
                    (false, b'\\') => escaped = true,
                    (false, b'"') => in_str = false,
                    _ => {}
                }
                continue;
            }
            match b {
                b'"' => in_str = true,
                b'{' => depth += 1,
                b'}' => {
                    depth = depth.saturating_sub(1);
                    if depth == 0 {
                        out.extend_from_slice(reply);
                    }
                }
                _ => {}
            }
        }
        if !out.is_empty() {
            stream.write_all(&out).await?;
            out.clear();
        }
    }
}
