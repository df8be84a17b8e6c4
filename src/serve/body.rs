//! The body of every response `serve` writes: the service's own, or the empty body of an
//! answer `serve` gives itself (a gRPC call past its `grpc-timeout`).

use std::pin::Pin;
use std::task::{Context, Poll};

use http_body::{Body, Frame, SizeHint};
use pin_project_lite::pin_project;

pin_project! {
    /// The service's body, or none.
    #[project = ServeBodyProj]
    pub(crate) enum ServeBody<B> {
        Inner { #[pin] body: B },
        Empty,
    }
}

impl<B> ServeBody<B> {
    pub(crate) fn inner(body: B) -> Self {
        Self::Inner { body }
    }

    pub(crate) fn empty() -> Self {
        Self::Empty
    }
}

impl<B: Body> Body for ServeBody<B> {
    type Data = B::Data;
    type Error = B::Error;

    #[inline]
    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        match self.project() {
            ServeBodyProj::Inner { body } => body.poll_frame(cx),
            ServeBodyProj::Empty => Poll::Ready(None),
        }
    }

    #[inline]
    fn is_end_stream(&self) -> bool {
        match self {
            Self::Inner { body } => body.is_end_stream(),
            Self::Empty => true,
        }
    }

    #[inline]
    fn size_hint(&self) -> SizeHint {
        match self {
            Self::Inner { body } => body.size_hint(),
            Self::Empty => SizeHint::with_exact(0),
        }
    }
}
