//! Body-aware draining for HTTP services: axum, hyper and tonic.
//!
//! [`HttpDrainLayer`] counts each request until its response *body* ends, refuses new requests
//! while draining with `503 Service Unavailable` (gRPC: `UNAVAILABLE`), and asks HTTP/1.x
//! clients to close their connections while the pool drains.

mod body;
mod future;
mod gradual;
mod layer;
mod readiness;
mod record;
mod reject;
mod request_signal;
mod service;

pub use self::body::DrainBody;
pub use self::future::HttpResponseFuture;
pub use self::layer::HttpDrainLayer;
pub use self::readiness::Readiness;
pub use self::record::{RecordRequests, RecordRequestsLayer, RecordedBody, RecordedFuture};
pub use self::request_signal::DrainWatch;
pub use self::service::HttpDrainService;
