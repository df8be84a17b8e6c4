//! `HttpDrainLayer` and the settings its services share.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::request::Parts;
use http::{HeaderValue, Response};
use tower_layer::Layer;

use super::gradual::Gradual;
use super::service::HttpDrainService;
use crate::drain::Drain;

/// A refusal hook: builds the response for a request refused while draining.
pub(crate) type RejectFn = dyn Fn(&Parts) -> Response<Bytes> + Send + Sync;
/// A test of a request's head: which requests are exempt, or end their streams on drain.
pub(crate) type RequestTest = dyn Fn(&Parts) -> bool + Send + Sync;

/// What every service made by one layer shares, behind one `Arc` so that cloning a service
/// (hyper-util and axum clone it per request) is one reference-count increment.
#[derive(Clone)]
pub(crate) struct Settings {
    pub(crate) drain: Drain,
    pub(crate) retry_after: Option<HeaderValue>,
    pub(crate) reject_with: Option<Arc<RejectFn>>,
    pub(crate) exempt: Option<Arc<RequestTest>>,
    /// Requests whose response bodies end when draining begins.
    pub(crate) end_streams: Option<Arc<RequestTest>>,
    /// Put a [`DrainWatch`](crate::DrainWatch) in each request's extensions.
    pub(crate) request_signal: bool,
    /// Close HTTP/1.x connections gradually while unready.
    pub(crate) gradual: Option<Arc<Gradual>>,
}

/// Wraps HTTP services in [`HttpDrainService`]: each request is counted in a [`Drain`]'s pool
/// until its response body ends, and refused with `503` (gRPC: `UNAVAILABLE`) once the pool
/// drains.
///
/// Made by [`Drain::http_layer`] or [`HttpDrainLayer::new`], then configured with
/// [`retry_after`](Self::retry_after), [`reject_with`](Self::reject_with) and
/// [`exempt`](Self::exempt). Clones share one pool.
///
/// # Differences from [`DrainLayer`](crate::DrainLayer)
///
/// - The request is released when the response body ends, not when the headers are ready,
///   so a streamed download or a gRPC stream is counted to its last frame.
/// - The inner service's error type is kept: a refusal is a response, not an error, so the
///   layer fits axum's `Infallible` services (`Router::layer`, `route_layer`).
/// - While draining, HTTP/1.x responses carry `Connection: close`, so keep-alive clients move
///   to another instance. HTTP/2 responses never carry connection headers; there the server's
///   graceful shutdown sends `GOAWAY` (`tower_drain::serve` (feature `serve`) does when draining begins).
///
/// # Examples
///
/// ```
/// use axum::{routing::get, Router};
/// use std::time::Duration;
/// use tower_drain::Drain;
///
/// let drain = Drain::new();
/// let app: Router = Router::new()
///     .route("/", get(|| async { "hello" }))
///     .route("/healthz", get(|| async { "ok" }))
///     .layer(
///         drain
///             .http_layer()
///             .retry_after(Duration::from_secs(5))
///             .exempt(|request| request.uri.path() == "/healthz"),
///     );
/// # drop(app);
/// ```
#[derive(Clone)]
pub struct HttpDrainLayer {
    settings: Arc<Settings>,
}

impl HttpDrainLayer {
    /// A layer that counts requests in `drain`'s pool, with no `Retry-After`, the default
    /// refusals and no exemptions.
    ///
    /// # Examples
    ///
    /// ```
    /// let layer = tower_drain::HttpDrainLayer::new(tower_drain::Drain::new());
    /// # drop(layer);
    /// ```
    pub fn new(drain: Drain) -> Self {
        Self {
            settings: Arc::new(Settings {
                drain,
                retry_after: None,
                reject_with: None,
                exempt: None,
                end_streams: None,
                request_signal: false,
                gradual: None,
            }),
        }
    }

    /// Adds `Retry-After: <seconds>` to each refusal, so well-behaved clients come back later
    /// (or elsewhere). Off by default. Durations are rounded up to whole seconds.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// let layer = tower_drain::Drain::new().http_layer().retry_after(Duration::from_secs(2));
    /// # drop(layer);
    /// ```
    pub fn retry_after(mut self, after: Duration) -> Self {
        // Saturating: `Duration::MAX` (or anything near it) means "much later", never 0.
        let seconds = after
            .as_secs()
            .saturating_add(u64::from(after.subsec_nanos() > 0));
        Arc::make_mut(&mut self.settings).retry_after = Some(HeaderValue::from(seconds));
        self
    }

