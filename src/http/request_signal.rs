//! `DrainWatch`: what a handler sees of the drain, through its request's extensions.

use std::fmt;

use crate::drain::Drain;
use crate::guard::Guard;
use crate::wait::DrainStarted;

/// A handler's view of the pool: when draining begins, and a way to keep work that outlives
/// the response counted.
///
/// [`HttpDrainLayer::with_request_signal`](crate::HttpDrainLayer::with_request_signal) puts one
/// in every request's extensions. A long-lived response, such as a server-sent-events stream, a
/// long poll or a gRPC server stream, selects on [`draining`](Self::draining) to end early and
/// cleanly, so that the drain does not have to wait for it or cut it at the deadline. Work that
/// outlives the response, such as a WebSocket connection after `101 Switching Protocols`,
/// holds a [`guard`](Self::guard) so the drain waits for it too.
///
/// It can neither start nor end a drain. With the `axum` feature it is also an axum extractor;
/// tonic handlers find it in `request.extensions()`. Taken as a handler argument without the
/// `axum` feature, it makes axum report only that the handler "does not implement
/// `Handler<_, _>`": enable `tower-drain`'s `axum` feature, or take it from the request's
/// extensions.
///
/// # Examples
///
/// ```
/// use http::Request;
/// use http_body_util::Full;
/// use bytes::Bytes;
/// use tower::{service_fn, Layer, ServiceExt};
/// use tower_drain::{Drain, DrainWatch};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let drain = Drain::new();
/// let service = drain.http_layer().with_request_signal().layer(service_fn(
///     |request: Request<()>| async move {
///         let signal = request.extensions().get::<DrainWatch>().unwrap().clone();
///         // A long poll: answer when there is news, or early when the server drains.
///         signal.draining().await;
///         Ok::<_, std::convert::Infallible>(http::Response::new(Full::new(Bytes::from("bye"))))
///     },
/// ));
/// let response = tokio::spawn(service.oneshot(Request::new(())));
/// tokio::task::yield_now().await;
/// drain.start_draining();
/// assert_eq!(response.await.unwrap().unwrap().status(), 200);
/// # }
/// ```
#[derive(Clone)]
pub struct DrainWatch {
    drain: Drain,
}

impl DrainWatch {
    pub(crate) fn new(drain: Drain) -> Self {
        Self { drain }
    }

    /// Completes when the pool begins draining: at once if it already has.
    ///
    /// # Cancel safety
    ///
    /// Dropping the future leaves nothing behind.
    ///
    /// # Examples
    ///
    /// ```
    /// # async fn handler(signal: tower_drain::DrainWatch) {
    /// tokio::select! {
    ///     () = signal.draining() => { /* send a last event, then end the stream */ }
    ///     () = std::future::pending::<()>() => {}
    /// }
    /// # }
    /// ```
    pub fn draining(&self) -> DrainStarted {
        self.drain.draining()
    }

    /// Whether the pool is draining now.
    ///
    /// # Examples
    ///
    /// ```
    /// # fn handler(signal: tower_drain::DrainWatch) {
    /// if signal.is_draining() {
    ///     // Answer briefly rather than start something long.
    /// }
    /// # }
    /// ```
    pub fn is_draining(&self) -> bool {
        self.drain.is_draining()
    }

    /// Counts work that outlives the response until the returned guard is dropped: an upgraded
    /// WebSocket connection, a task the handler spawns. It succeeds even while draining, since
    /// the request it belongs to was admitted.
    ///
    /// # Panics
    ///
    /// As [`Drain::guard`].
    ///
    /// # Examples
    ///
    /// ```
    /// # fn handler(signal: tower_drain::DrainWatch) {
    /// let guard = signal.guard();
    /// tokio::spawn(async move {
    ///     // ... the upgraded connection's work ...
    ///     drop(guard);
    /// });
    /// # }
    /// ```
    pub fn guard(&self) -> Guard {
        self.drain.guard()
    }
}

impl fmt::Debug for DrainWatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DrainWatch")
            .field("draining", &self.is_draining())
            .finish()
    }
}

#[cfg(feature = "axum")]
mod extract {
    use axum_core::extract::FromRequestParts;
    use http::request::Parts;
    use http::StatusCode;

    use super::DrainWatch;

    /// An axum extractor, for handlers behind
    /// [`HttpDrainLayer::with_request_signal`](crate::HttpDrainLayer::with_request_signal).
    /// Without that option the request is answered with `500` and a message naming it.
    impl<S: Sync> FromRequestParts<S> for DrainWatch {
        type Rejection = (StatusCode, &'static str);

        async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
            parts.extensions.get::<DrainWatch>().cloned().ok_or((
                StatusCode::INTERNAL_SERVER_ERROR,
                "DrainWatch is missing: layer the routes with \
                 `drain.http_layer().with_request_signal()`",
            ))
        }
    }
}
