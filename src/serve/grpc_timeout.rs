//! The client's `grpc-timeout`, honoured as tonic's `Server` honours it: a gRPC call whose
//! response has not begun by then is answered `DEADLINE_EXCEEDED`, and its handler dropped.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use http::header::CONTENT_TYPE;
use http::{HeaderMap, HeaderValue, Response};
use pin_project_lite::pin_project;
use tokio::time::Sleep;

use super::body::ServeBody;

/// gRPC's `DEADLINE_EXCEEDED`, what the gRPC spec asks a server to answer at the deadline.
const DEADLINE_EXCEEDED: HeaderValue = HeaderValue::from_static("4");
const TIMEOUT_EXPIRED: HeaderValue = HeaderValue::from_static("Timeout expired");

/// The deadline a gRPC request's `grpc-timeout` header sets, if it is a gRPC request with a
/// well-formed one (a header that cannot be read sets none, as in tonic).
pub(crate) fn requested(headers: &HeaderMap) -> Option<Duration> {
    // The header first: most requests have none, and one lookup settles it.
    let timeout = headers.get("grpc-timeout")?;
    let grpc = headers
        .get(CONTENT_TYPE)
        .is_some_and(|value| value.as_bytes().starts_with(b"application/grpc"));
    if grpc {
        parse(timeout.as_bytes())
    } else {
        None
    }
}

/// Parses `TimeoutValue TimeoutUnit`: at most eight digits, then one of `H M S m u n`.
fn parse(value: &[u8]) -> Option<Duration> {
    let (&unit, digits) = value.split_last()?;
    if digits.is_empty() || digits.len() > 8 || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let amount = digits
        .iter()
        .fold(0u64, |n, digit| n * 10 + u64::from(digit - b'0'));
    Some(match unit {
        b'H' => Duration::from_secs(amount * 3600),
        b'M' => Duration::from_secs(amount * 60),
        b'S' => Duration::from_secs(amount),
        b'm' => Duration::from_millis(amount),
        b'u' => Duration::from_micros(amount),
        b'n' => Duration::from_nanos(amount),
        _ => return None,
    })
}

/// The trailers-only answer at the deadline.
fn deadline_exceeded<B>() -> Response<ServeBody<B>> {
    let mut response = Response::new(ServeBody::empty());
    let headers = response.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/grpc"));
    headers.insert("grpc-status", DEADLINE_EXCEEDED);
    headers.insert("grpc-message", TIMEOUT_EXPIRED);
    response
}

pin_project! {
    /// A response future under an optional deadline.
    pub(crate) struct Deadline<F> {
        #[pin]
        inner: F,
        // Boxed: only gRPC calls with a timeout have one.
        sleep: Option<Pin<Box<Sleep>>>,
    }
}

impl<F> Deadline<F> {
    pub(crate) fn new(inner: F, timeout: Option<Duration>) -> Self {
        Self {
            inner,
            sleep: timeout.map(|timeout| Box::pin(tokio::time::sleep(timeout))),
        }
    }
}

impl<F, B, E> Future for Deadline<F>
where
    F: Future<Output = Result<Response<B>, E>>,
{
    type Output = Result<Response<ServeBody<B>>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        if let Poll::Ready(result) = this.inner.poll(cx) {
            return Poll::Ready(result.map(|response| response.map(ServeBody::inner)));
        }
        match this.sleep {
            Some(sleep) => sleep.as_mut().poll(cx).map(|()| Ok(deadline_exceeded())),
            None => Poll::Pending,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::parse;
    use std::time::Duration;

    #[test]
    fn parses_every_unit_and_refuses_malformed_values() {
        assert_eq!(parse(b"300m"), Some(Duration::from_millis(300)));
        assert_eq!(parse(b"2S"), Some(Duration::from_secs(2)));
        assert_eq!(parse(b"1H"), Some(Duration::from_secs(3600)));
        assert_eq!(parse(b"5M"), Some(Duration::from_secs(300)));
        assert_eq!(parse(b"7u"), Some(Duration::from_micros(7)));
        assert_eq!(parse(b"99999999n"), Some(Duration::from_nanos(99_999_999)));
        for bad in [
            &b""[..],
            b"m",
            b"123456789m",
            b"10x",
            b"-1S",
            b"1.5S",
            b" 1S",
        ] {
            assert_eq!(parse(bad), None, "{:?}", String::from_utf8_lossy(bad));
        }
    }
}
