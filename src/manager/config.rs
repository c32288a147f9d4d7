//! Limits of the manager socket.

use std::time::Duration;

/// Requests larger than this get an error and the connection is closed.
pub const DEFAULT_MAX_REQUEST_BYTES: usize = 64 * 1024;
/// Clients served at once; more are told so and closed, so file descriptors stay bounded.
pub const DEFAULT_MAX_CLIENTS: usize = 1024;
/// A client silent this long between requests is closed, freeing its slot.
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(300);
/// A request must arrive whole within this time of its first byte (no slow-loris).
pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// A client that does not read its replies for this long is closed.
pub const DEFAULT_WRITE_TIMEOUT: Duration = Duration::from_secs(30);

/// Limits of the manager socket.
#[derive(Debug, Clone, Copy)]
pub struct ManagerConfig {
    pub max_request_bytes: usize,
    pub max_clients: usize,
    pub idle_timeout: Duration,
    pub request_timeout: Duration,
    pub write_timeout: Duration,
}

impl Default for ManagerConfig {
    fn default() -> Self {
        ManagerConfig {
            max_request_bytes: DEFAULT_MAX_REQUEST_BYTES,
            max_clients: DEFAULT_MAX_CLIENTS,
            idle_timeout: DEFAULT_IDLE_TIMEOUT,
            request_timeout: DEFAULT_REQUEST_TIMEOUT,
            write_timeout: DEFAULT_WRITE_TIMEOUT,
        }
    }
}
