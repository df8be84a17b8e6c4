//! `HttpDrainService`.

use std::sync::Arc;
use std::task::{Context, Poll};

use http::{Request, Response};
use tower_service::Service;

use super::body::DrainBody;
use super::future::ResponseFuture;
use super::layer::Settings;
use super::reject;
use super::request_signal::DrainSignal;

/// Counts each HTTP request in a [`Drain`](crate::Drain)'s pool until its response body ends
/// or is dropped; answers requests that arrive while draining with `503` (gRPC: `UNAVAILABLE`)
/// without calling the inner service.
///
/// `Error` is the inner service's, and `poll_ready` is the inner one's. Made by
/// [`HttpDrainLayer`](crate::HttpDrainLayer), whose documentation describes the behaviour.
/// Clones share one pool.
///
/// # Examples
///
/// ```
/// use http::{Request, Response, StatusCode};
/// use http_body_util::Full;
/// use bytes::Bytes;
/// use tower::{service_fn, Layer, ServiceExt};
/// use tower_drain::Drain;
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let drain = Drain::new();
/// let service = drain.http_layer().layer(service_fn(|_: Request<()>| async {
///     Ok::<_, std::convert::Infallible>(Response::new(Full::new(Bytes::from("hi"))))
/// }));
///
/// drain.start_draining();
/// let response = service.oneshot(Request::new(())).await.unwrap();
/// assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
/// # }
/// ```
#[derive(Debug, Clone)]
pub struct HttpDrainService<S> {
    inner: S,
    settings: Arc<Settings>,
}

impl<S> HttpDrainService<S> {
    pub(crate) fn from_settings(inner: S, settings: Arc<Settings>) -> Self {
        Self { inner, settings }
    }

    /// A reference to the inner service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// A mutable reference to the inner service.
    pub fn get_mut(&mut self) -> &mut S {
        &mut self.inner
    }

    /// The inner service, unwrapped.
    pub fn into_inner(self) -> S {
        self.inner
    }
}

impl<S, ReqBody, ResBody> Service<Request<ReqBody>> for HttpDrainService<S>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>>,
    ResBody: http_body::Body,
    ResBody::Data: From<bytes::Bytes>,
{
    type Response = Response<DrainBody<ResBody>>;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future>;

    #[inline]
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    #[inline]
    fn call(&mut self, mut request: Request<ReqBody>) -> Self::Future {
        let settings = &*self.settings;
        if settings.request_signal {
            let signal = DrainSignal::new(settings.drain.clone());
            request.extensions_mut().insert(signal);
        }
        let request = match &settings.exempt {
            None => request,
            Some(exempt) => {
                let (parts, body) = request.into_parts();
                let exempted = exempt(&parts);
                let request = Request::from_parts(parts, body);
                if exempted {
                    return ResponseFuture::exempt(self.inner.call(request));
                }
                request
            }
        };
        let http1 = reject::is_http1(request.version());
        match settings.drain.try_guard() {
            Ok(guard) => ResponseFuture::counted(self.inner.call(request), guard, http1),
            Err(_) => refuse(request, settings),
        }
    }
}

/// Out of line, so the refusal's code stays off the admitted request's path.
#[cold]
#[inline(never)]
fn refuse<ReqBody, F>(request: Request<ReqBody>, settings: &Settings) -> ResponseFuture<F> {
    let (parts, _body) = request.into_parts();
    ResponseFuture::refused(reject::refusal(&parts, settings))
}
