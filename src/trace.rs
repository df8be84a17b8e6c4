//! Events, when the `tracing` feature is on; nothing at all when it is off.

macro_rules! info {
    ($($arg:tt)*) => {
        #[cfg(feature = "tracing")]
        ::tracing::info!(target: "tower_drain", $($arg)*);
    };
}

macro_rules! warning {
    ($($arg:tt)*) => {
        #[cfg(feature = "tracing")]
        ::tracing::warn!(target: "tower_drain", $($arg)*);
    };
}

#[cfg_attr(any(not(feature = "serve"), loom), allow(unused_macros))]
macro_rules! debug {
    ($($arg:tt)*) => {
        #[cfg(feature = "tracing")]
        ::tracing::debug!(target: "tower_drain", $($arg)*);
    };
}

#[cfg_attr(any(not(feature = "serve"), loom), allow(unused_imports))]
pub(crate) use {debug, info, warning};