    /// Replaces the default refusal (`503`, or gRPC `UNAVAILABLE`) with the response `reject`
    /// builds from the refused request's head.
    ///
    /// On HTTP/1.x the response still gets `Connection: close`, and `Retry-After` if
    /// configured and not set by `reject`. The body is sent as given.
    ///
    /// # Examples
    ///
    /// ```
    /// use bytes::Bytes;
    /// use http::{Response, StatusCode};
    ///
    /// let layer = tower_drain::Drain::new().http_layer().reject_with(|_request| {
    ///     Response::builder()
    ///         .status(StatusCode::SERVICE_UNAVAILABLE)
    ///         .header("content-type", "application/json")
    ///         .body(Bytes::from_static(br#"{"error":"draining"}"#))
    ///         .unwrap()
    /// });
    /// # drop(layer);
    /// ```
    pub fn reject_with<F>(mut self, reject: F) -> Self
    where
        F: Fn(&Parts) -> Response<Bytes> + Send + Sync + 'static,
    {
        Arc::make_mut(&mut self.settings).reject_with = Some(Arc::new(reject));
        self
    }

    /// Exempts requests for which `exempt` returns `true`: they are passed to the inner
    /// service even while draining and are not counted, so they can never hold a drain open.
    ///
    /// Use it for health and readiness checks and drain-status endpoints, which must keep
    /// answering during a drain and must not count themselves.
    ///
    /// # Examples
    ///
    /// ```
    /// let layer = tower_drain::Drain::new()
    ///     .http_layer()
    ///     .exempt(|request| request.uri.path().starts_with("/health"));
    /// # drop(layer);
    /// ```
    pub fn exempt<F>(mut self, exempt: F) -> Self
    where
        F: Fn(&Parts) -> bool + Send + Sync + 'static,
    {
        Arc::make_mut(&mut self.settings).exempt = Some(Arc::new(exempt));
        self
    }

    /// Ends the response bodies of requests for which `test` returns `true` when draining
    /// begins: a gRPC stream ends with trailers `grpc-status: 14` (`UNAVAILABLE`), so its
    /// client reconnects elsewhere with a clean status, and any other body simply ends.
    ///
    /// For endless streams you cannot change, such as the standard gRPC health service's
    /// `Watch` (tonic-health): without it, such a stream holds the drain until the grace
    /// period ends and is then cut, which its client sees as an HTTP/2 protocol error. A
    /// stream ended this way counts as completed. It works for exempt requests too. For
    /// handlers of your own, [`with_request_signal`](Self::with_request_signal) lets them end
    /// their streams themselves. An HTTP/1.1 body with a `content-length` ended early reaches
    /// its client cut short: use it for streams.
    ///
    /// It costs, for matching requests only, a reference-count increment and an allocation.
    ///
    /// # Examples
    ///
    /// ```
    /// let watch = |request: &http::request::Parts| {
    ///     request.uri.path() == "/grpc.health.v1.Health/Watch"
    /// };
    /// let layer = tower_drain::Drain::new()
    ///     .http_layer()
    ///     .end_streams_when_draining(watch);
    /// # drop(layer);
    /// ```
    pub fn end_streams_when_draining<F>(mut self, test: F) -> Self
    where
        F: Fn(&Parts) -> bool + Send + Sync + 'static,
    {
        Arc::make_mut(&mut self.settings).end_streams = Some(Arc::new(test));
        self
    }

