//! `DrainLayer`.

use tower_layer::Layer;

use crate::drain::Drain;
use crate::service::DrainService;

/// Wraps services in [`DrainService`], so each request is counted in a [`Drain`]'s pool until
/// its response future completes, and refused once the pool drains.
///
/// Clones share one pool. Also made by [`Drain::layer`].
///
/// # Examples
///
/// ```
/// use tower::{service_fn, ServiceBuilder, ServiceExt};
/// use tower_drain::{Drain, DrainLayer};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let drain = Drain::new();
/// let service = ServiceBuilder::new()
///     .layer(DrainLayer::new(drain.clone()))
///     .service(service_fn(|x: u32| async move { Ok::<_, std::io::Error>(x + 1) }));
///
/// assert_eq!(service.clone().oneshot(1).await.unwrap(), 2);
///
/// drain.start_draining();
/// let err = service.oneshot(1).await.unwrap_err();
/// assert!(err.is::<tower_drain::Rejected>());
/// # }
/// ```
#[derive(Debug, Clone)]
pub struct DrainLayer {
    drain: Drain,
}

impl DrainLayer {
    /// A layer that counts requests in `drain`'s pool.
    ///
    /// # Examples
    ///
    /// ```
    /// let layer = tower_drain::DrainLayer::new(tower_drain::Drain::new());
    /// # drop(layer);
    /// ```
    pub fn new(drain: Drain) -> Self {
        Self { drain }
    }
}

impl<S> Layer<S> for DrainLayer {
    type Service = DrainService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        DrainService::new(inner, self.drain.clone())
    }
}
