//! `DrainBody`: keeps a request counted until its response body ends.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use bytes::{Buf, Bytes};
use http::{HeaderMap, HeaderValue};
use http_body::{Body, Frame, SizeHint};
use pin_project_lite::pin_project;

use crate::guard::{CancelOnDrop, Guard};
use crate::wait::DrainStarted;

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
    /// use bytes::{Buf, Bytes};
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
        // An HTTP/1.x body whose length the response declares: the server stops at that many
        // bytes and may drop the body without polling its end, so reaching it is the end.
        // `u32`, so that the variant fits in the space `Inner` takes anyway: a longer body is
        // counted as an `Inner` one.
        Sized {
            #[pin]
            body: B,
            remaining: u32,
        },
        // A refusal's body, sent in one frame.
        Full {
            data: Option<Bytes>,
        },
        // A body that ends when draining begins (`end_streams_when_draining`): gRPC ones with
        // an `UNAVAILABLE` status in trailers.
        // Boxed with its drain signal: only such bodies pay for it, and the variant is one
        // pointer, so the body is no larger for the others.
        Ending {
            ending: Pin<Box<Ending<B>>>,
        },
        // The same for a gRPC stream: it ends with `UNAVAILABLE` in its trailers. Two variants
        // rather than a flag, for the same reason.
        EndingGrpc {
            ending: Pin<Box<Ending<B>>>,
        },
        // Ended by the drain.
        Ended,
    }
}

impl<B: Body> DrainBody<B> {
    /// `body`, counted with `guard` until it ends. Nothing is looked at here: the caller
    /// settles the rest (`complete_now` for a body a server will not poll, `complete_after`,
    /// `end_when_draining`) on the wrapped response, where it lies.
    #[inline]
    pub(crate) fn counted(body: B, guard: Option<Guard>) -> Self {
        Self {
            kind: Kind::Inner { body },
            guard: CancelOnDrop::new(guard),
        }
    }
}

pin_project! {
    /// A body that ends when draining begins, and the signal it waits for.
    struct Ending<B> {
        #[pin]
        body: B,
        #[pin]
        draining: DrainStarted,
    }
}

impl<B: Body> DrainBody<B> {
    /// The guard it holds, if it still counts its request.
    #[inline]
    pub(crate) fn guard(&self) -> Option<&Guard> {
        self.guard.get()
    }

    /// Whether the wrapped body is at its end before anything was sent: a server will not
    /// poll it. Only for a body made by `counted`.
    #[inline]
    pub(crate) fn inner_is_end_stream(&self) -> bool {
        match &self.kind {
            Kind::Inner { body } => body.is_end_stream(),
            _ => false,
        }
    }

    /// Whether the wrapped body does not know its exact length. Only for a body made by
    /// `counted`.
    #[inline]
    pub(crate) fn inner_length_unknown(&self) -> bool {
        match &self.kind {
            Kind::Inner { body } => body.size_hint().exact().is_none(),
            _ => false,
        }
    }

    /// The request is complete now, whatever happens to the body.
    #[inline]
    pub(crate) fn complete_now(&mut self) {
        drop(self.guard.take());
    }

    /// Makes a counted body complete once `length` bytes are sent, whether or not its end is
    /// polled. Only for a body made by `counted` and not yet polled; a length beyond `u32`
    /// leaves it counted to its end.
    #[inline]
    pub(crate) fn complete_after(&mut self, length: u64) {
        let Ok(remaining) = u32::try_from(length) else {
            return;
        };
        if remaining == 0 {
            // Nothing to send: complete now.
            self.complete_now();
            return;
        }
        // Not pinned yet: the body is still the caller's to move.
        self.kind = match std::mem::replace(&mut self.kind, Kind::Ended) {
            Kind::Inner { body } => Kind::Sized { body, remaining },
            other => other,
        };
    }

    /// Makes a counted body end early when draining begins, still counted until it ends.
    /// Only for a body made by `counted` and not yet polled.
    #[inline]
    pub(crate) fn end_when_draining(&mut self, draining: DrainStarted, grpc: bool) {
        // Not pinned yet: the body is still the caller's to move.
        self.kind = match std::mem::replace(&mut self.kind, Kind::Ended) {
            Kind::Inner { body } => Kind::ending(body, draining, grpc),
            other => other,
        };
    }
}

