//! The responses to requests refused while draining.

use bytes::Bytes;
use http::header::{CONNECTION, CONTENT_TYPE, RETRY_AFTER};
use http::request::Parts;
use http::{HeaderValue, Response, StatusCode, Version};

use super::layer::Settings;

/// gRPC's status code `UNAVAILABLE`: clients may retry on another instance.
const GRPC_UNAVAILABLE: HeaderValue = HeaderValue::from_static("14");
const GRPC_MESSAGE: HeaderValue = HeaderValue::from_static("service is draining");
pub(crate) const CLOSE: HeaderValue = HeaderValue::from_static("close");

/// Whether a request speaks HTTP/1.x, where connection headers exist.
pub(crate) fn is_http1(version: Version) -> bool {
    matches!(
        version,
        Version::HTTP_09 | Version::HTTP_10 | Version::HTTP_11
    )
}

/// The gRPC content type a request speaks, if any: `application/grpc` with any suffix
/// (`+proto`, `-web`, `-web+proto`, `-web-text`, ...), compared case-insensitively as media
/// types are (RFC 9110, section 8.3.1).
fn grpc_content_type(parts: &Parts) -> Option<&HeaderValue> {
    const GRPC: &[u8] = b"application/grpc";
    let value = parts.headers.get(CONTENT_TYPE)?;
    let bytes = value.as_bytes();
    (bytes.len() >= GRPC.len() && bytes[..GRPC.len()].eq_ignore_ascii_case(GRPC)).then_some(value)
}

/// Whether a request speaks gRPC (or gRPC-Web).
pub(crate) fn is_grpc(parts: &Parts) -> bool {
    grpc_content_type(parts).is_some()
}

/// The content type of a gRPC refusal: gRPC-Web clients are answered in their own protocol,
/// the others as `application/grpc`.
fn refusal_content_type(request: &HeaderValue) -> HeaderValue {
    const WEB: &[u8] = b"application/grpc-web";
    let bytes = request.as_bytes();
    if bytes.len() >= WEB.len() && bytes[..WEB.len()].eq_ignore_ascii_case(WEB) {
        // `-web-text` bodies are base64, `-web` binary; a trailers-only answer has no body,
        // so the client's own type (without parameters) is the one it expects back.
        let essence = bytes.split(|&b| b == b';').next().unwrap_or(bytes);
        let end = (essence.iter())
            .rposition(|b| !b.is_ascii_whitespace())
            .map_or(0, |last| last + 1);
        HeaderValue::from_bytes(&essence[..end])
            .unwrap_or(HeaderValue::from_static("application/grpc-web"))
    } else {
        HeaderValue::from_static("application/grpc")
    }
}

/// The refusal for `parts`: the layer's hook, or `503` with an empty body, or for gRPC a
/// trailers-only `UNAVAILABLE`.
pub(crate) fn refusal(parts: &Parts, settings: &Settings) -> Response<Bytes> {
    let http1 = is_http1(parts.version);
    let mut response = if let Some(reject) = &settings.reject_with {
        reject(parts)
    } else if let Some(content_type) = grpc_content_type(parts) {
        // A trailers-only response: the status travels in the headers of an empty body,
        // which tonic, grpc-go and gRPC-Web clients read as the call's status.
        let mut response = Response::new(Bytes::new());
        let content_type = refusal_content_type(content_type);
        let headers = response.headers_mut();
        headers.insert(CONTENT_TYPE, content_type);
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

/// Adds `Connection: close` where a response may carry it (`may_close`).
///
/// It takes the response by reference so that the common case, nothing to add, moves nothing.
#[inline]
pub(crate) fn add_connection_close<B>(response: &mut Response<B>, http1: bool) {
    if may_close(http1, response.status()) {
        response.headers_mut().insert(CONNECTION, CLOSE);
    }
}

/// Whether a response may ask its client to close the connection: on HTTP/1.x only (HTTP/2
/// forbids connection-specific headers), and never on a protocol switch.
#[inline]
pub(crate) fn may_close(http1: bool, status: StatusCode) -> bool {
    http1 && status != StatusCode::SWITCHING_PROTOCOLS
}
