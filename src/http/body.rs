//! `DrainBody`: keeps a request counted until its response body ends.

use std::fmt;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use pin_project_lite::pin_project;

use crate::guard::{CancelOnDrop, Guard};

pin_project! {
    /// A response body that keeps its request counted in the pool until it ends.
    ///
    /// The request leaves the pool as completed when the body yields its last frame (the
    /// inner body reports `is_end_stream`, yields trailers, ends, or fails), and as cancelled
    /// if the body is dropped before that (the client went away). `size_hint`,
    /// `is_end_stream` and every frame, trailers included, pass through untouched. Refusals
    /// and exempt requests use the same type, uncounted.
    ///
    /// # Examples
    ///
    /// ```
    /// use http_body_util::{BodyExt, Full};
    /// use bytes::Bytes;
    /// use http::{Request, Response};
    /// use tower::{service_fn, Layer, ServiceExt};
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// let drain = tower_drain::Drain::new();
    /// let service = drain.http_layer().layer(service_fn(|_: Request<()>| async {
    ///     Ok::<_, std::convert::Infallible>(Response::new(Full::new(Bytes::from("hello"))))
    /// }));
    /// let response = service.oneshot(Request::new(())).await.unwrap();
    /// assert_eq!(drain.in_flight(), 1, "the body is not sent yet");
    ///
    /// let body = response.into_body().collect().await.unwrap().to_bytes();
    /// assert_eq!(body, "hello");
    /// assert_eq!(drain.in_flight(), 0);
    /// # }
    /// ```
    pub struct DrainBody<B> {
        #[pin]
        kind: Kind<B>,
        // Dropped before the body ended: the request counts as cancelled.
        guard: CancelOnDrop,
    }

}

pin_project! {
    #[project = KindProj]
    enum Kind<B> {
        Inner {
            #[pin]
            body: B,
        },
        // A refusal's body, sent in one frame.
        Full {
            data: Option<Bytes>,
        },
    }
}

impl<B: Body> DrainBody<B> {
    #[inline]
    pub(crate) fn counted(body: B, guard: Option<Guard>) -> Self {
        // A server never polls a body that is already at its end (an empty body): the response
        // head is the whole response, so the request is complete now.
        let guard = guard.filter(|_| !body.is_end_stream());
        Self {
            kind: Kind::Inner { body },
            guard: CancelOnDrop::new(guard),
        }
    }
}

impl<B> DrainBody<B> {
    pub(crate) fn full(data: Bytes) -> Self {
        Self {
            kind: Kind::Full {
                data: (!data.is_empty()).then_some(data),
            },
            guard: CancelOnDrop::new(None),
        }
    }
}

impl<B> Body for DrainBody<B>
where
    B: Body,
    B::Data: From<Bytes>,
{
    type Data = B::Data;
    type Error = B::Error;

    #[inline]
    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let this = self.project();
        match this.kind.project() {
            KindProj::Inner { mut body } => {
                let frame = ready!(body.as_mut().poll_frame(cx));
                if is_last(&frame, &*body) {
                    // The body is done: the request leaves the pool as completed.
                    drop(this.guard.take());
                }
                Poll::Ready(frame)
            }
            KindProj::Full { data } => {
                Poll::Ready(data.take().map(|data| Ok(Frame::data(data.into()))))
            }
        }
    }

    #[inline]
    fn is_end_stream(&self) -> bool {
        match &self.kind {
            Kind::Inner { body } => body.is_end_stream(),
            Kind::Full { data } => data.is_none(),
        }
    }

    #[inline]
    fn size_hint(&self) -> SizeHint {
        match &self.kind {
            Kind::Inner { body } => body.size_hint(),
            Kind::Full { data } => {
                SizeHint::with_exact(data.as_ref().map_or(0, |d| d.len() as u64))
            }
        }
    }
}

/// Whether `frame`, just polled from `body`, ends it: the end, an error, trailers, or a frame
/// after which the body reports its end. Everything a body wrapper must release on.
#[inline]
pub(crate) fn is_last<B: Body>(frame: &Option<Result<Frame<B::Data>, B::Error>>, body: &B) -> bool {
    match frame {
        None | Some(Err(_)) => true,
        Some(Ok(frame)) => frame.is_trailers() || body.is_end_stream(),
    }
}

impl<B> fmt::Debug for DrainBody<B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DrainBody")
            .field("counted", &self.guard.get().is_some())
            .finish_non_exhaustive()
    }
}
