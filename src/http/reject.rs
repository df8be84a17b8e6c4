//! The responses to requests refused while draining.

use bytes::Bytes;
use http::header::{CONNECTION, CONTENT_TYPE, RETRY_AFTER};
use http::request::Parts;
use http::{HeaderValue, Response, StatusCode, Version};

use super::layer::Settings;

/// gRPC's status code `UNAVAILABLE`: clients may retry on another instance.
const GRPC_UNAVAILABLE: HeaderValue = HeaderValue::from_static("14");
const GRPC_MESSAGE: HeaderValue = HeaderValue::from_static("service is draining");
const CLOSE: HeaderValue = HeaderValue::from_static("close");

/// Whether a request speaks HTTP/1.x, where connection headers exist.
pub(crate) fn is_http1(version: Version) -> bool {
    matches!(
        version,
        Version::HTTP_09 | Version::HTTP_10 | Version::HTTP_11
    )
}

/// Whether a request speaks gRPC (or gRPC-Web).
pub(crate) fn is_grpc(parts: &Parts) -> bool {
    parts
        .headers
        .get(CONTENT_TYPE)
        .is_some_and(|value| value.as_bytes().starts_with(b"application/grpc"))
}

/// The refusal for `parts`: the layer's hook, or `503` with an empty body, or for gRPC a
/// trailers-only `UNAVAILABLE`.
pub(crate) fn refusal(parts: &Parts, settings: &Settings) -> Response<Bytes> {
    let http1 = is_http1(parts.version);
    let mut response = if let Some(reject) = &settings.reject_with {
        reject(parts)
    } else if is_grpc(parts) {
        // A trailers-only response: the status travels in the headers of an empty body,
        // which tonic and grpc-go read as the call's status.
        let mut response = Response::new(Bytes::new());
        let headers = response.headers_mut();
        headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/grpc"));
        headers.insert("grpc-status", GRPC_UNAVAILABLE);
        headers.insert("grpc-message", GRPC_MESSAGE);
        add_connection_close(&mut response, http1);
        return response;
    } else {
        let mut response = Response::new(Bytes::new());
        *response.status_mut() = StatusCode::SERVICE_UNAVAILABLE;
        response
    };
    if let Some(retry_after) = &settings.retry_after {
        response
            .headers_mut()
            .entry(RETRY_AFTER)
            .or_insert_with(|| retry_after.clone());
    }
    add_connection_close(&mut response, http1);
    response
}

/// Adds `Connection: close` on HTTP/1.x; HTTP/2 forbids connection-specific headers.
///
/// It takes the response by reference so that the common case, nothing to add, moves nothing.
#[inline]
pub(crate) fn add_connection_close<B>(response: &mut Response<B>, http1: bool) {
    if http1 && response.status() != StatusCode::SWITCHING_PROTOCOLS {
        response.headers_mut().insert(CONNECTION, CLOSE);
    }
}