impl<B> Kind<B> {
    /// A body that ends when draining begins, boxed with its signal.
    #[cold]
    fn ending(body: B, draining: DrainStarted, grpc: bool) -> Self {
        let ending = Box::pin(Ending { body, draining });
        if grpc {
            Kind::EndingGrpc { ending }
        } else {
            Kind::Ending { ending }
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
        let mut this = self.project();
        let trailers = match this.kind.as_mut().project() {
            KindProj::Inner { mut body } => {
                let frame = ready!(body.as_mut().poll_frame(cx));
                if is_last(&frame, &*body) {
                    // The body is done: the request leaves the pool as completed.
                    drop(this.guard.take());
                }
                return Poll::Ready(frame);
            }
            KindProj::Sized {
                mut body,
                remaining,
            } => {
                let frame = ready!(body.as_mut().poll_frame(cx));
                if let Some(Ok(data)) = frame.as_ref().map(|f| f.as_ref().map(Frame::data_ref)) {
                    let len = data.map_or(0, Buf::remaining);
                    let len = u32::try_from(len).unwrap_or(u32::MAX);
                    *remaining = remaining.saturating_sub(len);
                }
                if *remaining == 0 || is_last(&frame, &*body) {
                    // Every declared byte is out: the server may stop here without polling
                    // the end, and that is a complete response, not a client gone.
                    drop(this.guard.take());
                }
                return Poll::Ready(frame);
            }
            KindProj::Full { data } => {
                return Poll::Ready(data.take().map(|data| Ok(Frame::data(data.into()))));
            }
            KindProj::Ended => return Poll::Ready(None),
            KindProj::Ending { ending } => {
                match ready!(poll_until_draining(ending.as_mut(), this.guard, cx)) {
                    Some(frame) => return Poll::Ready(frame),
                    None => None,
                }
            }
            KindProj::EndingGrpc { ending } => {
                match ready!(poll_until_draining(ending.as_mut(), this.guard, cx)) {
                    Some(frame) => return Poll::Ready(frame),
                    None => Some(unavailable()),
                }
            }
        };
        // Draining began while the body was still going: it ends here, on purpose, so the
        // request is complete. The inner body is dropped unfinished.
        drop(this.guard.take());
        this.kind.set(Kind::Ended);
        Poll::Ready(trailers.map(|trailers| Ok(Frame::trailers(trailers))))
    }

    #[inline]
    fn is_end_stream(&self) -> bool {
        match &self.kind {
            Kind::Inner { body } | Kind::Sized { body, .. } => body.is_end_stream(),
            Kind::Ending { ending } | Kind::EndingGrpc { ending } => ending.body.is_end_stream(),
            Kind::Full { data } => data.is_none(),
            Kind::Ended => true,
        }
    }

    #[inline]
    fn size_hint(&self) -> SizeHint {
        match &self.kind {
            Kind::Inner { body } | Kind::Sized { body, .. } => body.size_hint(),
            // It may end early, so nothing is promised beyond what is sent.
            Kind::Ending { .. } | Kind::EndingGrpc { .. } => SizeHint::default(),
            Kind::Full { data } => {
                SizeHint::with_exact(data.as_ref().map_or(0, |d| d.len() as u64))
            }
            Kind::Ended => SizeHint::with_exact(0),
        }
    }
}

/// Whether `frame`, just polled from `body`, ends it: the end, an error, trailers, or a frame
/// after which the body reports its end. Everything a body wrapper must release on.
/// A frame of a body, as `poll_frame` gives it.
type FrameResult<B> = Option<Result<Frame<<B as Body>::Data>, <B as Body>::Error>>;

/// Polls a body that ends when draining begins: `Ready(None)` once draining has begun (the
/// caller ends the body), else the body's own frame, its guard released on the last one.
fn poll_until_draining<B: Body>(
    ending: Pin<&mut Ending<B>>,
    guard: &mut CancelOnDrop,
    cx: &mut Context<'_>,
) -> Poll<Option<FrameResult<B>>> {
    let ending = ending.project();
    if ending.draining.poll(cx).is_ready() {
        return Poll::Ready(None);
    }
    let mut body = ending.body;
    let frame = ready!(body.as_mut().poll_frame(cx));
    if is_last(&frame, &*body) {
        drop(guard.take());
    }
    Poll::Ready(Some(frame))
}

/// The trailers of a gRPC stream the drain ended: `UNAVAILABLE`, so clients retry elsewhere.
fn unavailable() -> HeaderMap {
    let mut trailers = HeaderMap::with_capacity(2);
    trailers.insert("grpc-status", HeaderValue::from_static("14"));
    trailers.insert(
        "grpc-message",
        HeaderValue::from_static("server is draining"),
    );
    trailers
}

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
