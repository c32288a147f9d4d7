//! The status page in a real browser: headless Chromium, driven over the DevTools protocol, loads
//! the page, shows the node's peer id, and shows a record added through the manager socket
//! without a reload. A screenshot is saved to `target/status-page.png` (a CI artifact).
//! `.ci/run` installs Chromium; where it is missing the test says so and passes only outside CI.

mod common;

use std::io::{BufRead, BufReader};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use base64::Engine as _;
use common::{http_get, start_node_with, Conn};
use serde_json::{json, Value};
use tungstenite::stream::MaybeTlsStream;
use tungstenite::{Message, WebSocket};

const WAIT: Duration = Duration::from_secs(20);

fn chromium() -> Option<PathBuf> {
    ["chromium", "chromium-browser", "google-chrome"].iter().find_map(|name| {
        std::env::split_paths(&std::env::var_os("PATH")?).map(|d| d.join(name)).find(|p| p.is_file())
    })
}

/// A headless browser, killed on drop.
struct Browser {
    child: Child,
    _profile: tempfile::TempDir,
    devtools: std::net::SocketAddr,
}

impl Browser {
    fn launch(binary: &PathBuf, url: &str) -> Browser {
        let profile = tempfile::tempdir().unwrap();
        let mut child = Command::new(binary)
            .args([
                "--headless=new",
                "--no-sandbox",
                "--disable-gpu",
                "--no-first-run",
                "--disable-extensions",
            ])
            .args([
                "--remote-debugging-address=127.0.0.1",
                "--remote-debugging-port=0",
                "--window-size=1200,900",
            ])
            .arg(format!("--user-data-dir={}", profile.path().display()))
            .arg(url)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("starting chromium");
        // Chromium says where DevTools listens: "DevTools listening on ws://127.0.0.1:PORT/...".
        let stderr = BufReader::new(child.stderr.take().unwrap());
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in stderr.lines().map_while(Result::ok) {
                if let Some(rest) = line.split("ws://").nth(1) {
                    let _ = tx.send(rest.split('/').next().unwrap_or("").to_owned());
                }
            }
        });
        let devtools = rx.recv_timeout(WAIT).expect("chromium's DevTools address").parse().unwrap();
        Browser { child, _profile: profile, devtools }
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A DevTools session with the page: `call` sends a command and waits for its answer.
struct Page {
    ws: WebSocket<MaybeTlsStream<TcpStream>>,
    next_id: u64,
}

impl Page {
    fn call(&mut self, method: &str, params: Value) -> Value {
        self.next_id += 1;
        let id = self.next_id;
        let msg = json!({"id": id, "method": method, "params": params}).to_string();
        self.ws.send(Message::text(msg)).expect("sending to DevTools");
        loop {
            let Message::Text(text) = self.ws.read().expect("reading from DevTools") else { continue };
            let v: Value = serde_json::from_str(&text).unwrap();
            if v["id"] == id {
                assert!(v.get("error").is_none(), "{method}: {v}");
                return v["result"].clone();
            }
        }
    }

    /// Evaluates a JavaScript expression in the page and returns its value.
    fn eval(&mut self, expression: &str) -> Value {
        let r = self.call("Runtime.evaluate", json!({"expression": expression, "returnByValue": true}));
        r["result"]["value"].clone()
    }

    /// Polls `expression` until it returns `want`.
    fn wait_for(&mut self, what: &str, expression: &str, want: &Value) {
        let deadline = Instant::now() + WAIT;
        loop {
            let got = self.eval(expression);
            if &got == want {
                return;
            }
            assert!(Instant::now() < deadline, "timed out waiting for {what}: last {got}");
            std::thread::sleep(Duration::from_millis(200));
        }
    }
}

#[tokio::test]
async fn the_status_page_shows_the_node_and_new_records_without_a_reload() {
    let Some(binary) = chromium() else {
        assert!(std::env::var_os("CI").is_none(), "CI must have chromium (.ci/run installs it)");
        eprintln!("skipped: no chromium on PATH (apt-get install chromium)");
        return;
    };
    let (node, _dir) = start_node_with(|c| c.metrics_addr = Some("127.0.0.1:0".parse().unwrap())).await;
    let web = node.metrics_addr.unwrap();
    let browser = Browser::launch(&binary, &format!("http://{web}/"));

    // The page's DevTools websocket, from the browser's target list.
    let (_, list) = http_get(browser.devtools, "/json/list").await;
    let targets: Vec<Value> = serde_json::from_str(&list).unwrap();
    let page_ws = targets
        .iter()
        .find(|t| t["type"] == "page" && t["url"].as_str().is_some_and(|u| u.contains(&web.to_string())))
        .and_then(|t| t["webSocketDebuggerUrl"].as_str())
        .unwrap_or_else(|| panic!("no page target in {list}"))
        .to_owned();
    let peer_id = node.peer_id.clone();
    let mut page = tokio::task::spawn_blocking(move || {
        let (ws, _) = tungstenite::connect(&page_ws).expect("connecting to the page's DevTools");
        let mut page = Page { ws, next_id: 0 };
        page.wait_for(
            "the peer id on the page",
            "document.getElementById('peer-id').textContent",
            &json!(peer_id),
        );
        page
    })
    .await
    .unwrap();

    // A record added through the manager socket appears without a reload.
    let add = json!({"message_type": 3, "data": {"peer_id": "QmFromTheManager", "name": "seen-in-browser", "ip": "198.18.0.7", "port": "5"}});
    let reply = Conn::connect(node.manager_addr).await.request_json(add.to_string().as_bytes()).await;
    assert_eq!(reply["result"], "completed", "{reply}");
    let page = tokio::task::spawn_blocking(move || {
        let loaded_at = page.eval("performance.timeOrigin");
        page.wait_for(
            "the new record in the table",
            "!!document.querySelector('tr[data-key=\"QmFromTheManager\"]')",
            &json!(true),
        );
        assert_eq!(page.eval("performance.timeOrigin"), loaded_at, "the page was not reloaded");
        let shot = page.call("Page.captureScreenshot", json!({"format": "png"}));
        let png = base64::engine::general_purpose::STANDARD.decode(shot["data"].as_str().unwrap()).unwrap();
        let path = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).parent().unwrap().join("status-page.png");
        std::fs::write(&path, png).unwrap();
        println!("screenshot saved to {}", path.display());
        page
    })
    .await
    .unwrap();
    drop(page);
    drop(browser);
    node.shutdown().await.unwrap();
}
