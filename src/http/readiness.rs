//! `Readiness`: the readiness check that turns `503` before the pool drains.

use std::convert::Infallible;

use std::future::{ready, Ready};
use std::task::{Context, Poll};

use http::header::{CACHE_CONTROL, CONTENT_TYPE};
use http::{HeaderValue, Request, Response, StatusCode};
use tower_service::Service;

use crate::drain::Drain;
use crate::snapshot::Phase;

/// A readiness check: `200 serving` while the pool is [`Phase::Serving`], `503` with the
/// phase's name once it is `Unready` or later. Made by [`Drain::readiness`].
///
/// It accepts any request body and never fails. Point the load balancer's health check (or
/// the Kubernetes readiness probe) at it; a [`Shutdown`](crate::Shutdown) turns it `503` for
/// its `unready_for` period before refusing any work, so traffic moves away first.
///
/// It must keep answering while the pool drains, so it must not sit behind an
/// [`HttpDrainLayer`](crate::HttpDrainLayer) that would refuse it. In axum, routes added
/// *after* `.layer(..)` are outside that layer: add it last. If it must be added before the
/// layer, exempt its path with [`HttpDrainLayer::exempt`](crate::HttpDrainLayer::exempt).
///
/// # Examples
///
/// ```
/// use axum::{routing::get, Router};
///
/// let drain = tower_drain::Drain::new();
/// let app: Router = Router::new()
///     .route("/", get(|| async { "hello" }))
///     .layer(drain.http_layer())
///     // Added after the layer, so never refused or counted by it.
///     .route_service("/ready", drain.readiness());
/// # drop(app);
/// ```
#[derive(Debug, Clone)]
pub struct Readiness {
    drain: Drain,
}

impl<B> Service<Request<B>> for Readiness {
    type Response = Response<String>;
    type Error = Infallible;
    type Future = Ready<Result<Response<String>, Infallible>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, _request: Request<B>) -> Self::Future {
        let phase = self.drain.phase();
        // No formatting on a probe: a static text, copied (of the body types `http-body`
        // knows, only `String` needs no other crate).
        let body = match phase {
            Phase::Serving => "serving\n",
            Phase::Unready => "unready\n",
            Phase::Draining => "draining\n",
            Phase::Drained => "drained\n",
        };
        let mut response = Response::new(String::from(body));
        if phase != Phase::Serving {
            *response.status_mut() = StatusCode::SERVICE_UNAVAILABLE;
        }
        let headers = response.headers_mut();
        headers.insert(
            CONTENT_TYPE,
            HeaderValue::from_static("text/plain; charset=utf-8"),
        );
        headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
        ready(Ok(response))
    }
}

impl Drain {
    /// A readiness check for this pool: `200` while serving, `503` from
    /// [`Phase::Unready`] on. See [`Readiness`].
    ///
    /// # Examples
    ///
    /// ```
    /// use http::{Request, StatusCode};
    /// use tower::ServiceExt;
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// let drain = tower_drain::Drain::new();
    /// let response = drain.readiness().oneshot(Request::new(())).await.unwrap();
    /// assert_eq!(response.status(), StatusCode::OK);
    ///
    /// drain.start_draining();
    /// let response = drain.readiness().oneshot(Request::new(())).await.unwrap();
    /// assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    /// # }
    /// ```
    #[cfg_attr(docsrs, doc(cfg(feature = "http")))]
    pub fn readiness(&self) -> Readiness {
        Readiness {
            drain: self.clone(),
        }
    }
}