    /// Puts a [`DrainWatch`](crate::DrainWatch) in each request's extensions, so handlers of long-lived
    /// responses (server-sent events, long polls, gRPC server streams, WebSockets) can end
    /// them when draining begins, and keep work that outlives the response counted. Off by
    /// default.
    ///
    /// It costs a reference-count increment per request, and an allocation for requests whose
    /// extensions are still empty (axum has usually filled them already).
    ///
    /// # Examples
    ///
    /// ```
    /// use axum::{routing::get, Router};
    /// use tower_drain::{Drain, DrainWatch};
    ///
    /// # #[cfg(feature = "axum")]
    /// # fn main() {
    /// let drain = Drain::new();
    /// let app: Router = Router::new()
    ///     .route("/poll", get(|signal: DrainWatch| async move {
    ///         signal.draining().await;
    ///         "the server is restarting: ask again"
    ///     }))
    ///     .layer(drain.http_layer().with_request_signal());
    /// # drop(app);
    /// # }
    /// # #[cfg(not(feature = "axum"))]
    /// # fn main() {}
    /// ```
    pub fn with_request_signal(mut self) -> Self {
        Arc::make_mut(&mut self.settings).request_signal = true;
        self
    }

    /// Moves HTTP/1.x keep-alive clients off gradually during the unready period of a
    /// [`shutdown`](Drain::shutdown): each response asks for `Connection: close` with a
    /// probability that rises linearly from 0 when the period begins to 1 when it ends, as
    /// Envoy's gradual drain does. Without it, every keep-alive client is told to reconnect
    /// at once when draining begins, and they all land on the other instances together.
    /// Off by default; HTTP/2 is never affected (the server's `GOAWAY` covers it).
    ///
    /// It costs one atomic load per HTTP/1.x request while serving, and a lock and a random
    /// draw per request during the unready period.
    ///
    /// # Examples
    ///
    /// ```
    /// let layer = tower_drain::Drain::new().http_layer().gradual_close();
    /// # drop(layer);
    /// ```
    pub fn gradual_close(self) -> Self {
        self.gradual_close_seeded(Gradual::random_seed())
    }

    /// [`gradual_close`](Self::gradual_close) with the random source seeded by `seed`, so that
    /// which responses close is reproducible: a hook for tests, hidden from the docs and not
    /// part of the API's promises.
    ///
    /// # Examples
    ///
    /// ```
    /// let layer = tower_drain::Drain::new().http_layer().gradual_close_seeded(42);
    /// # drop(layer);
    /// ```
    #[doc(hidden)]
    pub fn gradual_close_seeded(mut self, seed: u64) -> Self {
        Arc::make_mut(&mut self.settings).gradual = Some(Arc::new(Gradual::new(seed)));
        self
    }
}

impl Settings {
    /// Whether any option acts on each request before it is admitted.
    #[inline]
    pub(crate) fn has_request_options(&self) -> bool {
        self.exempt.is_some()
            || self.request_signal
            || self.gradual.is_some()
            || self.end_streams.is_some()
    }
}

impl<S> Layer<S> for HttpDrainLayer {
    type Service = HttpDrainService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        HttpDrainService::from_settings(inner, self.settings.clone())
    }
}

impl fmt::Debug for HttpDrainLayer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.settings.fmt(f)
    }
}

impl fmt::Debug for Settings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HttpDrainLayer")
            .field("drain", &self.drain)
            .field("retry_after", &self.retry_after)
            .field("reject_with", &self.reject_with.is_some())
            .field("exempt", &self.exempt.is_some())
            .field("request_signal", &self.request_signal)
            .field("gradual_close", &self.gradual.is_some())
            .field("end_streams_when_draining", &self.end_streams.is_some())
            .finish()
    }
}

impl Drain {
    /// An [`HttpDrainLayer`] that counts every request of the HTTP service it wraps in this
    /// pool until its response body ends.
    ///
    /// Layer it once per pool on a request's path: two layers of the same pool, one inside the
    /// other (a `Router::layer` and again around the server, say), count each request twice
    /// (`in_flight` 2, `started` 2). For a route group, use a [`child`](Drain::child) pool's
    /// layer instead of the parent's.
    ///
    /// # Examples
    ///
    /// ```
    /// use axum::{routing::get, Router};
    ///
    /// let drain = tower_drain::Drain::new();
    /// let app: Router = Router::new()
    ///     .route("/", get(|| async { "hello" }))
    ///     .layer(drain.http_layer());
    /// # drop(app);
    /// ```
    #[cfg_attr(docsrs, doc(cfg(feature = "http")))]
    pub fn http_layer(&self) -> HttpDrainLayer {
        HttpDrainLayer::new(self.clone())
    }
}
