//! The connection settings `serve` hands to hyper, with the defaults a server on the internet
//! needs: a timer, so that a client that never finishes its request head is closed.

use std::time::Duration;

use hyper_util::rt::{TokioExecutor, TokioTimer};
use hyper_util::server::conn::auto;

/// How long connections get to close after the grace period, by default.
const DEFAULT_CLOSE_WITHIN: Duration = Duration::from_secs(1);
/// How long a client may take to send a request head, by default: hyper's own default once
/// it has a timer.
const DEFAULT_HEADER_READ_TIMEOUT: Duration = Duration::from_secs(30);
/// How long HTTP/2 keep-alive pings wait for their answer, by default: hyper's.
const DEFAULT_HTTP2_KEEP_ALIVE_TIMEOUT: Duration = Duration::from_secs(20);

/// What [`Serve`](super::Serve)'s setters configure.
#[derive(Debug, Clone)]
pub(crate) struct Settings {
    pub(crate) close_listener_when_draining: bool,
    pub(crate) close_listener_on_signal: bool,
    pub(crate) close_within: Duration,
    pub(crate) header_read_timeout: Option<Duration>,
    pub(crate) http1_keep_alive: bool,
    pub(crate) http2_max_concurrent_streams: Option<u32>,
    pub(crate) http2_keep_alive_interval: Option<Duration>,
    pub(crate) http2_keep_alive_timeout: Duration,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            close_listener_when_draining: false,
            close_listener_on_signal: false,
            close_within: DEFAULT_CLOSE_WITHIN,
            header_read_timeout: Some(DEFAULT_HEADER_READ_TIMEOUT),
            http1_keep_alive: true,
            http2_max_concurrent_streams: None,
            http2_keep_alive_interval: None,
            http2_keep_alive_timeout: DEFAULT_HTTP2_KEEP_ALIVE_TIMEOUT,
        }
    }
}

impl Settings {
    /// hyper's connection builder, configured.
    pub(crate) fn builder(&self) -> auto::Builder<TokioExecutor> {
        let mut builder = auto::Builder::new(TokioExecutor::new());
        builder
            .http1()
            .timer(TokioTimer::new())
            .header_read_timeout(self.header_read_timeout)
            .keep_alive(self.http1_keep_alive);
        let mut http2 = builder.http2();
        http2
            .timer(TokioTimer::new())
            .keep_alive_interval(self.http2_keep_alive_interval)
            .keep_alive_timeout(self.http2_keep_alive_timeout)
            // WebSockets over HTTP/2 (RFC 8441), as `axum::serve` offers them.
            .enable_connect_protocol();
        if let Some(max) = self.http2_max_concurrent_streams {
            http2.max_concurrent_streams(max);
        }
        builder
    }
}
