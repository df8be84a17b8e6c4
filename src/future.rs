//! `ResponseFuture`.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use pin_project_lite::pin_project;

use crate::error::Rejected;
use crate::guard::{Guard, Tracked};
use crate::BoxError;

pin_project! {
    /// The response future of [`DrainService`](crate::DrainService): the inner future, counted
    /// in the pool until it completes or is dropped, or the refusal of a draining pool.
    ///
    /// # Examples
    ///
    /// ```
    /// use tower::{service_fn, Service};
    /// use tower_drain::{Drain, DrainService, ResponseFuture};
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// let drain = Drain::new();
    /// let mut service = DrainService::new(
    ///     service_fn(|()| async { Ok::<_, std::io::Error>("done") }),
    ///     drain.clone(),
    /// );
    /// let future: ResponseFuture<_> = service.call(());
    /// assert_eq!(future.await.unwrap(), "done");
    /// # }
    /// ```
    #[must_use = "futures do nothing unless polled"]
    pub struct ResponseFuture<F> {
        #[pin]
        state: ResponseState<F>,
    }
}

pin_project! {
    #[project = ResponseStateProj]
    enum ResponseState<F> {
        Called {
            #[pin]
            future: Tracked<F>,
        },
        Rejected {
            // Taken when the refusal is returned.
            rejected: Option<Rejected>,
        },
    }
}

impl<F> ResponseFuture<F> {
    pub(crate) fn called(future: F, guard: Guard) -> Self {
        Self {
            state: ResponseState::Called {
                future: Tracked::new(future, guard),
            },
        }
    }

    pub(crate) fn rejected(rejected: Rejected) -> Self {
        Self {
            state: ResponseState::Rejected {
                rejected: Some(rejected),
            },
        }
    }
}

impl<F, T, E> Future for ResponseFuture<F>
where
    F: Future<Output = Result<T, E>>,
    E: Into<BoxError>,
{
    type Output = Result<T, BoxError>;

    #[inline]
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project().state.project() {
            ResponseStateProj::Called { future } => {
                Poll::Ready(ready!(future.poll(cx)).map_err(Into::into))
            }
            ResponseStateProj::Rejected { rejected } => {
                // Polled again after completion: the refusal stands.
                let rejected = rejected.take().unwrap_or_else(Rejected::draining);
                Poll::Ready(Err(rejected.into()))
            }
        }
    }
}

impl<F> fmt::Debug for ResponseFuture<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = match &self.state {
            ResponseState::Called { .. } => "called",
            ResponseState::Rejected { .. } => "rejected",
        };
        f.debug_struct("ResponseFuture")
            .field("state", &state)
            .finish()
    }
}
