// The README is the crate's documentation, so its examples run as doctests. They use the
// `http` feature; without it, a short summary stands in for them.
#![cfg_attr(feature = "http", doc = include_str!("../README.md"))]
#![cfg_attr(
    not(feature = "http"),
    doc = "A graceful drain for any Tower stack: see the README for the guide and examples, \
           most of which need the default `http` feature."
)]
#![warn(
    missing_docs,
    missing_debug_implementations,
    rust_2018_idioms,
    unreachable_pub
)]
#![forbid(unsafe_code)]
#![cfg_attr(docsrs, feature(doc_cfg))]

mod drain;
mod error;
mod future;
mod guard;
#[cfg(feature = "http")]
mod http;
mod layer;
mod loom;
#[cfg(feature = "metrics")]
mod metrics_reporter;
mod pool;
mod record;
mod run_server;
// Under loom, tokio has no `net`; the models never need a server.
#[cfg(all(feature = "serve", not(loom)))]
mod serve;
mod service;
mod shutdown;
#[cfg(feature = "signal")]
#[cfg_attr(docsrs, doc(cfg(feature = "signal")))]
pub mod signal;
mod snapshot;
mod trace;
#[cfg(all(unix, feature = "upgrade", not(loom)))]
#[cfg_attr(docsrs, doc(cfg(all(unix, feature = "upgrade"))))]
pub mod upgrade;
mod wait;

// The guide's examples run as doctests too, under `http` as the README's do.
#[cfg(all(doctest, feature = "http"))]
#[doc = include_str!("../docs/guide.md")]
mod guide_doctests {}

#[cfg(all(test, loom))]
mod loom_tests;

pub use crate::drain::Drain;
pub use crate::error::Rejected;
pub use crate::future::ResponseFuture;
pub use crate::guard::{Guard, Tracked};
#[cfg(feature = "http")]
pub use crate::http::{
    DrainBody, DrainWatch, HttpDrainLayer, HttpDrainService, HttpResponseFuture, Readiness,
    RecordRequests, RecordRequestsLayer, RecordedBody, RecordedFuture,
};
pub use crate::layer::DrainLayer;
#[cfg(feature = "metrics")]
#[cfg_attr(docsrs, doc(cfg(feature = "metrics")))]
pub use crate::metrics_reporter::MetricsReporter;
pub use crate::record::AbandonedRequest;
pub use crate::run_server::{Closing, RunServer};
#[cfg(all(feature = "serve", not(loom)))]
#[cfg_attr(docsrs, doc(cfg(feature = "serve")))]
pub use crate::serve::{serve, Handshake, HttpResponse, Listener, ListenerExt, Serve, ServeFuture};
pub use crate::service::DrainService;
pub use crate::shutdown::{Shutdown, ShutdownFuture, ShutdownReport};
#[cfg(feature = "signal")]
#[cfg_attr(docsrs, doc(cfg(feature = "signal")))]
pub use crate::signal::Terminate;
pub use crate::snapshot::{Phase, Snapshot};
#[cfg(all(unix, feature = "upgrade", not(loom)))]
#[cfg_attr(docsrs, doc(cfg(all(unix, feature = "upgrade"))))]
pub use crate::upgrade::{HandedOver, Upgrade};
pub use crate::wait::{DrainStarted, NextEmpty, Until, UntilEmpty};

/// The boxed error type of [`DrainService`], as in tower.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;
